//! A mutual-TLS channel (TLS 1.3, rustls with the ring provider) whose traffic keys are
//! rotated in flight by policy.
//!
//! - [`server_config`] / [`client_config`]: rustls configurations from [`crate::pki::TrustStore`]s;
//!   every certificate decision goes through [`crate::pki::TrustStore::verify`] (via
//!   [`TrustStoreServerVerifier`] and [`TrustStoreClientVerifier`]), CRLs included.
//! - [`ChannelStream`]: the stream; it counts traffic and sends a TLS 1.3 `KeyUpdate` whenever
//!   the [`RotationPolicy`] says so. [`ChannelStream::send_message`] /
//!   [`ChannelStream::recv_message`] add length-prefixed messages.
//! - [`PeerIdentity`] and [`Authorization`]: who the peer is and whether it may connect.
//! - [`ReloadableServerConfig`]: certificate and CRL hot reload.
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
//! println!("{reply:?}, {} key updates", stream.stats().rotations.total());
//! stream.close().await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod framing;
mod identity;
mod reload;
mod rotation;
mod stream;
mod verifier;

pub use config::{ClientSettings, Credentials, ServerSettings, TlsOptions, client_config, provider, server_config};
pub use error::ChannelError;
pub use framing::{DEFAULT_MAX_MESSAGE, HEADER_LEN};
pub use identity::{Authorization, PeerIdentity};
pub use reload::ReloadableServerConfig;
pub use rotation::{
    DEFAULT_ROTATE_BYTES, DEFAULT_ROTATE_INTERVAL, MAX_ROTATIONS_WITHOUT_SENDING, RotationPolicy, RotationStats,
    RotationTrigger, parse_byte_size,
};
pub use stream::{ChannelStats, ChannelStream, Exchanged, exchange};
pub use verifier::{TrustStoreClientVerifier, TrustStoreServerVerifier};
