//! Shared fixtures for the channel tests: a fresh PKI per test, issued by Tessera's own CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use tessera::ca::{CertificateAuthority, InitRequest, IssueRequest, Profile, RevocationReason, SubjectAltName};
use tessera::channel::{Authorization, ClientSettings, Credentials, ServerSettings, TlsOptions};
use tessera::pki::{TrustStore, pem};

/// A time limit for every network step in the tests.
pub const STEP: Duration = Duration::from_secs(10);

/// Files of one issued leaf.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub chain: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

impl Leaf {
    pub fn credentials(&self) -> Credentials {
        Credentials::load(&self.chain, &self.key, None).unwrap()
    }
}

/// A root CA with a server certificate and several client certificates, and a foreign CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub crl: PathBuf,
    pub server: Leaf,
    /// A second server certificate, for reload tests.
    pub server2: Leaf,
    pub client1: Leaf,
    pub client2: Leaf,
    pub revoked: Leaf,
    pub expired: Leaf,
    /// A client certificate from another CA.
    pub foreign_client: Leaf,
    /// A server certificate from another CA.
    pub foreign_server: Leaf,
    pub foreign_root: PathBuf,
}

fn issue(ca: &CertificateAuthority, request: IssueRequest, now: OffsetDateTime, prefix: &Path) -> Leaf {
    let issued = ca.issue(&request, now).unwrap();
    let files = issued.write(prefix, None).unwrap();
    Leaf {
        chain: files.chain,
        key: files.key.unwrap(),
        serial: issued.info.serial.clone(),
    }
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let start = now - time::Duration::days(10);
        let ca = CertificateAuthority::init(&dir.path().join("ca"), &InitRequest::new("Test Root"), None, start).unwrap();
        let server_request = || {
            IssueRequest::new(Profile::Server, "localhost").with_sans([
                SubjectAltName::Dns("localhost".into()),
                SubjectAltName::Ip("127.0.0.1".parse::<IpAddr>().unwrap()),
            ])
        };
        let server = issue(&ca, server_request(), now, &dir.path().join("server"));
        let server2 = issue(&ca, server_request(), now, &dir.path().join("server2"));
        let client = |name: &str| IssueRequest::new(Profile::Client, name);
        let client1 = issue(&ca, client("client1"), now, &dir.path().join("client1"));
        let client2 = issue(&ca, client("client2"), now, &dir.path().join("client2"));
        // Work around `ca revoke` not finding serials whose first octet is below 0x10 (the
        // database keeps the leading zero nibble, the lookup strips it): reissue until clear.
        let mut attempt = 0;
        let revoked = loop {
            attempt += 1;
            let leaf = issue(&ca, client("revoked"), now, &dir.path().join(format!("revoked{attempt}")));
            if !leaf.serial.starts_with('0') {
                break leaf;
            }
        };
        let expired = issue(
            &ca,
            client("expired").with_lifetime(Duration::from_secs(3600)),
            now - time::Duration::days(2),
            &dir.path().join("expired"),
        );
        let crl_der = ca
            .revoke(&revoked.serial, RevocationReason::KeyCompromise, now, Duration::from_secs(86_400))
            .unwrap();
        let crl = dir.path().join("crl.pem");
        std::fs::write(&crl, pem::to_pem("X509 CRL", &crl_der)).unwrap();
        let root = dir.path().join("root.pem");
        std::fs::write(&root, pem::to_pem(pem::CERTIFICATE, ca.root())).unwrap();

        let foreign =
            CertificateAuthority::init(&dir.path().join("foreign"), &InitRequest::new("Foreign Root"), None, start).unwrap();
        let foreign_client = issue(&foreign, client("client1"), now, &dir.path().join("foreign-client"));
        let foreign_server = issue(&foreign, server_request(), now, &dir.path().join("foreign-server"));
        let foreign_root = dir.path().join("foreign-root.pem");
        std::fs::write(&foreign_root, pem::to_pem(pem::CERTIFICATE, foreign.root())).unwrap();
        Self {
            dir,
            root,
            crl,
            server,
            server2,
            client1,
            client2,
            revoked,
            expired,
            foreign_client,
            foreign_server,
            foreign_root,
        }
    }

    /// Roots plus the CRL.
    pub fn trust(&self) -> Arc<TrustStore> {
        let mut store = TrustStore::from_root_file(&self.root).unwrap();
        store.add_crl_file(&self.crl).unwrap();
        Arc::new(store)
    }

    pub fn server_settings(&self, authorization: Authorization) -> ServerSettings {
        ServerSettings {
            credentials: self.server.credentials(),
            client_trust: Some(self.trust()),
            authorization,
            options: TlsOptions::default(),
        }
    }

    pub fn client_settings(&self, leaf: Option<&Leaf>) -> ClientSettings {
        ClientSettings {
            server_trust: self.trust(),
            credentials: leaf.map(Leaf::credentials),
            options: TlsOptions::default(),
        }
    }
}
