//! Periodic work of `ca serve`, done by one instance at a time under a lease in the store
//! (DESIGN.md, "`ca serve`"; [`crate::ca::store::acme`]): regenerating the CRL that every
//! instance serves at `/crl`, and the clean-up of expired nonces, orders and authorizations.
//!
//! Every instance runs [`run`]. Each round (every [`PeriodicSettings::period`]) it tries to take
//! or renew the lease `crl` ([`CRL_LEASE`]) and the lease `expire` ([`EXPIRE_LEASE`]) for
//! [`PeriodicSettings::lease_ttl`]; only the holder works. The holder of `crl` signs a new CRL
//! when the published one is missing, has a lower number than the store's CRL number (a
//! revocation, or `ca crl`, handed out a newer number), or is past half its lifetime, and
//! publishes it with the lease's fencing token; the holder of `expire` runs
//! [`AcmeStore::expire`](crate::ca::store::acme::AcmeStore::expire). A holder that stops (killed,
//! or stalled past its lease) loses the lease when its time runs out, the next instance takes it
//! with the next token, and whatever the old holder still tries under its old token is refused
//! by the store. A holder that stops cleanly (SIGTERM) releases its leases ([`release`]), so the
//! next instance takes over at its next round.
//!
//! The store is synchronous (rusqlite, the blocking `postgres` client): [`run`] calls it on
//! Tokio's blocking pool, through a connection of its own. [`round`], [`prepare_crl`],
//! [`publish_crl`] and [`expire`] are the same steps without the loop, for tests and tools.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use super::server::OffRuntime;
use crate::ca::store::acme::{Expired, Lease, PublishedCrl};
use crate::ca::store::{Store, WriteAccess};
use crate::ca::{CaError, CertificateAuthority, DEFAULT_CRL_LIFETIME};
use crate::pki::CrlInfo;

/// The lease for regenerating and publishing the CRL.
pub const CRL_LEASE: &str = "crl";
/// The lease for [`AcmeStore::expire`](crate::ca::store::acme::AcmeStore::expire).
pub const EXPIRE_LEASE: &str = "expire";

/// How often and for how long the periodic work runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodicSettings {
    /// Time between rounds (default 5 s).
    pub period: Duration,
    /// How long a lease is granted for (default 30 s; longer than `period`, which renews it).
    /// After a holder stops, another instance takes over within this time plus one period.
    /// The store counts whole seconds (at least one).
    pub lease_ttl: Duration,
    /// The lifetime (nextUpdate − thisUpdate) of the CRLs it signs (default
    /// [`DEFAULT_CRL_LIFETIME`], 7 days); a CRL is signed again after half of it.
    pub crl_lifetime: Duration,
    /// An order in `processing` (being finalized) longer than this becomes invalid
    /// (default 5 minutes).
    pub stuck_after: Duration,
}

impl Default for PeriodicSettings {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            crl_lifetime: DEFAULT_CRL_LIFETIME,
            stuck_after: Duration::from_secs(300),
        }
    }
}

/// How far this machine's clock may be from the store's (seconds) before the periodic work
/// stops taking leases: a lease runs until a time written by its holder's clock, so a clock
/// ahead would take others' leases early and hold its own for as long as it is ahead, and a CRL
/// signed by it would not be valid yet. Well under the lease's time (30 s).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// This machine's clock minus the store's at `now` (seconds), when the difference is over
/// [`MAX_CLOCK_SKEW`]; `None` when they agree.
///
/// # Errors
/// [`CaError::Store`] when the store fails.
pub fn clock_skew(store: &mut dyn Store, now: OffsetDateTime) -> Result<Option<i64>, CaError> {
    let skew = now.unix_timestamp().saturating_sub(store.acme().clock()?);
    let limit = i64::try_from(MAX_CLOCK_SKEW.as_secs()).unwrap_or(i64::MAX);
    Ok((skew.saturating_abs() > limit).then_some(skew))
}

/// What one [`round`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The `crl` lease, when this instance holds it.
    pub crl_lease: Option<Lease>,
    /// The number of the CRL published in this round, if one was.
    pub published: Option<u64>,
    /// The `expire` lease, when this instance holds it.
    pub expire_lease: Option<Lease>,
    /// What the clean-up did, when it ran.
    pub expired: Option<Expired>,
}

