//! Certificate and CRL inspection (`ca show`): the facts, parsed by x509-parser, for people and
//! for JSON. Inspection never decides trust; that is [`super::TrustStore::verify`]'s job.

use std::fmt::Write as _;
use std::net::IpAddr;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{X509Certificate, parse_x509_certificate, parse_x509_crl};

use super::x509::{RevocationReason, Serial, SubjectAltName, hex, rfc3339};
use super::{PkiError, pem};

/// What some bytes held: certificates, or CRLs (see [`read_certificates_or_crls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspected {
    /// One or more certificates (DER), in their order.
    Certificates(Vec<CertificateDer<'static>>),
    /// One or more CRLs (DER), in their order.
    Crls(Vec<CertificateRevocationListDer<'static>>),
}

/// The exact value of the one `CN` attribute of a name; `None` for no `CN`, several, or one
/// that is not a string.
pub(crate) fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let mut names = name.iter_common_name();
    let first = names.next()?;
    if names.next().is_some() {
        return None;
    }
    first.as_str().ok().map(str::to_string)
}

/// Reads certificates or CRLs from `bytes`, PEM or DER (as `ca show` takes them): PEM with an
/// `X509 CRL` block is CRLs; otherwise certificates, and when no certificate can be read, a DER
/// CRL. `what` names the input in errors.
///
/// # Errors
/// The error of reading certificates ([`PkiError::Malformed`], …) when neither reading works.
pub fn read_certificates_or_crls(bytes: &[u8], what: &str) -> Result<Inspected, PkiError> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("-----BEGIN X509 CRL-----") {
        return pem::parse_crls(bytes, what).map(Inspected::Crls);
    }
    match pem::parse_certificates(bytes, what) {
        Ok(certificates) => Ok(Inspected::Certificates(certificates)),
        // DER input: maybe a CRL.
        Err(certificate_error) => pem::parse_crls(bytes, what)
            .map(Inspected::Crls)
            .map_err(|_| certificate_error),
    }
}

/// The facts of one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject distinguished name (RFC 4514 style).
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number (shown and serialised as lowercase hex, the form `ca revoke` takes).
    pub serial: Serial,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Subject alternative names (shown and serialised as `dns:…`, `ip:…`, `email:…`, `uri:…`,
    /// `dirname:…`).
    pub sans: Vec<SubjectAltName>,
    /// True for a CA certificate (basicConstraints CA:TRUE).
    pub is_ca: bool,
    /// The path length constraint of a CA, if any.
    pub path_len: Option<u32>,
    /// Key usage bits by name (`digitalSignature`, `keyCertSign`, …).
    pub key_usage: Vec<String>,
    /// Extended key usages by name (`serverAuth`, `clientAuth`, `codeSigning`, or an OID).
    pub extended_key_usage: Vec<String>,
    /// Permitted name-constraint subtrees, as `dns:…`, `ip:…/…`, `email:…`.
    pub permitted_names: Vec<String>,
    /// Excluded name-constraint subtrees.
    pub excluded_names: Vec<String>,
    /// Public key algorithm (`ed25519`, `p256`, `p384`, `rsa`, or an OID).
    pub key_algorithm: String,
    /// Subject key identifier, hex.
    pub subject_key_id: Option<String>,
    /// Authority key identifier, hex.
    pub authority_key_id: Option<String>,
    /// SHA-256 of the DER certificate, hex.
    pub sha256_fingerprint: String,
    /// Issued by Tessera's profiles: `root`/`intermediate` for CAs, else `server`, `client`,
    /// `code-signing`, or `other`.
    pub profile: String,
}

