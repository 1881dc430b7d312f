//! A mutual-TLS channel (TLS 1.3, rustls with the ring provider) whose traffic keys are
//! rotated in flight by policy.
//!
//! - [`server_config`] / [`client_config`]: rustls configurations from [`crate::pki::TrustStore`]s;
//!   every certificate decision goes through [`crate::pki::TrustStore::verify`] (via
//!   [`TrustStoreServerVerifier`] and [`TrustStoreClientVerifier`]), CRLs included.
//! - [`ChannelStream`]: the stream; it counts traffic and sends a TLS 1.3 `KeyUpdate` whenever
//!   the [`RotationPolicy`] says so. [`ChannelStream::send_message`] /
//!   [`ChannelStream::recv_message`] add length-prefixed messages, framed by [`read_frame`] /
//!   [`write_frame`], a codec over any async stream.
//! - [`PeerIdentity`] and [`Authorization`]: who the peer is and whether it may connect;
//!   [`Refusal`]: why a peer was refused, as a value ([`ChannelError::Refused`], returned by
//!   [`ChannelStream::accept`] and [`ChannelStream::connect`]).
//! - [`ServerFiles`] and [`ReloadableServerConfig`]: a server's configuration from its files,
//!   checked (regular files only, size-capped; a certificate the server cannot serve with is an
//!   error; stale CRLs are [`LoadWarning`]s), and hot reload under a deadline.
//! - [`serve_echo`] with [`EchoConfig`] and [`EchoHandle`]: the echo service behind
//!   `echo-server` (accept loop, limits, PROXY protocol, drain, reload), to run in-process;
//!   [`echo_round_trip`]: one echo from the client's side.
//! - [`SessionTickets`] with [`TicketKeys`]: TLS 1.3 session tickets sealed with keys from a
//!   file shared by a fleet ([`new_ticket_key`] rotates it); a resumed client's certificate is
//!   verified again ([`ResumptionCheck`]).
//! - [`read_proxy_header`] and [`ProxySources`]: the PROXY protocol (v1 and v2) a load
//!   balancer puts before the client's stream, read exactly, before the TLS handshake.
//!
//! # Blocking work and async callers
//!
//! Reading certificate, key and CRL files is blocking I/O, and an encrypted key costs an
//! scrypt derivation (hundreds of milliseconds by design). [`Credentials::load`],
//! [`ServerFiles::load`], [`load_trust`] and [`ReloadableServerConfig::reload`] do that work on
//! the calling thread: call them before the runtime starts or from a blocking context. From
//! async code use [`Credentials::load_async`], [`ServerFiles::load_async`],
//! [`load_trust_async`], [`crate::pki::TrustStore::from_root_file_async`] and
//! [`ReloadableServerConfig::reload_async`]: they run it on Tokio's blocking pool (the latter
//! two under a deadline), so worker threads never wait for a disk or for scrypt.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{path::Path, sync::Arc};
//! use tessera::channel::{self, ChannelStream, ClientSettings, Credentials, RotationPolicy, TlsOptions};
//! use tessera::pki::TrustStore;
//!
//! let settings = ClientSettings {
//!     server_trust: Arc::new(TrustStore::from_root_file(Path::new("root.pem"))?),
//!     credentials: Some(Credentials::load(Path::new("client.chain.pem"), Path::new("client.key"), None)?),
//!     options: TlsOptions::with_sslkeylogfile(),
//! };
//! let config = Arc::new(channel::client_config(&settings)?);
//! let tcp = tokio::net::TcpStream::connect("127.0.0.1:4433").await?;
//! let policy = RotationPolicy::default().with_bytes(1 << 20);
//! let mut stream = ChannelStream::connect(config, "localhost", tcp, policy).await?;
//! stream.send_message(b"hello").await?;
//! let reply = stream.recv_message().await?;
//! let reply = reply.unwrap_or_default();
//! println!("{}, {} key updates", String::from_utf8_lossy(&reply), stream.stats().rotations.total());
//! stream.close().await?;
//! # Ok(()) }
//! ```

mod config;
mod echo;
mod error;
pub(crate) mod files;
mod framing;
mod identity;
mod proxy;
mod refusal;
mod reload;
mod rotation;
mod stream;
mod text;
mod tickets;
mod verifier;

pub use config::{ClientSettings, Credentials, ServerSettings, TlsOptions, client_config, provider, server_config};
pub use echo::{EchoConfig, EchoHandle, EchoStats, echo_round_trip, serve_echo};
pub use error::{CertificateProblem, ChannelError};
pub use files::{
    CrlFacts, DEFAULT_LOAD_TIMEOUT, LoadWarning, LoadedServerConfig, LoadedTrust, ServerFiles, load_trust,
    load_trust_async,
};
pub use framing::{DEFAULT_MAX_MESSAGE, HEADER_LEN, read_frame, write_frame};
pub use identity::{Authorization, PeerIdentity};
pub use proxy::{
    Cidr, MAX_PROXY_V1_HEADER, MAX_PROXY_V2_HEADER, ProxiedAddresses, ProxyHeader, ProxyProblem, ProxySources,
    ProxyVersion, read_proxy_header,
};
pub use refusal::Refusal;
pub use reload::{MAX_RUNNING_RELOADS, ReloadableServerConfig};
pub use rotation::{
    DEFAULT_ROTATE_BYTES, DEFAULT_ROTATE_INTERVAL, MAX_ROTATIONS_WITHOUT_SENDING, RotationPolicy, RotationStats,
    RotationTrigger, parse_byte_size,
};
pub use stream::{ChannelStats, ChannelStream, Exchanged, MAX_DRAINED_AFTER_FAILURE, exchange};
pub use text::{alert_name, escape, version_name};
pub use tickets::{
    DEFAULT_TICKET_LIFETIME, KEPT_TICKET_KEYS, MAX_CACHED_VERDICTS, MAX_TICKET_KEY_FILE, MAX_TICKET_KEYS,
    MAX_TICKET_LIFETIME, ResumptionCheck, SessionTickets, TICKET_KEY_LEN, TicketKeys, new_ticket_key,
};
pub use verifier::{TrustStoreClientVerifier, TrustStoreServerVerifier};
