//! Where relying parties find a CA's revocation information and certificate: the URLs that
//! every certificate the CA issues carries in its CRL Distribution Points (RFC 5280 §4.2.1.13)
//! and Authority Information Access (RFC 5280 §4.2.2.1) extensions.
//!
//! They are kept in `DIR/urls.json` (0644, at most [`MAX_URLS_FILE_SIZE`] bytes, replaced
//! atomically — through a symbolic link, the file it points to; absent: no URLs), written by
//! `ca init --crl-url … --ocsp-url … --ca-issuers-url …` and `ca set` (under the CA directory's
//! lock, so concurrent changes are all kept), and read when the CA is opened:
//!
//! ```json
//! {"crl": "http://ca.example/crl", "ocsp": "http://ca.example/ocsp", "ca_issuers": null}
//! ```
//!
//! Each URL is an absolute `http` or `https` URI (RFC 3986 §3) of printable ASCII: a host,
//! an optional port, a path, a query; no user information, no fragment, no white space, every
//! `%` followed by two hex digits. (RFC 5280 §4.2.1.13 and RFC 6960 §3.1 expect HTTP for
//! both; TLS would need revocation information to check the responder's own certificate.)

use std::path::Path;

use der::Encode;
use der::asn1::{Ia5String, ObjectIdentifier};
use serde::{Deserialize, Serialize};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use super::CaError;
use crate::fsutil;

/// The file in a CA directory that holds its [`DistributionUrls`].
pub const URLS_FILE: &str = "urls.json";

/// The largest `urls.json` read, in bytes (three URLs of [`MAX_URL_LENGTH`] and the JSON
/// around them fit many times over).
pub const MAX_URLS_FILE_SIZE: u64 = 64 * 1024;

/// The longest URL accepted, in bytes.
pub const MAX_URL_LENGTH: usize = 1024;

/// The URLs a CA's certificates point relying parties to (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionUrls {
    /// Where the CA's current CRL is (DER, as `ca serve` serves it at `/crl`): a
    /// CRLDistributionPoints `fullName` URI.
    #[serde(default)]
    pub crl: Option<String>,
    /// The CA's OCSP responder (`ca serve`'s `/ocsp`): an AuthorityInfoAccess `id-ad-ocsp` URI.
    #[serde(default)]
    pub ocsp: Option<String>,
    /// Where the CA's certificate is, DER (RFC 5280 §4.2.2.1): an AuthorityInfoAccess
    /// `id-ad-caIssuers` URI. Never derived from the others.
    #[serde(default)]
    pub ca_issuers: Option<String>,
}

impl DistributionUrls {
    /// Whether no URL is set.
    pub fn is_empty(&self) -> bool {
        self.crl.is_none() && self.ocsp.is_none() && self.ca_issuers.is_none()
    }

    /// Checks every URL set (see [`check_url`]).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] naming the flag (`crl-url`, `ocsp-url`, `ca-issuers-url`).
    pub fn validate(&self) -> Result<(), CaError> {
        for (field, url) in [
            ("crl-url", &self.crl),
            ("ocsp-url", &self.ocsp),
            ("ca-issuers-url", &self.ca_issuers),
        ] {
            if let Some(url) = url {
                // Shown through `printable` by whoever reports it; `check_url` names a hidden character.
                check_url(url).map_err(|reason| CaError::invalid(field, format!("\"{url}\" {reason}")))?;
            }
        }
        Ok(())
    }

    /// Reads `DIR/urls.json`; none when it is absent.
    ///
    /// # Errors
    /// [`CaError::Io`] when it cannot be read, [`CaError::InvalidRequest`] (field `urls.json`)
    /// when it is larger than [`MAX_URLS_FILE_SIZE`], is not the JSON above or holds a URL
    /// [`check_url`] refuses.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        use std::io::Read;
        let path = dir.join(URLS_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(CaError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_URLS_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| CaError::io(&path, e))?;
        if bytes.len() as u64 > MAX_URLS_FILE_SIZE {
            return Err(CaError::invalid(
                "urls.json",
                format!("{} is larger than {MAX_URLS_FILE_SIZE} bytes", path.display()),
            ));
        }
        let urls: Self = serde_json::from_slice(&bytes)
            .map_err(|e| CaError::invalid("urls.json", format!("{} is not readable: {e}", path.display())))?;
        urls.validate()
            .map_err(|e| CaError::invalid("urls.json", format!("{}: {e}", path.display())))?;
        Ok(urls)
    }