/// A CRL signed under a lease, not yet published (see [`prepare_crl`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedCrl {
    /// The lease it was signed under.
    pub lease: Lease,
    /// The CRL.
    pub crl: PublishedCrl,
}

/// Whether a new CRL is due at `now` (Unix seconds): none is published, the published one has a
/// lower number than `store_number` (the last one the store handed out), or it is past half its
/// lifetime.
pub fn crl_due(published: Option<&PublishedCrl>, store_number: u64, now: i64) -> bool {
    match published {
        None => true,
        Some(crl) => {
            let half = crl.next_update.saturating_sub(crl.this_update) / 2;
            crl.number < store_number || now >= crl.this_update.saturating_add(half)
        }
    }
}

/// Takes or renews the `crl` lease for `holder` at `now`; while it holds it and a CRL is due
/// (see [`crl_due`]), hands out the next CRL number and signs the CRL with `ca`'s key. Returns
/// the lease (`None`: another instance holds it) and the CRL to publish, if any.
///
/// # Errors
/// [`CaError::Store`] when the store fails, [`CaError::InvalidRequest`] for a CRL lifetime or
/// time a CRL cannot carry, [`CaError::Build`] when signing fails, [`CaError::Pki`] when the
/// signed CRL does not read back.
pub fn prepare_crl(
    ca: &CertificateAuthority,
    store: &mut dyn Store,
    holder: &str,
    settings: &PeriodicSettings,
    now: OffsetDateTime,
) -> Result<(Option<Lease>, Option<PreparedCrl>), CaError> {
    let unix = now.unix_timestamp();
    let Some(lease) = store
        .acme()
        .lease_acquire(CRL_LEASE, holder, settings.lease_ttl, unix)?
    else {
        return Ok((None, None));
    };
    let published = store.acme().crl_published()?;
    if !crl_due(published.as_ref(), store.crl_number()?, unix) {
        return Ok((Some(lease), None));
    }
    let state = store.advance_crl_number(WriteAccess::granted())?;
    let der = ca.sign_crl(&state, now, settings.crl_lifetime)?;
    // The times as the CRL carries them.
    let info = CrlInfo::from_der(der.as_ref())?;
    let this_update = info.this_update.unix_timestamp();
    let crl = PublishedCrl {
        der: der.as_ref().to_vec(),
        number: state.number,
        this_update,
        next_update: info.next_update.map_or(this_update, OffsetDateTime::unix_timestamp),
    };
    Ok((Some(lease.clone()), Some(PreparedCrl { lease, crl })))
}

/// Publishes a CRL signed by [`prepare_crl`] under its lease: false when the store refused it
/// (the lease passed to another instance since, or a CRL with a higher number is published).
///
/// # Errors
/// [`CaError::Store`] when the store fails.
pub fn publish_crl(store: &mut dyn Store, prepared: &PreparedCrl) -> Result<bool, CaError> {
    store.acme().crl_publish(&prepared.crl, Some(&prepared.lease))
}

/// Takes or renews the `expire` lease for `holder` at `now` and, while it holds it, runs the
/// clean-up (orders in `processing` since before `now − stuck_after` count as stuck). Returns the
/// lease and what the clean-up did (`None` when it did not run or the store refused the lease).
///
/// # Errors
/// [`CaError::Store`] when the store fails.
pub fn expire(
    store: &mut dyn Store,
    holder: &str,
    settings: &PeriodicSettings,
    now: OffsetDateTime,
) -> Result<(Option<Lease>, Option<Expired>), CaError> {
    let unix = now.unix_timestamp();
    let Some(lease) = store
        .acme()
        .lease_acquire(EXPIRE_LEASE, holder, settings.lease_ttl, unix)?
    else {
        return Ok((None, None));
    };
    let stuck = i64::try_from(settings.stuck_after.as_secs()).unwrap_or(i64::MAX);
    let expired = store.acme().expire(unix, unix.saturating_sub(stuck), &lease)?;
    Ok((Some(lease), expired))
}