impl CertificateInfo {
    /// Inspects a DER certificate.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when it is not a parseable X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = parse_x509_certificate(der).map_err(|e| {
            PkiError::malformed(
                "certificate",
                format!("cannot be parsed: {}", crate::pki::describe_x509(&e)),
            )
        })?;
        Self::from_parsed(&cert, der)
    }

    /// The certificate's name as Tessera's commands take it (`ca issue --name`): the subject
    /// without its `CN=`; for a certificate with an empty subject (Tessera issues a server
    /// certificate named by an IP address that way, RFC 5280 §4.2.1.6), the value of its first
    /// subjectAltName (`127.0.0.1`); empty only when it has neither.
    pub fn name(&self) -> String {
        if self.subject.is_empty() {
            return match self.sans.first() {
                Some(SubjectAltName::Dns(name)) => name.clone(),
                Some(SubjectAltName::Ip(ip)) => ip.to_string(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
        }
        self.subject.strip_prefix("CN=").unwrap_or(&self.subject).to_string()
    }

    /// The certificate inspected, and its subject's common name (see [`common_name`]), from
    /// one parse.
    ///
    /// # Errors
    /// As [`CertificateInfo::from_der`].
    pub(crate) fn with_common_name(der: &[u8]) -> Result<(Self, Option<String>), PkiError> {
        let (_, cert) = parse_x509_certificate(der).map_err(|e| {
            PkiError::malformed(
                "certificate",
                format!("cannot be parsed: {}", crate::pki::describe_x509(&e)),
            )
        })?;
        Ok((Self::from_parsed(&cert, der)?, common_name(cert.subject())))
    }

    pub(super) fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, PkiError> {
        let mut info = Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: Serial::from_octets(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            sans: Vec::new(),
            is_ca: false,
            path_len: None,
            key_usage: Vec::new(),
            extended_key_usage: Vec::new(),
            permitted_names: Vec::new(),
            excluded_names: Vec::new(),
            key_algorithm: key_algorithm(cert),
            subject_key_id: None,
            authority_key_id: None,
            sha256_fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
            profile: String::new(),
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    info.sans = san.general_names.iter().filter_map(subject_alt_name).collect();
                }
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    let names = [
                        (ku.digital_signature(), "digitalSignature"),
                        (ku.non_repudiation(), "contentCommitment"),
                        (ku.key_encipherment(), "keyEncipherment"),
                        (ku.data_encipherment(), "dataEncipherment"),
                        (ku.key_agreement(), "keyAgreement"),
                        (ku.key_cert_sign(), "keyCertSign"),
                        (ku.crl_sign(), "cRLSign"),
                        (ku.encipher_only(), "encipherOnly"),
                        (ku.decipher_only(), "decipherOnly"),
                    ];
                    info.key_usage = names.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()).collect();
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let names = [
                        (eku.any, "any"),
                        (eku.server_auth, "serverAuth"),
                        (eku.client_auth, "clientAuth"),
                        (eku.code_signing, "codeSigning"),
                        (eku.email_protection, "emailProtection"),
                        (eku.time_stamping, "timeStamping"),
                        (eku.ocsp_signing, "OCSPSigning"),
                    ];
                    info.extended_key_usage = names.iter().filter(|(on, _)| *on).map(|(_, n)| n.to_string()).collect();
                    info.extended_key_usage
                        .extend(eku.other.iter().map(|o| o.to_id_string()));
                }
                ParsedExtension::NameConstraints(nc) => {
                    let subtrees = |t: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
                        t.iter()
                            .flatten()
                            .filter_map(|s| general_name(&s.base))
                            .collect::<Vec<_>>()
                    };
                    info.permitted_names = subtrees(&nc.permitted_subtrees);
                    info.excluded_names = subtrees(&nc.excluded_subtrees);
                }
                ParsedExtension::SubjectKeyIdentifier(ski) => info.subject_key_id = Some(hex(ski.0)),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    info.authority_key_id = aki.key_identifier.as_ref().map(|k| hex(k.0));
                }
                _ => {}
            }
        }
        info.profile = if info.is_ca {
            if cert.subject().as_raw() == cert.issuer().as_raw() {
                "root"
            } else {
                "intermediate"
            }
        } else if info.extended_key_usage == ["codeSigning"] {
            "code-signing"
        } else if info.extended_key_usage.iter().any(|e| e == "serverAuth") {
            "server"
        } else if info.extended_key_usage.iter().any(|e| e == "clientAuth") {
            "client"
        } else {
            "other"
        }
        .to_string();
        Ok(info)
    }

    /// A multi-line description for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let t = |t: OffsetDateTime| rfc3339(t);
        let _ = writeln!(out, "Certificate ({})", self.profile);
        let _ = writeln!(out, "  subject:      {}", self.subject);
        let _ = writeln!(out, "  issuer:       {}", self.issuer);
        let _ = writeln!(out, "  serial:       {}", self.serial);
        let _ = writeln!(out, "  not before:   {}", t(self.not_before));
        let _ = writeln!(out, "  not after:    {}", t(self.not_after));
        let _ = writeln!(out, "  key:          {}", self.key_algorithm);
        if self.is_ca {
            let len = self.path_len.map_or("unlimited".to_string(), |l| l.to_string());
            let _ = writeln!(out, "  CA:           yes (path length {len})");
        }
        let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
        let sans: Vec<String> = self.sans.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  SANs:         {}", list(&sans));
        let _ = writeln!(out, "  key usage:    {}", list(&self.key_usage));
        let _ = writeln!(out, "  ext. usage:   {}", list(&self.extended_key_usage));
        if !self.permitted_names.is_empty() {
            let _ = writeln!(out, "  permitted:    {}", list(&self.permitted_names));
        }
        if !self.excluded_names.is_empty() {
            let _ = writeln!(out, "  excluded:     {}", list(&self.excluded_names));
        }
        if let Some(ski) = &self.subject_key_id {
            let _ = writeln!(out, "  subject key:  {ski}");
        }
        if let Some(aki) = &self.authority_key_id {
            let _ = writeln!(out, "  issuer key:   {aki}");
        }
        let _ = writeln!(out, "  SHA-256:      {}", self.sha256_fingerprint);
        out
    }
}

