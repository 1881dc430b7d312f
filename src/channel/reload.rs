//! Certificate and CRL hot reload: the server configuration is rebuilt from its files and
//! swapped in for new handshakes; open connections keep the configuration they started with.
//! A new configuration that cannot be built leaves the old one in place.
//!
//! Reloads are ordered: each takes a number when it starts reading, and a configuration is
//! installed only if no reload that started later has installed one already, so the newest
//! files win whatever order the loads finish in. [`ReloadableServerConfig::reload_async`] runs
//! the load on Tokio's blocking pool under a deadline: a file that never answers (a hung network
//! file system) costs one abandoned thread, never the server's control, and at most
//! [`MAX_RUNNING_RELOADS`] such threads exist at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use time::OffsetDateTime;

use super::ChannelError;
use super::files::{CrlFacts, LoadedServerConfig, ServerFiles, blocking_within};

/// At most this many reloads run at once; past it [`ReloadableServerConfig::reload_async`]
/// refuses to start another ([`ChannelError::ReloadBusy`]). Only loads stuck on files that do
/// not answer (abandoned after their deadline) can pile up to it.
pub const MAX_RUNNING_RELOADS: usize = 4;

type Loader = dyn Fn() -> Result<LoadedServerConfig, ChannelError> + Send + Sync;

struct Installed {
    config: Arc<ServerConfig>,
    crls: Vec<CrlFacts>,
    /// The number of the reload that built it (0: the first configuration).
    ticket: u64,
}

/// A server configuration that can be rebuilt (e.g. on SIGHUP) from the same sources.
pub struct ReloadableServerConfig {
    loader: Arc<Loader>,
    current: RwLock<Installed>,
    generation: AtomicU64,
    next_ticket: AtomicU64,
    running: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ReloadableServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableServerConfig")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Counts a running load for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
        let loader = move || {
            loader().map(|config| LoadedServerConfig {
                config,
                crls: Vec::new(),
                warnings: Vec::new(),
                session_tickets: None,
            })
        };
        let first = loader()?;
        Ok(Self::with_first(first, loader))
    }

    /// A configuration reloaded from `files` (see [`ServerFiles::load`]); the first load is
    /// given (so the caller sees its warnings and chooses how to run it). A reload that cannot
    /// read the session ticket key file keeps the keys last read and installs the rest (a CRL
    /// update is never held up by a key file), with a warning in the log.
    pub fn from_files(first: LoadedServerConfig, files: ServerFiles) -> Self {
        let last = Mutex::new(first.session_tickets.clone());
        Self::with_first(first, move || {
            let previous = last.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let loaded = files.load_keeping(OffsetDateTime::now_utc(), previous.as_ref());
            if let Ok(loaded) = &loaded {
                last.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone_from(&loaded.session_tickets);
            }
            loaded
        })
    }

    fn with_first(
        first: LoadedServerConfig,
        loader: impl Fn() -> Result<LoadedServerConfig, ChannelError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            loader: Arc::new(loader),
            current: RwLock::new(Installed {
                config: Arc::new(first.config),
                crls: first.crls,
                ticket: 0,
            }),
            generation: AtomicU64::new(0),
            next_ticket: AtomicU64::new(1),
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner).config)
    }

    /// The CRLs of the configuration in force (empty unless built from [`ServerFiles`]).
    pub fn crls(&self) -> Vec<CrlFacts> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).crls.clone()
    }

    /// How many reloads installed a configuration.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How many loads are running now (including abandoned ones stuck on a file).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Rebuilds the configuration on the calling thread and swaps it in. On failure the old
    /// configuration stays in force and a warning says why. If a reload that started later has
    /// already installed its configuration, this one's is dropped (the newer files win) and
    /// the generation in force is returned. Blocking: from async code use
    /// [`ReloadableServerConfig::reload_async`].
    ///
    /// # Errors
    /// The loader's error (the configuration in force is unchanged).
    pub fn reload(&self) -> Result<u64, ChannelError> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        let running = Running(Arc::clone(&self.running));
        let loaded = (self.loader)();
        drop(running);
        self.finish(ticket, loaded)
    }

    /// Rebuilds the configuration on Tokio's blocking pool and swaps it in, giving up after
    /// `deadline` (the configuration in force is then unchanged, and the abandoned load's
    /// result is dropped when it ends). Needs a Tokio runtime with timers (`enable_all`).
    ///
    /// # Errors
    /// The loader's error; [`ChannelError::Timeout`] past `deadline`;
    /// [`ChannelError::ReloadBusy`] when [`MAX_RUNNING_RELOADS`] loads are still running;
    /// [`ChannelError::TaskFailed`].
    pub async fn reload_async(self: &Arc<Self>, deadline: Duration) -> Result<u64, ChannelError> {
        let running = self.running.fetch_add(1, Ordering::SeqCst);
        let guard = Running(Arc::clone(&self.running));
        if running >= MAX_RUNNING_RELOADS {
            drop(guard);
            let error = ChannelError::ReloadBusy { running };
            tracing::warn!("reload refused: {error}");
            return Err(error);
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        let loader = Arc::clone(&self.loader);
        let loaded = blocking_within("reading the certificate files", deadline, move || {
            let _guard = guard;
            loader()
        })
        .await;
        self.finish(ticket, loaded)
    }

    fn finish(&self, ticket: u64, loaded: Result<LoadedServerConfig, ChannelError>) -> Result<u64, ChannelError> {
        match loaded {
            Ok(loaded) => {
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if current.ticket > ticket {
                    tracing::info!("a later reload already installed newer files; this one's are dropped");
                    return Ok(self.generation());
                }
                for warning in &loaded.warnings {
                    tracing::warn!("{warning}; then reload");
                }
                *current = Installed {
                    config: Arc::new(loaded.config),
                    crls: loaded.crls,
                    ticket,
                };
                let generation = self.generation.fetch_add(1, Ordering::SeqCst).saturating_add(1);
                match &loaded.session_tickets {
                    // The keys in force, by their names (never the keys), as at start: an
                    // operator confirms a rotation by the sealing key.
                    Some(tickets) => tracing::info!(
                        generation,
                        keys = tickets.keys.len(),
                        sealing_key = %tickets.keys.names().first().map_or("", String::as_str),
                        lifetime_seconds = tickets.lifetime.as_secs(),
                        "configuration reloaded"
                    ),
                    None => tracing::info!(generation, "configuration reloaded"),
                }
                Ok(generation)
            }
            Err(error) => {
                tracing::warn!(reason = %crate::pki::error_chain(&error), "reload failed; keeping the previous configuration");
                Err(error)
            }
        }
    }
}