/// One round of periodic work at `now`: [`prepare_crl`] and [`publish_crl`], then [`expire`].
///
/// # Errors
/// As [`prepare_crl`] and [`expire`]; the clean-up is not tried when the CRL step failed.
pub fn round(
    ca: &CertificateAuthority,
    store: &mut dyn Store,
    holder: &str,
    settings: &PeriodicSettings,
    now: OffsetDateTime,
) -> Result<Round, CaError> {
    let (crl_lease, prepared) = prepare_crl(ca, store, holder, settings, now)?;
    let mut published = None;
    if let Some(prepared) = &prepared {
        if publish_crl(store, prepared)? {
            published = Some(prepared.crl.number);
        } else {
            tracing::warn!(
                holder,
                token = prepared.lease.token,
                number = prepared.crl.number,
                "the store refused the CRL (the lease passed to another instance, or a newer CRL is published)"
            );
        }
    }
    let (expire_lease, expired) = expire(store, holder, settings, now)?;
    Ok(Round {
        crl_lease,
        published,
        expire_lease,
        expired,
    })
}

/// Runs the periodic work until `shutdown` completes, then [`release`]s its leases: a [`round`]
/// right away and then every `settings.period`, each on Tokio's blocking pool with `store` (a connection of this task's
/// own, opened with [`crate::ca::store::open`] for `ca`'s directory, outside the runtime or
/// with `spawn_blocking`: the blocking PostgreSQL client cannot connect on a runtime's thread;
/// when `run` ends or is aborted it closes `store` on a thread of its own). `holder` names this
/// instance (random per process). A round that fails is logged and the next one tried; nothing
/// here ends the service. Logs (tracing): leases taken and lost with their tokens, the number of
/// every CRL published, what the clean-up did; never keys.
pub async fn run(
    ca: Arc<CertificateAuthority>,
    store: Box<dyn Store>,
    holder: String,
    settings: PeriodicSettings,
    shutdown: impl Future<Output = ()> + Send,
) {
    // Dropped off the async runtime, even when `run` is aborted: the blocking PostgreSQL client
    // runs a runtime of its own to close its connection, which panics on a runtime's thread.
    let store = Arc::new(Mutex::new(OffRuntime(Some(store))));
    let settings = Arc::new(settings);
    let holder: Arc<str> = Arc::from(holder);
    let mut ticks = tokio::time::interval(settings.period.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held: (Option<i64>, Option<i64>) = (None, None);
    let mut skewed: Option<i64> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {}
        }
        let (ca, store, settings, who) = (
            Arc::clone(&ca),
            Arc::clone(&store),
            Arc::clone(&settings),
            Arc::clone(&holder),
        );
        let done = tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.0.as_mut() {
                // A lost connection is replaced first (Store::ensure_connected); a clock that
                // disagrees with the store's takes no lease.
                Some(store) => store.ensure_connected().and_then(|()| {
                    let now = OffsetDateTime::now_utc();
                    match clock_skew(store.as_mut(), now)? {
                        Some(skew) => Ok(Err(skew)),
                        None => round(&ca, store.as_mut(), &who, &settings, now).map(Ok),
                    }
                }),
                None => Ok(Ok(Round::default())),
            }
        })
        .await;
        match done {
            Ok(Ok(Err(skew))) => {
                if skewed.is_none() {
                    tracing::error!(
                        holder = &*holder,
                        skew_s = skew,
                        max_s = MAX_CLOCK_SKEW.as_secs(),
                        "this machine's clock is {} s {} the database's: no lease is taken (CRL, clean-up) until they agree; fix its time (NTP)",
                        skew.saturating_abs(),
                        if skew > 0 { "ahead of" } else { "behind" }
                    );
                }
                skewed = Some(skew);
            }
            Ok(Ok(Ok(result))) => {
                if skewed.take().is_some() {
                    tracing::info!(
                        holder = &*holder,
                        "this machine's clock agrees with the database's again"
                    );
                }
                log_round(&holder, &result, &mut held);
            }
            Ok(Err(e)) => {
                tracing::warn!(holder = &*holder, error = %e, "periodic work failed; trying again next round")
            }
            Err(e) => {
                tracing::warn!(holder = &*holder, error = %e, "periodic work stopped midway; trying again next round")
            }
        }
    }
    // A clean stop gives the leases up, so that another instance takes over at its next round
    // rather than after the lease's time.
    let (who, task_store) = (Arc::clone(&holder), Arc::clone(&store));
    let released = tokio::task::spawn_blocking(move || {
        let mut guard = task_store.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.0.as_mut() {
            Some(store) => store.ensure_connected().and_then(|()| release(store.as_mut(), &who)),
            None => Ok(Vec::new()),
        }
    })
    .await;
    match released {
        Ok(Ok(names)) => {
            for name in names {
                tracing::info!(holder = &*holder, lease = name, "released the lease");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(holder = &*holder, error = %e, "cannot release the leases; another instance takes over when they run out")
        }
        Err(e) => tracing::warn!(holder = &*holder, error = %e, "releasing the leases stopped midway"),
    }
    tracing::info!(holder = &*holder, "periodic work stopped");
    // Should this task outlive the service (it is given 5 s to stop), its reference to the CA
    // may be the last: the CA's store client is closed off the runtime.
    super::server::drop_off_runtime(ca);
}