/// One entry of a CRL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevokedEntry {
    /// Serial number (serialised as lowercase hex).
    pub serial: Serial,
    /// When the CA revoked it.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// The reason (serialised in words; `unspecified` when the entry has no or an unknown code).
    pub reason: RevocationReason,
}

/// The facts of one CRL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrlInfo {
    /// The issuing CA's distinguished name.
    pub issuer: String,
    /// When this CRL was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// When the next CRL is due.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// The CRL number, decimal. In JSON always a number or `null`: a number when it fits in 64
    /// bits (every CRL Tessera writes: it counts from 1 and refuses to go past 2^64 - 1);
    /// `null` when the CRL has none, or when it is larger (RFC 5280 §5.2.3 allows up to 20
    /// octets), and then `crl_number_decimal` gives it.
    #[serde(serialize_with = "u64_or_null")]
    pub crl_number: Option<String>,
    /// The CRL number, decimal, only when it does not fit in 64 bits (JSON
    /// `crl_number_decimal`, left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl_number_decimal: Option<String>,
    /// The revoked certificates.
    pub revoked: Vec<RevokedEntry>,
}

impl CrlInfo {
    /// Inspects a DER CRL.
    ///
    /// # Errors
    /// [`PkiError::Malformed`] when it is not a parseable CRL.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, crl) = parse_x509_crl(der)
            .map_err(|e| PkiError::malformed("CRL", format!("cannot be parsed: {}", crate::pki::describe_x509(&e))))?;
        Ok(Self {
            issuer: crl.issuer().to_string(),
            this_update: crl.last_update().to_datetime(),
            next_update: crl.next_update().map(|t| t.to_datetime()),
            crl_number: crl.crl_number().map(|n| n.to_string()),
            crl_number_decimal: crl
                .crl_number()
                .map(|n| n.to_string())
                .filter(|n| n.parse::<u64>().is_err()),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| RevokedEntry {
                    serial: Serial::from_octets(r.raw_serial()),
                    revoked_at: r.revocation_date.to_datetime(),
                    reason: RevocationReason::from_crl_code(r.reason_code().map(|(_, code)| code.0)),
                })
                .collect(),
        })
    }

    /// A multi-line description for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "CRL");
        let _ = writeln!(out, "  issuer:       {}", self.issuer);
        let _ = writeln!(out, "  this update:  {}", rfc3339(self.this_update));
        let next = self.next_update.map_or("-".to_string(), rfc3339);
        let _ = writeln!(out, "  next update:  {next}");
        let _ = writeln!(out, "  CRL number:   {}", self.crl_number.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "  revoked:      {}", self.revoked.len());
        for r in &self.revoked {
            let _ = writeln!(out, "    {}  {}  {}", r.serial, rfc3339(r.revoked_at), r.reason);
        }
        out
    }
}

/// Serialises a decimal string as a JSON number when it fits in 64 bits, else as `null`.
fn u64_or_null<S: serde::Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value.as_deref().and_then(|text| text.parse::<u64>().ok()) {
        Some(number) => serializer.serialize_u64(number),
        None => serializer.serialize_none(),
    }
}

