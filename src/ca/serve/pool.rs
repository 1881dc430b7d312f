//! A small pool of opened stores for the ACME handlers. The stores are synchronous (rusqlite, the
//! `postgres` crate's blocking client), so every call runs on Tokio's blocking pool, never on a
//! runtime worker; one connection per store, at most as many calls at once as stores.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

use crate::ca::CaError;
use crate::ca::store::acme::AcmeStore;
use crate::ca::store::{self, Location, Store};

/// Opened stores of one CA, shared by the handlers.
pub(crate) struct StorePool {
    slots: Vec<Arc<Mutex<Box<dyn Store>>>>,
    permits: Arc<Semaphore>,
    describe: String,
}

impl StorePool {
    /// Opens `size` (at least one) connections to the store of the CA in `dir` whose
    /// certificate has SHA-256 fingerprint `issuer`.
    pub(crate) fn open(dir: &Path, issuer: &str, location: Option<&Location>, size: usize) -> Result<Self, CaError> {
        let size = size.max(1);
        let mut slots = Vec::with_capacity(size);
        for _ in 0..size {
            slots.push(Arc::new(Mutex::new(store::open(dir, issuer, location)?)));
        }
        let describe = slots
            .first()
            .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner).describe())
            .unwrap_or_default();
        Ok(Self {
            slots,
            permits: Arc::new(Semaphore::new(size)),
            describe,
        })
    }

    /// Runs `f` with one of the stores' ACME state, on the blocking pool.
    pub(crate) async fn acme<T, F>(&self, f: F) -> Result<T, CaError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn AcmeStore) -> Result<T, CaError> + Send + 'static,
    {
        self.store(move |store| f(store.acme())).await
    }

    /// Runs `f` with one of the stores, on the blocking pool.
    pub(crate) async fn store<T, F>(&self, f: F) -> Result<T, CaError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> Result<T, CaError> + Send + 'static,
    {
        let broken = |reason: &str| CaError::Store {
            store: self.describe.clone(),
            reason: reason.into(),
        };
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| broken("the store pool is closed"))?;
        let slots = self.slots.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // With a permit held, at most `size - 1` others hold a store: one is free.
            let guard = slots.iter().find_map(|slot| slot.try_lock().ok()).or_else(|| {
                slots
                    .first()
                    .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner))
            });
            let result = match guard {
                Some(mut store) => f(store.as_mut()),
                None => Err(CaError::Store {
                    store: String::new(),
                    reason: "no store is open".into(),
                }),
            };
            drop(permit);
            result
        })
        .await;
        joined.map_err(|_| broken("a store operation failed midway"))?
    }
}

impl Drop for StorePool {
    fn drop(&mut self) {
        super::server::drop_off_runtime(std::mem::take(&mut self.slots));
    }
}
