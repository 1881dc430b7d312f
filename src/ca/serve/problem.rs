//! RFC 7807 problem documents with the ACME error types of RFC 8555 §6.7.
//!
//! Every error an ACME resource answers with is a [`Problem`]: a type (`urn:ietf:params:acme:
//! error:NAME`, [`ProblemType`]), a human-readable `detail`, the HTTP status it is sent with,
//! and optionally `subproblems` (§6.7.1, one per identifier) and `algorithms` (the signature
//! algorithms the server accepts, sent with `badSignatureAlgorithm`, §6.2). [`Problem::to_json`]
//! renders the body, served as [`CONTENT_TYPE`].
//!
//! A detail is shown to the client: it names what is wrong in the RFC's terms and never carries
//! a secret (a key, a token, a nonce value it did not send, an internal error's text).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ca::store::acme::Identifier;

/// The media type of a problem document (RFC 7807 §3, RFC 8555 §6.7).
pub const CONTENT_TYPE: &str = "application/problem+json";

/// At most this many subproblems' details are repeated in the detail of
/// [`Problem::for_identifiers`].
pub const LISTED_SUBPROBLEMS: usize = 5;

/// The namespace of ACME error types (RFC 8555 §6.7, §9.6).
pub const ERROR_NAMESPACE: &str = "urn:ietf:params:acme:error:";

macro_rules! problem_types {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $status:literal; )*) => {
        /// An ACME error type (RFC 8555 §6.7; `alreadyReplaced` from RFC 9773 §7.4).
        ///
        /// [`ProblemType::status`] is the HTTP status a problem of this type is sent with unless
        /// the server chooses another ([`Problem::with_status`]); the RFC fixes a few (`badNonce`
        /// 400 in §6.5, `orderNotReady` 403 in §7.4, `rateLimited` with 429 customary), the rest
        /// follow Boulder's and Pebble's practice.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProblemType {
            $( $(#[$doc])* $variant, )*
        }

        impl ProblemType {
            /// Every type, in the order of RFC 8555 §6.7's table (then RFC 9773's).
            pub const ALL: &'static [ProblemType] = &[ $( ProblemType::$variant, )* ];

            /// The type's name: the part of the URN after [`ERROR_NAMESPACE`] (`badNonce`).
            pub fn name(self) -> &'static str {
                match self {
                    $( ProblemType::$variant => $name, )*
                }
            }

            /// The type's full URN (`urn:ietf:params:acme:error:badNonce`).
            pub fn urn(self) -> &'static str {
                match self {
                    $( ProblemType::$variant => concat!("urn:ietf:params:acme:error:", $name), )*
                }
            }

            /// The HTTP status a problem of this type is usually sent with.
            pub fn status(self) -> u16 {
                match self {
                    $( ProblemType::$variant => $status, )*
                }
            }
        }
    };
}

problem_types! {
    /// The request specified an account that does not exist.
    AccountDoesNotExist = "accountDoesNotExist", 400;
    /// The request specified a certificate to be revoked that has already been revoked.
    AlreadyRevoked = "alreadyRevoked", 400;
    /// The CSR is unacceptable (e.g., due to a short key).
    BadCsr = "badCSR", 400;
    /// The client sent an unacceptable anti-replay nonce.
    BadNonce = "badNonce", 400;
    /// The JWS was signed by a public key the server does not support.
    BadPublicKey = "badPublicKey", 400;
    /// The revocation reason provided is not allowed by the server.
    BadRevocationReason = "badRevocationReason", 400;
    /// The JWS was signed with an algorithm the server does not support.
    BadSignatureAlgorithm = "badSignatureAlgorithm", 400;
    /// Certification Authority Authorization (CAA) records forbid the CA from issuing a
    /// certificate.
    Caa = "caa", 403;
    /// Specific error conditions are indicated in the `subproblems` array.
    Compound = "compound", 400;
    /// The server could not connect to the validation target.
    Connection = "connection", 400;
    /// There was a problem with a DNS query during identifier validation.
    Dns = "dns", 400;
    /// The request must include a value for the `externalAccountBinding` field.
    ExternalAccountRequired = "externalAccountRequired", 403;
    /// Response received didn't match the challenge's requirements.
    IncorrectResponse = "incorrectResponse", 403;
    /// A contact URL for an account was invalid.
    InvalidContact = "invalidContact", 400;
    /// The request message was malformed.
    Malformed = "malformed", 400;
    /// The request attempted to finalize an order that is not ready to be finalized.
    OrderNotReady = "orderNotReady", 403;
    /// The request exceeds a rate limit.
    RateLimited = "rateLimited", 429;
    /// The server will not issue certificates for the identifier.
    RejectedIdentifier = "rejectedIdentifier", 400;
    /// The server experienced an internal error.
    ServerInternal = "serverInternal", 500;
    /// The server received a TLS error during validation.
    Tls = "tls", 400;
    /// The client lacks sufficient authorization.
    Unauthorized = "unauthorized", 403;
    /// A contact URL for an account used an unsupported protocol scheme.
    UnsupportedContact = "unsupportedContact", 400;
    /// An identifier is of an unsupported type.
    UnsupportedIdentifier = "unsupportedIdentifier", 400;
    /// Visit the `instance` URL and take actions specified there.
    UserActionRequired = "userActionRequired", 403;
    /// The certificate named in a new order's `replaces` field has already been replaced
    /// (RFC 9773 §7.4, §5).
    AlreadyReplaced = "alreadyReplaced", 409;
}

