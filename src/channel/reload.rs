//! Certificate and CRL hot reload: the server configuration is rebuilt from its files and
//! swapped in for new handshakes; open connections keep the configuration they started with.
//! A new configuration that cannot be built leaves the old one in place.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::ServerConfig;

use super::ChannelError;

type Loader = dyn Fn() -> Result<ServerConfig, ChannelError> + Send + Sync;

/// A server configuration that can be rebuilt (e.g. on SIGHUP) from the same sources.
pub struct ReloadableServerConfig {
    loader: Box<Loader>,
    current: RwLock<Arc<ServerConfig>>,
    generation: RwLock<u64>,
    /// Held for a whole load-and-swap, so that reloads run one at a time and the last to start
    /// installs the newest files.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for ReloadableServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableServerConfig")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl ReloadableServerConfig {
    /// Builds the first configuration with `loader`, which is kept for reloads.
    ///
    /// # Errors
    /// Whatever `loader` returns: a server must start with a working configuration.
    pub fn new(
        loader: impl Fn() -> Result<ServerConfig, ChannelError> + Send + Sync + 'static,
    ) -> Result<Self, ChannelError> {
        let first = loader()?;
        Ok(Self {
            loader: Box::new(loader),
            current: RwLock::new(Arc::new(first)),
            generation: RwLock::new(0),
            reloading: Mutex::new(()),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many reloads succeeded.
    pub fn generation(&self) -> u64 {
        *self.generation.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the configuration and swaps it in. On failure the old configuration stays in
    /// force and a warning says why. Reloads run one at a time: one that starts while another
    /// is loading waits for it, then loads the files as they are by then.
    ///
    /// # Errors
    /// The loader's error (the configuration in force is unchanged).
    pub fn reload(&self) -> Result<u64, ChannelError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        match (self.loader)() {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                let mut generation = self.generation.write().unwrap_or_else(PoisonError::into_inner);
                *generation += 1;
                tracing::info!(generation = *generation, "configuration reloaded");
                Ok(*generation)
            }
            Err(error) => {
                tracing::warn!(%error, reason = %error_chain(&error), "reload failed; keeping the previous configuration");
                Err(error)
            }
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
