//! Nothing a CA creates may be something Tessera itself will then refuse.
//!
//! Three layers, all before anything is written or recorded:
//! - up-front checks of a request, with precise reasons: e-mail name constraints (which
//!   rustls-webpki cannot evaluate), wildcards and host bits in constraints, a permitted subtree
//!   that an excluded one swallows, a key the profile cannot use (code signing is Ed25519 only),
//!   a server certificate without a DNS name or IP address;
//! - every new leaf goes through [`TrustStore::verify`] for its profile's usage at the time of
//!   issuance, and a server certificate once more for each of its DNS names and IP addresses
//!   (as a TLS client would ask);
//! - every new CA signs throwaway probe leaves, which go through [`TrustStore::verify`] up to
//!   the root: one without names (path lengths, validity, constraints the verifier cannot
//!   evaluate), one per permitted DNS subtree and one for each end of each permitted IP range
//!   (so a subtree outside the parent's constraints is refused by name).

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::authority::InitRequest;
use super::csr::CsrKey;
use super::{CaError, Profile, SubjectAltName};
use crate::pki::{KeyAlgorithm, PkiError, PrivateKey, TrustStore, Usage, VerifyRequest};

/// Why e-mail name constraints are refused (rustls-webpki 0.103 treats rfc822Name as a form it
/// does not evaluate: every e-mail address below such a CA is a violation).
pub(crate) const NO_EMAIL_CONSTRAINTS: &str = "e-mail name constraints cannot be used: Tessera's verifier \
     (rustls-webpki) does not evaluate them and refuses every certificate with an e-mail address below a CA \
     that has them, so the CA could never issue an e-mail certificate";

/// Checks an `init` request before any key is made.
///
/// # Errors
/// [`CaError::InvalidRequest`] naming the flag and what is wrong.
pub(super) fn init_request(request: &InitRequest) -> Result<(), CaError> {
    if let Some(email) = request.permitted_email.first() {
        return Err(CaError::invalid(
            "permit-email",
            format!("\"{email}\": {NO_EMAIL_CONSTRAINTS}"),
        ));
    }
    let domains = |list: &[String], flag: &'static str| -> Result<Vec<String>, CaError> {
        list.iter()
            .map(|d| {
                let bare = d.trim_start_matches('.');
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    let prefix = if ip.is_ipv4() { 32 } else { 128 };
                    return Err(CaError::invalid(
                        flag,
                        format!("\"{d}\" is an IP address, not a domain; constrain addresses with --permit-ip {ip}/{prefix}"),
                    ));
                }
                match SubjectAltName::parse(&format!("dns:{bare}")) {
                    Ok(SubjectAltName::Dns(name)) if !name.starts_with('*') => Ok(name),
                    Ok(_) => Err(CaError::invalid(
                        flag,
                        format!("\"{d}\" is a wildcard; a name constraint is a domain, e.g. example.org (it covers every name under it)"),
                    )),
                    Err(_) => Err(CaError::invalid(flag, format!("\"{d}\" is not a DNS name or domain"))),
                }
            })
            .collect()
    };
    let permitted = domains(&request.permitted_dns, "permit-dns")?;
    let excluded = domains(&request.excluded_dns, "exclude-dns")?;
    for p in &permitted {
        if let Some(e) = excluded.iter().find(|e| within(p, e)) {
            return Err(CaError::invalid(
                "exclude-dns",
                format!("{e} excludes all of --permit-dns {p}, so the CA could issue no name under {p}"),
            ));
        }
    }
    for (ip, prefix) in &request.permitted_ip {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if *prefix > max {
            return Err(CaError::invalid(
                "permit-ip",
                format!("{ip}/{prefix}: the prefix length is at most {max}"),
            ));
        }
        let network = network_address(*ip, *prefix);
        if network != *ip {
            return Err(CaError::invalid(
                "permit-ip",
                format!("{ip}/{prefix} has host bits set; write the network address, {network}/{prefix}"),
            ));
        }
    }
    Ok(())
}

/// True when DNS name `name` is `domain` or below it.
fn within(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|head| head.ends_with('.'))
}

fn network_address(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

fn last_address(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let host = u32::MAX.checked_shr(u32::from(prefix.min(32))).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) | host))
        }
        IpAddr::V6(v6) => {
            let host = u128::MAX.checked_shr(u32::from(prefix.min(128))).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) | host))
        }
    }
}