impl ProblemType {
    /// The type a URN names (`urn:ietf:params:acme:error:NAME`, exact case); `None` for any
    /// other string.
    pub fn from_urn(urn: &str) -> Option<ProblemType> {
        let name = urn.strip_prefix(ERROR_NAMESPACE)?;
        ProblemType::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.urn())
    }
}

/// One error among several (RFC 8555 §6.7.1): usually one per identifier of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subproblem {
    /// The error type.
    pub kind: ProblemType,
    /// What went wrong (shown to the client; no secrets).
    pub detail: String,
    /// The identifier the error is about, if any.
    pub identifier: Option<Identifier>,
}

impl Subproblem {
    /// A subproblem of `kind` about `identifier`.
    pub fn new(kind: ProblemType, detail: impl Into<String>, identifier: Option<Identifier>) -> Subproblem {
        Subproblem {
            kind,
            detail: detail.into(),
            identifier,
        }
    }
}

/// An RFC 7807 problem document with an ACME error type (RFC 8555 §6.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The error type (the document's `type`).
    pub kind: ProblemType,
    /// What went wrong, in the RFC's terms (shown to the client; no secrets).
    pub detail: String,
    /// The HTTP status (also the document's `status`).
    pub status: u16,
    /// Errors about single identifiers (§6.7.1); empty when there are none.
    pub subproblems: Vec<Subproblem>,
    /// The JWS algorithms the server accepts, sent with `badSignatureAlgorithm` (§6.2); empty
    /// otherwise.
    pub algorithms: Vec<String>,
}