    /// Changes `DIR/urls.json` as one step against other `ca` processes: under the CA
    /// directory's lock (the one `ca issue`, `ca revoke` and `ca crl` take), reads it, applies
    /// `change`, and writes it when `change` says it changed something. With `replace`, the
    /// file as found is not read (`change` sets every URL), so a damaged file can be replaced.
    /// Returns the URLs now in force.
    ///
    /// # Errors
    /// As [`DistributionUrls::load`] and [`DistributionUrls::save`]; [`CaError::Io`] taking the lock.
    pub fn update(dir: &Path, replace: bool, change: impl FnOnce(&mut Self) -> bool) -> Result<Self, CaError> {
        let _lock = super::store::DirLock::acquire(dir)?;
        let mut urls = if replace { Self::default() } else { Self::load(dir)? };
        if change(&mut urls) {
            urls.save(dir)?;
        }
        Ok(urls)
    }

    /// Writes `DIR/urls.json` atomically (0644), or removes it when no URL is set. A
    /// `urls.json` that is a symbolic link stays one: the file it points to is replaced (with
    /// every URL `null` when none is set), as for the CA's other state files.
    ///
    /// # Errors
    /// As [`DistributionUrls::validate`]; [`CaError::Io`].
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        self.validate()?;
        let path = dir.join(URLS_FILE);
        let is_link = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
        if self.is_empty() && !is_link {
            return match std::fs::remove_file(&path) {
                Ok(()) => fsutil::sync_parent(&path).map_err(|e| CaError::io(&path, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(CaError::io(&path, e)),
            };
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CaError::invalid("urls.json", e.to_string()))?;
        text.push('\n');
        fsutil::write_atomic(&path, text.as_bytes(), fsutil::PUBLIC_MODE).map_err(|e| CaError::io(&path, e))
    }

    /// Puts the URLs in a certificate's parameters: CRLDistributionPoints with one
    /// DistributionPoint whose `fullName` is the CRL URL, and AuthorityInfoAccess with
    /// `id-ad-ocsp` then `id-ad-caIssuers` (both non-critical, RFC 5280 §4.2.1.13, §4.2.2.1).
    ///
    /// # Errors
    /// [`CaError::InvalidRequest`] (field `urls.json`) when a URL cannot be encoded.
    pub(super) fn apply(&self, params: &mut rcgen::CertificateParams) -> Result<(), CaError> {
        if let Some(crl) = &self.crl {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![crl.clone()],
            }];
        }
        let access: Vec<(ObjectIdentifier, &String)> = [(ID_AD_OCSP, &self.ocsp), (ID_AD_CA_ISSUERS, &self.ca_issuers)]
            .into_iter()
            .filter_map(|(method, url)| url.as_ref().map(|url| (method, url)))
            .collect();
        if access.is_empty() {
            return Ok(());
        }
        let bad = |e: der::Error| CaError::invalid("urls.json", format!("cannot encode a URL: {e}"));
        let mut descriptions = Vec::with_capacity(access.len());
        for (access_method, url) in access {
            descriptions.push(AccessDescription {
                access_method,
                access_location: GeneralName::UniformResourceIdentifier(Ia5String::new(url).map_err(bad)?),
            });
        }
        let content = AuthorityInfoAccessSyntax(descriptions).to_der().map_err(bad)?;
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
            ID_PE_AUTHORITY_INFO_ACCESS,
            content,
        ));
        Ok(())
    }
}

/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
const ID_PE_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-ocsp.
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers.
const ID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

/// Checks that `url` is an absolute `http`/`https` URI as the module documentation says.
///
/// # Errors
/// What is wrong, worded to follow the URL in a message (`is not an http or https URL`, …).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LENGTH {
        return Err(format!("is longer than {MAX_URL_LENGTH} bytes"));
    }
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(if c.is_whitespace() {
            "contains white space".into()
        } else {
            format!(
                "contains U+{:04X}, a character outside printable ASCII (percent-encode it)",
                u32::from(c)
            )
        });
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not an absolute http or https URL (http://HOST/PATH)".into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("is not an http or https URL".into());
    }
    // RFC 3986 §2: unreserved, reserved and '%'.
    const ALLOWED: &str = "-._~:/?#[]@!$&'()*+,;=%";
    if let Some(c) = rest
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !ALLOWED.contains(*c))
    {
        return Err(format!("contains '{c}', which a URI cannot hold (percent-encode it)"));
    }
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err("has a '%' not followed by two hex digits".into());
        }
    }
    if rest.contains('#') {
        return Err("has a fragment (#…), which a distribution point cannot use".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("has user information (USER@), which would be public in every certificate".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((address, "")) if address.parse::<std::net::Ipv6Addr>().is_ok() => (address, ""),
            Some((address, after)) if address.parse::<std::net::Ipv6Addr>().is_ok() => match after.strip_prefix(':') {
                Some(port) => (address, port),
                None => return Err("has a malformed host".into()),
            },
            _ => return Err("has a broken IPv6 address ([…])".into()),
        },
        None => authority.split_once(':').unwrap_or((authority, "")),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !authority.starts_with('[') && !is_host_name(host) {
        return Err("has a malformed host (a DNS name of letters, digits and inner '-', or an IP address)".into());
    }
    if port.is_empty() && authority.ends_with(':') {
        return Err("has an empty port (leave out the ':' or give a number from 1 to 65535)".into());
    }
    if !port.is_empty() && (!port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("has a port that is not a number from 1 to 65535".into());
    }
    Ok(())
}

/// `url` as certificates carry it, once [`check_url`] accepts it: the scheme in lower case
/// (`HTTP://ca.example/` → `http://ca.example/`; RFC 3986 §3.1 makes schemes case-insensitive
/// and lower case canonical), the rest as given.
///
/// # Errors
/// As [`check_url`].
pub fn normalize_url(url: &str) -> Result<String, String> {
    check_url(url)?;
    Ok(match url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => url.to_string(),
    })
}