/// A profile's key requirement: module signatures are Ed25519 only, so a code-signing
/// certificate for any other key could never sign a module.
///
/// # Errors
/// [`CaError::InvalidRequest`] for a generated key of the wrong type.
pub(super) fn profile_key(profile: Profile, algorithm: KeyAlgorithm) -> Result<(), CaError> {
    if profile == Profile::CodeSigning && algorithm != KeyAlgorithm::Ed25519 {
        return Err(CaError::invalid(
            "key-type",
            format!(
                "a code-signing certificate needs an Ed25519 key (module signatures are Ed25519), not {algorithm}; \
                 use --key-type ed25519 or leave it out"
            ),
        ));
    }
    Ok(())
}

/// As [`profile_key`], for the key of a CSR.
///
/// # Errors
/// [`CaError::UnsupportedCsr`].
pub(super) fn profile_csr_key(profile: Profile, key: CsrKey) -> Result<(), CaError> {
    if profile == Profile::CodeSigning && key != CsrKey::Ed25519 {
        return Err(CaError::UnsupportedCsr {
            reason: format!(
                "a code-signing certificate needs an Ed25519 key (module signatures are Ed25519), and the request's key is {key}"
            ),
            fix: "make the request with an Ed25519 key: `openssl req -new -newkey ed25519 -keyout KEY -out REQ.csr`"
                .into(),
        });
    }
    Ok(())
}

/// A server certificate no TLS client could match is useless: it needs a DNS name or an IP
/// address (clients look only at those, RFC 6125 §6.4.4).
///
/// # Errors
/// [`CaError::InvalidRequest`].
pub(super) fn server_names(profile: Profile, name: &str, sans: &[SubjectAltName]) -> Result<(), CaError> {
    if profile == Profile::Server
        && !sans
            .iter()
            .any(|s| matches!(s, SubjectAltName::Dns(_) | SubjectAltName::Ip(_)))
    {
        return Err(CaError::invalid(
            "san",
            format!(
                "a server certificate needs a DNS name or IP address, and \"{name}\" is neither (nor is any --san); \
                 add --san dns:HOST or --san ip:ADDR"
            ),
        ));
    }
    Ok(())
}

/// The name a TLS client would ask for to reach a server with this SAN: the name itself, or for
/// a wildcard, a name it covers.
fn reference_name(san: &SubjectAltName) -> Option<String> {
    match san {
        SubjectAltName::Dns(d) => Some(match d.strip_prefix("*.") {
            Some(base) => format!("tessera-check.{base}"),
            None => d.clone(),
        }),
        SubjectAltName::Ip(ip) => Some(ip.to_string()),
        _ => None,
    }
}

/// Verifies a new leaf as everything in Tessera will: through [`TrustStore::verify`] up to
/// `root`, for `profile`'s usage, at `now`; for a server, once per DNS name and IP address.
///
/// # Errors
/// [`CaError::Refused`] with the verifier's reason.
pub(super) fn leaf(
    root: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    certificate: &CertificateDer<'_>,
    profile: Profile,
    sans: &[SubjectAltName],
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let store = store(root)?;
    let refused = |e: PkiError| {
        if e.is_rejection() {
            CaError::Refused(e)
        } else {
            CaError::Pki(e)
        }
    };
    let request = VerifyRequest::new(profile.usage(), now);
    let _ = store.verify(certificate, intermediates, &request).map_err(refused)?;
    if profile == Profile::Server {
        for san in sans {
            let Some(name) = reference_name(san) else { continue };
            match store.verify(certificate, intermediates, &request.clone().with_name(name.clone())) {
                Ok(_) => {}
                Err(PkiError::NameMismatch { .. }) => {
                    let instead = match name.parse::<IpAddr>() {
                        Ok(ip) => format!("; for an address write ip:{ip}"),
                        Err(_) => String::new(),
                    };
                    return Err(CaError::invalid(
                        "san",
                        format!(
                            "{san} is not a name TLS clients can match: Tessera's verifier refuses a client asking \
                             for \"{name}\"{instead}"
                        ),
                    ));
                }
                Err(e) => return Err(refused(e)),
            }
        }
    }
    Ok(())
}