impl Problem {
    /// A problem of `kind` with its usual HTTP status ([`ProblemType::status`]).
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            status: kind.status(),
            subproblems: Vec::new(),
            algorithms: Vec::new(),
        }
    }

    /// The same problem sent with HTTP status `status` (e.g. `malformed` with 404 for an unknown
    /// resource, 405 for a wrong method, 413 for an oversized body, 415 for a wrong
    /// Content-Type).
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Problem {
        self.status = status;
        self
    }

    /// The same problem with `subproblems` added.
    #[must_use]
    pub fn with_subproblems(mut self, subproblems: impl IntoIterator<Item = Subproblem>) -> Problem {
        self.subproblems.extend(subproblems);
        self
    }

    /// `malformed`: the request message was malformed (400).
    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Malformed, detail)
    }

    /// `malformed` with 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Malformed, detail).with_status(404)
    }

    /// `unauthorized` (403).
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Unauthorized, detail)
    }

    /// `badNonce` (400, RFC 8555 §6.5): the client retries with the fresh nonce of the response.
    pub fn bad_nonce(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::BadNonce, detail)
    }

    /// `accountDoesNotExist` (400).
    pub fn account_does_not_exist(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::AccountDoesNotExist, detail)
    }

    /// `badPublicKey` (400).
    pub fn bad_public_key(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::BadPublicKey, detail)
    }

    /// `badSignatureAlgorithm` (400) listing the accepted `algorithms` (RFC 8555 §6.2).
    pub fn bad_signature_algorithm<S: Into<String>>(
        detail: impl Into<String>,
        algorithms: impl IntoIterator<Item = S>,
    ) -> Problem {
        let mut problem = Problem::new(ProblemType::BadSignatureAlgorithm, detail);
        problem.algorithms = algorithms.into_iter().map(Into::into).collect();
        problem
    }

    /// `rateLimited` (429); the caller adds `Retry-After`.
    pub fn rate_limited(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::RateLimited, detail)
    }

    /// `serverInternal` (500). The detail is shown to the client: say what failed, not why
    /// (log the cause).
    pub fn server_internal(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::ServerInternal, detail)
    }

    /// `compound` (400) with one subproblem per failure (§6.7.1).
    pub fn compound(detail: impl Into<String>, subproblems: impl IntoIterator<Item = Subproblem>) -> Problem {
        Problem::new(ProblemType::Compound, detail).with_subproblems(subproblems)
    }

    /// The problem of a request refused for some of its identifiers, with one subproblem per
    /// refused identifier (RFC 8555 §6.7.1). Its type is theirs when they all share one (so a
    /// lone `unsupportedIdentifier` is not reported as `rejectedIdentifier`), else `compound`.
    /// Its detail is the subproblem's for one identifier; for several it repeats each
    /// identifier's detail (the first [`LISTED_SUBPROBLEMS`]), for clients that show only the
    /// top-level detail.
    pub fn for_identifiers(subproblems: Vec<Subproblem>) -> Problem {
        let kind = match subproblems.split_first() {
            Some((first, rest)) if rest.iter().all(|s| s.kind == first.kind) => first.kind,
            Some(_) => ProblemType::Compound,
            None => ProblemType::Malformed,
        };
        let detail = match subproblems.as_slice() {
            [] => "no identifier is refused".to_string(),
            [one] => one.detail.clone(),
            several => {
                let mut listed: Vec<String> = several
                    .iter()
                    .take(LISTED_SUBPROBLEMS)
                    .map(|s| match &s.identifier {
                        Some(identifier) => format!(
                            "{} \"{}\": {}",
                            crate::text::printable(&identifier.kind),
                            crate::text::printable(&identifier.value),
                            s.detail
                        ),
                        None => s.detail.clone(),
                    })
                    .collect();
                if several.len() > LISTED_SUBPROBLEMS {
                    listed.push(format!("{} more (see subproblems)", several.len() - LISTED_SUBPROBLEMS));
                }
                format!("{} identifiers are refused: {}", several.len(), listed.join("; "))
            }
        };
        Problem::new(kind, detail).with_subproblems(subproblems)
    }

    /// The problem document: `{"type","detail","status"[,"subproblems"][,"algorithms"]}`, UTF-8
    /// JSON (RFC 7807 §3.1, RFC 8555 §6.7).
    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireProblem {
            kind: self.kind.urn().to_string(),
            detail: self.detail.clone(),
            status: Some(self.status),
            subproblems: self
                .subproblems
                .iter()
                .map(|s| WireSubproblem {
                    kind: s.kind.urn().to_string(),
                    detail: s.detail.clone(),
                    identifier: s.identifier.as_ref().map(|i| WireIdentifier {
                        kind: i.kind.clone(),
                        value: i.value.clone(),
                    }),
                })
                .collect(),
            algorithms: self.algorithms.clone(),
        };
        // Serializing strings, numbers and arrays of them cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads a problem document (one made by [`Problem::to_json`], say, kept in the store as a
    /// challenge's or order's `error`). `None` when it is not JSON of that shape or its type is
    /// not an ACME error type; a missing `status` becomes the type's usual one.
    pub fn from_json(json: &[u8]) -> Option<Problem> {
        let wire: WireProblem = serde_json::from_slice(json).ok()?;
        let kind = ProblemType::from_urn(&wire.kind)?;
        let subproblems = wire
            .subproblems
            .into_iter()
            .map(|s| {
                Some(Subproblem {
                    kind: ProblemType::from_urn(&s.kind)?,
                    detail: s.detail,
                    identifier: s.identifier.map(|i| Identifier {
                        kind: i.kind,
                        value: i.value,
                    }),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Problem {
            kind,
            detail: wire.detail,
            status: wire.status.unwrap_or_else(|| kind.status()),
            subproblems,
            algorithms: wire.algorithms,
        })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

impl std::error::Error for Problem {}

impl axum::response::IntoResponse for Problem {
    /// The problem document with its status and `Content-Type: application/problem+json` (the
    /// server adds `Replay-Nonce`, `Link` and `Retry-After` where they apply).
    fn into_response(self) -> axum::response::Response {
        let status =
            axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
            self.to_json(),
        )
            .into_response()
    }
}

/// The JSON shape of a problem document.
#[derive(Serialize, Deserialize)]
struct WireProblem {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subproblems: Vec<WireSubproblem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    algorithms: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct WireSubproblem {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identifier: Option<WireIdentifier>,
}

#[derive(Serialize, Deserialize)]
struct WireIdentifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(problem: &Problem) -> serde_json::Value {
        serde_json::from_slice(&problem.to_json()).unwrap()
    }

    #[test]
    fn every_rfc_8555_error_type_has_its_urn() {
        let names: Vec<&str> = ProblemType::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "accountDoesNotExist",
                "alreadyRevoked",
                "badCSR",
                "badNonce",
                "badPublicKey",
                "badRevocationReason",
                "badSignatureAlgorithm",
                "caa",
                "compound",
                "connection",
                "dns",
                "externalAccountRequired",
                "incorrectResponse",
                "invalidContact",
                "malformed",
                "orderNotReady",
                "rateLimited",
                "rejectedIdentifier",
                "serverInternal",
                "tls",
                "unauthorized",
                "unsupportedContact",
                "unsupportedIdentifier",
                "userActionRequired",
                "alreadyReplaced",
            ]
        );
        for t in ProblemType::ALL {
            assert_eq!(t.urn(), format!("urn:ietf:params:acme:error:{}", t.name()));
            assert_eq!(t.to_string(), t.urn());
            assert_eq!(ProblemType::from_urn(t.urn()), Some(*t));
        }
        assert_eq!(ProblemType::from_urn("badNonce"), None);
        assert_eq!(ProblemType::from_urn("urn:ietf:params:acme:error:badnonce"), None);
        assert_eq!(ProblemType::from_urn("urn:ietf:params:acme:error:"), None);
    }

    #[test]
    fn statuses_follow_the_rfc_and_common_practice() {
        assert_eq!(ProblemType::BadNonce.status(), 400);
        assert_eq!(ProblemType::Malformed.status(), 400);
        assert_eq!(ProblemType::AccountDoesNotExist.status(), 400);
        assert_eq!(ProblemType::Unauthorized.status(), 403);
        assert_eq!(ProblemType::OrderNotReady.status(), 403);
        assert_eq!(ProblemType::RateLimited.status(), 429);
        assert_eq!(ProblemType::ServerInternal.status(), 500);
        assert_eq!(Problem::not_found("no such order").status, 404);
        assert_eq!(Problem::malformed("x").with_status(413).status, 413);
    }

    #[test]
    fn a_problem_document_has_type_detail_and_status() {
        let p = Problem::bad_nonce("nonce is not one this server issued");
        assert_eq!(
            String::from_utf8(p.to_json()).unwrap(),
            r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"nonce is not one this server issued","status":400}"#
        );
        assert_eq!(p.to_string(), "badNonce: nonce is not one this server issued");
        assert_eq!(CONTENT_TYPE, "application/problem+json");
    }

    #[test]
    fn as_a_response_it_has_its_status_and_media_type() {
        use axum::response::IntoResponse;
        let response = Problem::rate_limited("slow down").into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        let response = Problem::malformed("x").with_status(1000).into_response();
        assert_eq!(response.status(), 500);
    }

    #[test]
    fn bad_signature_algorithm_lists_the_accepted_algorithms() {
        let p = Problem::bad_signature_algorithm("alg HS256 is not accepted", ["RS256", "ES256"]);
        let v = json(&p);
        assert_eq!(v["type"], "urn:ietf:params:acme:error:badSignatureAlgorithm");
        assert_eq!(v["algorithms"], serde_json::json!(["RS256", "ES256"]));
        assert!(v.get("subproblems").is_none());
    }

    #[test]
    fn subproblems_carry_their_identifier() {
        let id = Identifier {
            kind: "dns".into(),
            value: "a.example.test".into(),
        };
        let p = Problem::compound(
            "2 identifiers refused",
            [
                Subproblem::new(
                    ProblemType::RejectedIdentifier,
                    "outside the name constraints",
                    Some(id),
                ),
                Subproblem::new(ProblemType::Caa, "CAA forbids issuance", None),
            ],
        );
        let v = json(&p);
        assert_eq!(v["type"], "urn:ietf:params:acme:error:compound");
        assert_eq!(
            v["subproblems"][0]["type"],
            "urn:ietf:params:acme:error:rejectedIdentifier"
        );
        assert_eq!(
            v["subproblems"][0]["identifier"],
            serde_json::json!({"type": "dns", "value": "a.example.test"})
        );
        assert!(v["subproblems"][1].get("identifier").is_none());
        assert_eq!(Problem::from_json(&p.to_json()), Some(p));
    }

    /// RFC 8555 §6.7.1: the top-level type agrees with the subproblems (theirs when they share
    /// one, else compound), and each identifier's detail reaches clients that show only the
    /// top-level one.
    #[test]
    fn a_problem_for_identifiers_has_their_type_or_compound() {
        let id = |kind: &str, value: &str| {
            Some(Identifier {
                kind: kind.into(),
                value: value.into(),
            })
        };
        let unsupported = Subproblem::new(
            ProblemType::UnsupportedIdentifier,
            "only dns and ip identifiers are supported",
            id("email", "a@example.test"),
        );
        let rejected = |value: &str| {
            Subproblem::new(
                ProblemType::RejectedIdentifier,
                format!("\"{value}\" is an IP address, not a DNS name: order it as an ip identifier"),
                id("dns", value),
            )
        };
        let one = Problem::for_identifiers(vec![unsupported.clone()]);
        assert_eq!(one.kind, ProblemType::UnsupportedIdentifier);
        assert_eq!(one.detail, unsupported.detail);
        assert_eq!(one.subproblems, std::slice::from_ref(&unsupported));

        let same = Problem::for_identifiers(vec![rejected("127.0.0.1"), rejected("10.0.0.1")]);
        assert_eq!(same.kind, ProblemType::RejectedIdentifier);
        assert_eq!(same.status, 400);
        for value in ["127.0.0.1", "10.0.0.1"] {
            assert!(
                same.detail
                    .contains(&format!("dns \"{value}\": \"{value}\" is an IP address")),
                "{}",
                same.detail
            );
        }
        assert_eq!(same.detail.matches("order it as an ip identifier").count(), 2);

        let mixed = Problem::for_identifiers(vec![rejected("127.0.0.1"), unsupported]);
        assert_eq!(mixed.kind, ProblemType::Compound);
        assert_eq!(mixed.status, 400);
        assert_eq!(mixed.subproblems.len(), 2);
        assert!(
            mixed.detail.contains("order it as an ip identifier"),
            "{}",
            mixed.detail
        );
        assert!(mixed.detail.contains("only dns and ip"), "{}", mixed.detail);

        let many = Problem::for_identifiers((0..8).map(|i| rejected(&format!("10.0.0.{i}"))).collect());
        assert!(many.detail.starts_with("8 identifiers are refused"), "{}", many.detail);
        assert!(many.detail.ends_with("3 more (see subproblems)"), "{}", many.detail);
        assert_eq!(many.subproblems.len(), 8);
    }

    #[test]
    fn from_json_reads_back_and_refuses_other_documents() {
        let p = Problem::rate_limited("too many new orders").with_status(503);
        assert_eq!(Problem::from_json(&p.to_json()), Some(p));
        let bare = Problem::from_json(br#"{"type":"urn:ietf:params:acme:error:orderNotReady"}"#).unwrap();
        assert_eq!(
            (bare.kind, bare.status, bare.detail.as_str()),
            (ProblemType::OrderNotReady, 403, "")
        );
        assert_eq!(Problem::from_json(br#"{"type":"about:blank"}"#), None);
        assert_eq!(Problem::from_json(b"not json"), None);
        assert_eq!(
            Problem::from_json(br#"{"type":"urn:ietf:params:acme:error:compound","subproblems":[{"type":"x"}]}"#),
            None
        );
    }
}