/// A SAN as inspection shows it (see [`SubjectAltName`]); `None` for the forms it does not show.
fn subject_alt_name(name: &GeneralName<'_>) -> Option<SubjectAltName> {
    match name {
        GeneralName::DNSName(d) => Some(SubjectAltName::Dns((*d).to_string())),
        GeneralName::RFC822Name(e) => Some(SubjectAltName::Email((*e).to_string())),
        GeneralName::URI(u) => Some(SubjectAltName::Uri((*u).to_string())),
        GeneralName::IPAddress(bytes) => Some(match ip_address(bytes) {
            Some(ip) => SubjectAltName::Ip(ip),
            None => SubjectAltName::Other(format!("ip:{}", ip_text(bytes))),
        }),
        GeneralName::DirectoryName(n) => Some(SubjectAltName::Other(format!("dirname:{n}"))),
        _ => None,
    }
}

/// A name-constraint subtree as inspection shows it (`dns:…`, `ip:ADDR/PREFIX`, …).
fn general_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(d) => Some(format!("dns:{d}")),
        GeneralName::RFC822Name(e) => Some(format!("email:{e}")),
        GeneralName::URI(u) => Some(format!("uri:{u}")),
        GeneralName::IPAddress(bytes) => Some(format!("ip:{}", ip_text(bytes))),
        GeneralName::DirectoryName(n) => Some(format!("dirname:{n}")),
        _ => None,
    }
}

/// The address in an iPAddress of 4 or 16 octets.
fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn ip_text(bytes: &[u8]) -> String {
    if let Some(ip) = ip_address(bytes) {
        return ip.to_string();
    }
    // Name-constraint form: address followed by mask.
    let half = bytes.len() / 2;
    match (ip_address(bytes.get(..half).unwrap_or_default()), bytes.get(half..)) {
        (Some(ip), Some(mask)) => {
            let prefix: u32 = mask.iter().map(|b| b.count_ones()).sum();
            format!("{ip}/{prefix}")
        }
        _ => hex(bytes),
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::EC(point)) => {
            // The curve is named by the parameters, not guessed from the point's size (a
            // brainpoolP256r1 key is not p256; a P-256 point under a P-384 label is broken).
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match (curve.as_deref(), point.key_size()) {
                (Some("1.2.840.10045.3.1.7"), 256) => "p256".into(),
                (Some("1.3.132.0.34"), 384) => "p384".into(),
                (curve, bits) => {
                    let name = super::key::algorithm_name("1.2.840.10045.2.1", curve);
                    format!("{} ({bits}-bit point)", name.to_ascii_lowercase().replace(' ', "-"))
                }
            }
        }
        Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        _ => {
            let oid = cert.public_key().algorithm.algorithm.to_id_string();
            if oid == "1.3.101.112" { "ed25519".into() } else { oid }
        }
    }
}

#[cfg(test)]
mod crl_number_tests {
    #![allow(clippy::unwrap_used)]
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, KeyIdMethod, KeyPair,
        KeyUsagePurpose, SerialNumber,
    };
    use time::macros::datetime;

    use super::CrlInfo;

    fn crl_with_number(number: &[u8]) -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = rcgen::Issuer::new(params, key);
        let crl = CertificateRevocationListParams {
            this_update: datetime!(2030-01-01 0:00 UTC),
            next_update: datetime!(2031-01-01 0:00 UTC),
            crl_number: SerialNumber::from(number.to_vec()),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        crl.signed_by(&issuer).unwrap().der().to_vec()
    }

    #[test]
    fn crl_numbers_are_json_numbers_up_to_64_bits_and_decimal_text_beyond() {
        let small = CrlInfo::from_der(&crl_with_number(&[
            0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]))
        .unwrap();
        let json = serde_json::to_value(&small).unwrap();
        assert_eq!(json["crl_number"].as_u64(), Some(u64::MAX));
        assert!(json.get("crl_number_decimal").is_none(), "{json}");

        // 20 octets, the most RFC 5280 §5.2.3 allows.
        let mut big = vec![0x7f];
        big.extend([0xff; 19]);
        let large = CrlInfo::from_der(&crl_with_number(&big)).unwrap();
        let json = serde_json::to_value(&large).unwrap();
        assert!(json["crl_number"].is_null(), "{json}");
        let decimal = json["crl_number_decimal"].as_str().unwrap();
        assert_eq!(decimal, "730750818665451459101842416358141509827966271487");
        assert_eq!(large.crl_number.as_deref(), Some(decimal));
    }
}