fn store(root: &CertificateDer<'static>) -> Result<TrustStore, CaError> {
    let mut store = TrustStore::new();
    store.add_root(root.clone(), "root")?;
    Ok(store)
}

/// Proves a new CA can issue what Tessera will accept: signs probe leaves with its key and
/// verifies them up to the root. `chain` is the new CA's certificate followed by its issuers,
/// root last (a root alone for a new root).
///
/// # Errors
/// [`CaError::Unusable`] naming the cause: the flag whose constraint lies outside the
/// parent's, or the verifier's reason.
pub(super) fn new_ca(
    chain: &[CertificateDer<'static>],
    key: &PrivateKey,
    request: &InitRequest,
    now: OffsetDateTime,
) -> Result<(), CaError> {
    let (Some(certificate), Some(root)) = (chain.first(), chain.last()) else {
        return Err(CaError::invalid("chain", "the new CA has no certificate"));
    };
    let store = store(root)?;
    let issuer =
        Issuer::from_ca_cert_der(certificate, key.to_key_pair()?).map_err(|e| CaError::build("probe issuer", e))?;
    let probe_key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::build("probe key", e))?;
    let what = if chain.len() > 1 {
        "the intermediate CA"
    } else {
        "the root CA"
    };
    let probe = |san: Option<SanType>| -> Result<Result<(), PkiError>, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Tessera creation check");
        params.distinguished_name = dn;
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + time::Duration::minutes(1);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = san.into_iter().collect();
        let leaf = params
            .signed_by(&probe_key, &issuer)
            .map_err(|e| CaError::build("probe certificate", e))?;
        let intermediates: Vec<CertificateDer<'static>> =
            chain.iter().take(chain.len().saturating_sub(1)).cloned().collect();
        Ok(store
            .verify(leaf.der(), &intermediates, &VerifyRequest::new(Usage::Any, now))
            .map(|_| ()))
    };
    let unusable = |reason: String| CaError::Unusable {
        what: what.into(),
        reason,
    };

    if let Err(e) = probe(None)? {
        return Err(unusable(format!(
            "Tessera's verifier would refuse every certificate it issues: {e}"
        )));
    }
    for domain in &request.permitted_dns {
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        let san = SanType::DnsName(
            domain
                .clone()
                .try_into()
                .map_err(|_| CaError::invalid("permit-dns", format!("\"{domain}\" is not ASCII")))?,
        );
        match probe(Some(san))? {
            Ok(()) => {}
            Err(PkiError::NameConstraintViolation) => {
                return Err(unusable(format!(
                    "--permit-dns {domain} is not inside what its parent CA permits, so Tessera's verifier would \
                     refuse every name under {domain} (see the parent's names with `ca show PARENT/ca.pem`)"
                )));
            }
            Err(e) => return Err(unusable(format!("a certificate for {domain} would be refused: {e}"))),
        }
    }
    for (ip, prefix) in &request.permitted_ip {
        for end in [network_address(*ip, *prefix), last_address(*ip, *prefix)] {
            match probe(Some(SanType::IpAddress(end)))? {
                Ok(()) => {}
                Err(PkiError::NameConstraintViolation) => {
                    return Err(unusable(format!(
                        "--permit-ip {ip}/{prefix} is not inside what its parent CA permits ({end} is outside), \
                         so Tessera's verifier would refuse addresses the CA claims (see the parent's ranges with \
                         `ca show PARENT/ca.pem`)"
                    )));
                }
                Err(e) => return Err(unusable(format!("a certificate for {end} would be refused: {e}"))),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn within_is_by_whole_labels() {
        assert!(within("example.org", "example.org"));
        assert!(within("a.example.org", "example.org"));
        assert!(!within("badexample.org", "example.org"));
        assert!(!within("example.org", "a.example.org"));
    }

    #[test]
    fn range_ends() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network_address(ip("10.1.2.3"), 8), ip("10.0.0.0"));
        assert_eq!(last_address(ip("10.0.0.0"), 8), ip("10.255.255.255"));
        assert_eq!(network_address(ip("10.1.2.3"), 0), ip("0.0.0.0"));
        assert_eq!(last_address(ip("10.1.2.3"), 32), ip("10.1.2.3"));
        assert_eq!(network_address(ip("fd00::1"), 8), ip("fd00::"));
        assert_eq!(last_address(ip("fd00::"), 120), ip("fd00::ff"));
    }
}