/// Gives up the leases ([`CRL_LEASE`], [`EXPIRE_LEASE`]) that `holder` holds (what [`run`]
/// does when it is stopped): another instance takes each at its next try, with the next token.
/// Returns the names of the leases released.
///
/// # Errors
/// [`CaError::Store`] when the store fails.
pub fn release(store: &mut dyn Store, holder: &str) -> Result<Vec<&'static str>, CaError> {
    let mut released = Vec::new();
    for name in [CRL_LEASE, EXPIRE_LEASE] {
        if store.acme().lease_release(name, holder)? {
            released.push(name);
        }
    }
    Ok(released)
}

/// Logs what changed: a lease taken (with its token) or lost, a CRL published, a clean-up
/// that did something.
fn log_round(holder: &str, result: &Round, held: &mut (Option<i64>, Option<i64>)) {
    for (name, lease, last) in [
        (CRL_LEASE, &result.crl_lease, &mut held.0),
        (EXPIRE_LEASE, &result.expire_lease, &mut held.1),
    ] {
        let token = lease.as_ref().map(|l| l.token);
        if token != *last {
            match token {
                Some(token) => tracing::info!(holder, lease = name, token, "holds the lease"),
                None => tracing::info!(holder, lease = name, "another instance holds the lease"),
            }
            *last = token;
        }
    }
    if let (Some(number), Some(lease)) = (result.published, &result.crl_lease) {
        tracing::info!(holder, token = lease.token, number, "published CRL");
    }
    if let Some(expired) = result.expired
        && expired != Expired::default()
    {
        tracing::info!(
            holder,
            nonces = expired.nonces,
            orders = expired.orders,
            authorizations = expired.authorizations,
            "expired ACME state"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(number: u64, this_update: i64, next_update: i64) -> PublishedCrl {
        PublishedCrl {
            der: Vec::new(),
            number,
            this_update,
            next_update,
        }
    }

    #[test]
    fn a_crl_is_due_when_missing_behind_the_store_or_past_half_its_lifetime() {
        assert!(crl_due(None, 0, 0));
        let published = crl(4, 1_000, 1_100);
        assert!(!crl_due(Some(&published), 4, 1_000));
        assert!(!crl_due(Some(&published), 4, 1_049));
        assert!(crl_due(Some(&published), 4, 1_050), "half its lifetime");
        assert!(
            crl_due(Some(&published), 5, 1_000),
            "the store handed out a newer number"
        );
        assert!(!crl_due(Some(&published), 3, 1_000));
        assert!(crl_due(Some(&crl(1, 5, 5)), 1, 5), "no lifetime left");
    }

    #[test]
    fn defaults_renew_the_lease_well_before_it_runs_out() {
        let settings = PeriodicSettings::default();
        assert!(settings.lease_ttl >= settings.period * 3);
        assert_eq!(settings.crl_lifetime, DEFAULT_CRL_LIFETIME);
    }
}