/// Whether `host` is a host name (RFC 1123 §2.1: dot-separated labels of 1 to 63 letters,
/// digits and `-`, not starting or ending with `-`; `_` allowed inside, as some internal names
/// use it) or an IPv4 address, which has that shape too.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_http_or_https_uris_with_a_host() {
        for good in [
            "http://ca.example/crl",
            "HTTPS://ca.example:8443/ocsp",
            "http://127.0.0.1:8080/crl",
            "http://[::1]:80/ocsp",
            "http://ca.example",
            "http://ca.example/a%20b?x=1&y=2",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, reason) in [
            ("ftp://ca.example/crl", "is not an http or https URL"),
            ("ldap://ca.example/", "is not an http or https URL"),
            ("ca.example/crl", "is not an absolute http or https URL"),
            ("http:///crl", "has no host"),
            ("http://ca example/", "contains white space"),
            ("http://ca.example/é", "outside printable ASCII"),
            ("http://ca.example/<x>", "contains '<'"),
            ("http://ca.example/%zz", "'%' not followed by two hex digits"),
            ("http://ca.example/crl#x", "has a fragment"),
            ("http://user:pw@ca.example/", "has user information"),
            ("http://ca.example:0/", "port that is not a number"),
            ("http://ca.example:70000/", "port that is not a number"),
            ("http://ca.example:80a/", "port that is not a number"),
            ("http://[::1/", "broken IPv6"),
            ("http://[1.2.3.4]/", "broken IPv6"),
            ("http://h:/", "empty port"),
            ("http://ca.example:/crl", "empty port"),
            ("http://-/", "malformed host"),
            ("http://-ca.example/", "malformed host"),
            ("http://ca-.example/", "malformed host"),
            ("http://ca..example/", "malformed host"),
            ("http://ca%41.example/", "malformed host"),
            ("http://ca!.example/", "malformed host"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(reason), "{bad}: {err}");
        }
        assert!(check_url(&format!("http://a/{}", "x".repeat(MAX_URL_LENGTH))).is_err());
    }

    #[test]
    fn the_scheme_is_lowered_and_nothing_else() {
        assert_eq!(normalize_url("HTTP://X/Crl").unwrap(), "http://X/Crl");
        assert_eq!(
            normalize_url("hTtPs://ca.example:8443/").unwrap(),
            "https://ca.example:8443/"
        );
        assert!(normalize_url("HTTP://-/").is_err());
    }

    #[test]
    fn urls_json_round_trips_and_an_empty_set_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DistributionUrls::load(dir.path()).unwrap(), DistributionUrls::default());
        let urls = DistributionUrls {
            crl: Some("http://ca.example/crl".into()),
            ocsp: Some("http://ca.example/ocsp".into()),
            ca_issuers: None,
        };
        urls.save(dir.path()).unwrap();
        assert_eq!(DistributionUrls::load(dir.path()).unwrap(), urls);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(URLS_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        DistributionUrls::default().save(dir.path()).unwrap();
        assert!(!dir.path().join(URLS_FILE).exists());
        std::fs::write(dir.path().join(URLS_FILE), r#"{"crl": "ftp://x/"}"#).unwrap();
        assert!(DistributionUrls::load(dir.path()).is_err());
        std::fs::write(dir.path().join(URLS_FILE), r#"{"crl_url": "http://x/"}"#).unwrap();
        assert!(DistributionUrls::load(dir.path()).is_err());
    }
}
