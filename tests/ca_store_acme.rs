//! The ACME state of `ca serve` in the CA's store (`ca::store::acme`): one generic suite run on
//! SQLite and on a private PostgreSQL cluster. Round trips of every row type; the once-only
//! transitions raced by 8 threads, each on its own connection (nonces, accounts, challenge
//! claims, finalize claims); orders following their authorizations; finalization that records
//! the certificate and the order together or not at all; leases with fencing tokens; the
//! published CRL; the periodic clean-up. Then the periodic work of `ca serve` under leases
//! (`ca::serve::periodic`): CRLs signed by the CA and published when due, one runner taking
//! over from a stopped one with the next token, a stalled runner fenced off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_macros)]

mod pg_support;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pg_support::Postgres;
use tessera::ca::serve::periodic::{self, PeriodicSettings};
use tessera::ca::store::acme::{
    Account, AccountStatus, Authorization, AuthorizationStatus, Challenge, ChallengeStatus, Expired, Identifier, Lease,
    Order, OrderStatus, PublishedCrl, Rekeyed,
};
use tessera::ca::store::{self, Store, WriteAccess};
use tessera::ca::{
    CertificateAuthority, InitRequest, IssueRequest, Location, Profile, Record, RevocationReason, SubjectAltName,
};
use tessera::pki::CrlInfo;
use time::OffsetDateTime;

const WRITE: WriteAccess = tessera::internal::STORE_WRITE_ACCESS;
const THREADS: usize = 8;
/// A fixed "now" for the rows (Unix seconds); only `order_claim_finalize` reads the clock.
const NOW: i64 = 1_900_000_000;

type Open<'a> = &'a (dyn Fn() -> Box<dyn Store> + Sync);

fn some_certificate() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["acme.test".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn record(serial: &str, pem: &str) -> Record {
    let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
    Record {
        serial: serial.parse().unwrap(),
        subject: format!("CN={serial}"),
        sans: vec![SubjectAltName::Dns("a.acme.test".into())],
        profile: "server".into(),
        not_before: now,
        not_after: now + time::Duration::days(1),
        issued_at: now,
        revoked: None,
        certificate: pem.into(),
    }
}

fn account(id: &str, thumbprint: &str) -> Account {
    Account {
        id: id.into(),
        thumbprint: thumbprint.into(),
        jwk: format!(r#"{{"kty":"EC","crv":"P-256","x":"{id}","y":"y"}}"#),
        contact: vec![format!("mailto:{id}@example.test")],
        status: AccountStatus::Valid,
        created: NOW,
    }
}

fn challenge(id: &str, kind: &str) -> Challenge {
    Challenge {
        id: id.into(),
        kind: kind.into(),
        token: format!("token-{id}"),
        status: ChallengeStatus::Pending,
        validated: None,
        error: None,
    }
}

/// An order `id` of `account` for `names`, with one authorization per name (`ID-aN`), each with
/// an http-01 (`ID-aN-h`) and a tls-alpn-01 (`ID-aN-t`) challenge.
fn order(id: &str, account: &str, names: &[&str], expires: i64) -> (Order, Vec<Authorization>) {
    let authorizations: Vec<Authorization> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let aid = format!("{id}-a{n}");
            Authorization {
                id: aid.clone(),
                order_id: id.into(),
                account_id: account.into(),
                identifier: Identifier {
                    kind: "dns".into(),
                    value: name.trim_start_matches("*.").into(),
                },
                wildcard: name.starts_with("*."),
                status: AuthorizationStatus::Pending,
                expires,
                challenges: vec![
                    challenge(&format!("{aid}-h"), "http-01"),
                    challenge(&format!("{aid}-t"), "tls-alpn-01"),
                ],
            }
        })
        .collect();
    let order = Order {
        id: id.into(),
        account_id: account.into(),
        status: OrderStatus::Pending,
        identifiers: names
            .iter()
            .map(|n| Identifier {
                kind: "dns".into(),
                value: (*n).into(),
            })
            .collect(),
        authorizations: authorizations.iter().map(|a| a.id.clone()).collect(),
        expires,
        not_before: None,
        not_after: None,
        error: None,
        certificate: None,
        replaces: None,
        created: NOW,
    };
    (order, authorizations)
}

/// Runs `work` on `THREADS` threads at once, each with its own connection; their results.
fn race<T: Send>(open: Open<'_>, work: &(dyn Fn(&mut dyn Store) -> T + Sync)) -> Vec<T> {
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut store = open();
                    barrier.wait();
                    work(store.as_mut())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn winners(results: &[bool]) -> usize {
    results.iter().filter(|won| **won).count()
}

/// What every backend must do; `open` opens a new connection to one CA's store.
fn acme_suite(open: Open<'_>) {
    let mut store = open();
    let pem = some_certificate();
    rows_round_trip(store.as_mut(), &pem);
    nonces(open, store.as_mut());
    accounts(open, store.as_mut());
    challenges_and_orders(open, store.as_mut());
    finalization(open, store.as_mut(), &pem);
    leases_and_crls(store.as_mut());
    clean_up(store.as_mut());
    orders_lists(store.as_mut());
    key_rollover(open, store.as_mut());
    replaced_once(open, store.as_mut());
    leases_released(store.as_mut());
    clocks(store.as_mut());
}

/// The store's clock (PostgreSQL's on PostgreSQL) is this machine's within a second here, and
/// a machine clock more than MAX_CLOCK_SKEW away from it is reported, ahead or behind.
fn clocks(store: &mut dyn Store) {
    let now = OffsetDateTime::now_utc();
    let theirs = store.acme().clock().unwrap();
    assert!(
        (theirs - now.unix_timestamp()).abs() <= 2,
        "store {theirs}, machine {}",
        now.unix_timestamp()
    );
    assert_eq!(periodic::clock_skew(store, now).unwrap(), None);
    let ahead = periodic::clock_skew(store, now + time::Duration::minutes(10))
        .unwrap()
        .unwrap();
    assert!((598..=602).contains(&ahead), "{ahead}");
    let behind = periodic::clock_skew(store, now - time::Duration::seconds(30))
        .unwrap()
        .unwrap();
    assert!((-32..=-28).contains(&behind), "{behind}");
    let limit = periodic::MAX_CLOCK_SKEW.as_secs() as i64;
    assert_eq!(
        periodic::clock_skew(store, now + time::Duration::seconds(limit - 2)).unwrap(),
        None
    );
}

/// An account's orders list (RFC 8555 §7.1.2.1): live orders, newest first, paged by cursor.
fn orders_lists(store: &mut dyn Store) {
    let acme = store.acme();
    acme.account_create(&account("lister", "thumb-lister")).unwrap();
    acme.account_create(&account("other-lister", "thumb-other-lister"))
        .unwrap();
    for n in 0..7 {
        let (mut o, a) = order(&format!("list-{n}"), "lister", &["l.acme.test"], NOW + 3600);
        // Two share a creation time: the identifier decides between them.
        o.created = NOW + [0, 1, 2, 2, 3, 4, 5][n];
        assert!(acme.order_create(&o, &a).unwrap());
    }
    let (o, a) = order("list-other", "other-lister", &["l.acme.test"], NOW + 3600);
    assert!(acme.order_create(&o, &a).unwrap());
    acme.authorization_deactivate("list-4-a0").unwrap();
    let ids = |orders: Vec<Order>| orders.into_iter().map(|o| o.id).collect::<Vec<_>>();
    let page1 = acme.orders_of_account("lister", None, 3).unwrap();
    let last = page1.last().map(|o| (o.created, o.id.clone())).unwrap();
    assert_eq!(
        ids(page1),
        ["list-6", "list-5", "list-3"],
        "newest first, list-4 invalid"
    );
    let page2 = acme.orders_of_account("lister", Some((last.0, &last.1)), 3).unwrap();
    let last = page2.last().map(|o| (o.created, o.id.clone())).unwrap();
    assert_eq!(ids(page2), ["list-2", "list-1", "list-0"]);
    assert!(
        acme.orders_of_account("lister", Some((last.0, &last.1)), 3)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(acme.orders_of_account("other-lister", None, 100).unwrap()),
        ["list-other"]
    );
    assert!(acme.orders_of_account("nobody", None, 100).unwrap().is_empty());
}

/// Account key rollover (RFC 8555 §7.3.5): conditional on the old key, refused for a key
/// another account has, and of eight rollovers to one key at once, one wins.
fn key_rollover(open: Open<'_>, store: &mut dyn Store) {
    let acme = store.acme();
    acme.account_create(&account("roller", "thumb-roller")).unwrap();
    acme.account_create(&account("holder", "thumb-holder")).unwrap();
    assert_eq!(
        acme.account_rekey("roller", "thumb-roller", "thumb-holder", "{}")
            .unwrap(),
        Rekeyed::KeyInUse("holder".into())
    );
    assert_eq!(
        acme.account_rekey("roller", "thumb-wrong", "thumb-roller-2", "{}")
            .unwrap(),
        Rekeyed::Stale
    );
    assert_eq!(
        acme.account_rekey("nobody", "thumb-nobody", "thumb-roller-2", "{}")
            .unwrap(),
        Rekeyed::Stale
    );
    assert_eq!(
        acme.account_rekey("roller", "thumb-roller", "thumb-roller-2", r#"{"new":1}"#)
            .unwrap(),
        Rekeyed::Done
    );
    let rolled = acme.account("roller").unwrap().unwrap();
    assert_eq!(
        (rolled.thumbprint.as_str(), rolled.jwk.as_str()),
        ("thumb-roller-2", r#"{"new":1}"#)
    );
    assert_eq!(acme.account_by_thumbprint("thumb-roller").unwrap(), None);
    assert_eq!(
        acme.account_rekey("roller", "thumb-roller", "thumb-roller-3", "{}")
            .unwrap(),
        Rekeyed::Stale,
        "the old key is no longer the account's"
    );
    // Eight accounts roll over to one new key at once: one gets it, the others see it in use.
    for n in 0..THREADS {
        store
            .acme()
            .account_create(&account(&format!("racer-{n}"), &format!("thumb-racer-{n}")))
            .unwrap();
    }
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let results = race(open, &|s| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        s.acme()
            .account_rekey(
                &format!("racer-{n}"),
                &format!("thumb-racer-{n}"),
                "thumb-contested",
                "{}",
            )
            .unwrap()
    });
    assert_eq!(
        results.iter().filter(|r| **r == Rekeyed::Done).count(),
        1,
        "{results:?}"
    );
    let winner = store
        .acme()
        .account_by_thumbprint("thumb-contested")
        .unwrap()
        .unwrap()
        .id;
    assert!(
        results
            .iter()
            .all(|r| *r == Rekeyed::Done || *r == Rekeyed::KeyInUse(winner.clone())),
        "{results:?}"
    );
}

/// RFC 9773 §5: one live order replaces a certificate; eight at once, one is created.
fn replaced_once(open: Open<'_>, store: &mut dyn Store) {
    store
        .acme()
        .account_create(&account("renewer", "thumb-renewer"))
        .unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let results = race(open, &|s| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (mut o, a) = order(&format!("renew-{n}"), "renewer", &["r.acme.test"], NOW + 3600);
        o.replaces = Some("aki.serial-1".into());
        s.acme().order_create(&o, &a).unwrap()
    });
    assert_eq!(winners(&results), 1, "{results:?}");
    let acme = store.acme();
    let live: Vec<Order> = acme.orders_of_account("renewer", None, 100).unwrap();
    assert_eq!(live.len(), 1, "the losers wrote nothing");
    let winner = live[0].id.clone();
    assert!(acme.authorization(&format!("{winner}-a0")).unwrap().is_some());
    let loser = (0..THREADS)
        .map(|n| format!("renew-{n}"))
        .find(|id| *id != winner)
        .unwrap();
    assert_eq!(acme.order(&loser).unwrap(), None);
    assert_eq!(acme.authorization(&format!("{loser}-a0")).unwrap(), None);
    // Another certificate, or none, is not affected.
    let (mut o, a) = order("renew-other", "renewer", &["r.acme.test"], NOW + 3600);
    o.replaces = Some("aki.serial-2".into());
    assert!(acme.order_create(&o, &a).unwrap());
    let (o, a) = order("renew-none", "renewer", &["r.acme.test"], NOW + 3600);
    assert!(acme.order_create(&o, &a).unwrap());
    // Once the live one is invalid, the certificate may be replaced again.
    let (mut o, a) = order("renew-again", "renewer", &["r.acme.test"], NOW + 3600);
    o.replaces = Some("aki.serial-1".into());
    assert!(!acme.order_create(&o, &a).unwrap());
    acme.authorization_deactivate(&format!("{winner}-a0")).unwrap();
    assert_eq!(acme.order(&winner).unwrap().unwrap().status, OrderStatus::Invalid);
    assert!(acme.order_create(&o, &a).unwrap());
}

/// A released lease is taken by the next holder at once, with the next token.
fn leases_released(store: &mut dyn Store) {
    let ttl = Duration::from_secs(3600);
    let acme = store.acme();
    let a = acme
        .lease_acquire("release-test", "holder-a", ttl, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(
        acme.lease_acquire("release-test", "holder-b", ttl, NOW + 1).unwrap(),
        None
    );
    assert!(
        !acme.lease_release("release-test", "holder-b").unwrap(),
        "not its lease"
    );
    assert!(!acme.lease_release("no-such-lease", "holder-a").unwrap());
    assert_eq!(
        acme.lease_acquire("release-test", "holder-b", ttl, NOW + 1).unwrap(),
        None
    );
    assert!(acme.lease_release("release-test", "holder-a").unwrap());
    let b = acme
        .lease_acquire("release-test", "holder-b", ttl, NOW + 1)
        .unwrap()
        .unwrap();
    assert_eq!((b.holder.as_str(), b.token), ("holder-b", a.token + 1));
    // Work stamped with A's token is refused from then on.
    let crl = PublishedCrl {
        der: vec![0x30, 0x00],
        number: 1_000,
        this_update: NOW,
        next_update: NOW + 60,
    };
    assert!(!acme.crl_publish(&crl, Some(&a)).unwrap());
}

fn rows_round_trip(store: &mut dyn Store, pem: &str) {
    let acme = store.acme();
    let mut alice = account("alice", "thumb-alice");
    assert_eq!(acme.account_create(&alice).unwrap(), (alice.clone(), true));
    assert_eq!(acme.account("alice").unwrap(), Some(alice.clone()));
    assert_eq!(acme.account_by_thumbprint("thumb-alice").unwrap(), Some(alice.clone()));
    assert_eq!(acme.account("nobody").unwrap(), None);
    assert_eq!(acme.account_by_thumbprint("thumb-nobody").unwrap(), None);
    alice.contact = vec!["mailto:a@example.test".into(), "mailto:b@example.test".into()];
    alice.status = AccountStatus::Deactivated;
    acme.account_update(&alice).unwrap();
    assert_eq!(acme.account("alice").unwrap(), Some(alice.clone()));
    alice.status = AccountStatus::Valid;
    alice.contact.clear();
    acme.account_update(&alice).unwrap();
    assert_eq!(acme.account("alice").unwrap().unwrap().contact, Vec::<String>::new());

    let (mut o, authorizations) = order("o1", "alice", &["a.acme.test", "*.b.acme.test"], NOW + 3600);
    o.not_before = Some(NOW);
    o.not_after = Some(NOW + 86_400);
    o.replaces = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
    acme.order_create(&o, &authorizations).unwrap();
    assert_eq!(acme.order("o1").unwrap(), Some(o.clone()));
    assert_eq!(acme.order("o2").unwrap(), None);
    for a in &authorizations {
        assert_eq!(acme.authorization(&a.id).unwrap().as_ref(), Some(a));
        for c in &a.challenges {
            assert_eq!(acme.challenge(&c.id).unwrap(), Some((c.clone(), a.clone())));
        }
    }
    assert!(authorizations[1].wildcard);
    assert_eq!(authorizations[1].identifier.value, "b.acme.test");
    assert_eq!(acme.authorization("o1-a9").unwrap(), None);
    assert_eq!(acme.challenge("o1-a9-h").unwrap(), None);
    assert_eq!(acme.order_by_certificate(&"0bad".parse().unwrap()).unwrap(), None);

    // An order that fails to be created leaves nothing (one transaction): its second
    // authorization reuses the first one's identifier.
    let (bad, mut bad_authorizations) = order("bad", "alice", &["x.acme.test", "y.acme.test"], NOW + 3600);
    bad_authorizations[1].id = bad_authorizations[0].id.clone();
    assert!(acme.order_create(&bad, &bad_authorizations).is_err());
    assert_eq!(acme.order("bad").unwrap(), None);
    assert_eq!(acme.authorization("bad-a0").unwrap(), None);

    // A stored certificate is found by the order that has it (after finalization, below).
    let _ = pem;
}

fn nonces(open: Open<'_>, store: &mut dyn Store) {
    let acme = store.acme();
    acme.nonce_put("n-once", NOW + 60).unwrap();
    assert!(acme.nonce_take("n-once", NOW).unwrap());
    assert!(!acme.nonce_take("n-once", NOW).unwrap(), "used once");
    assert!(!acme.nonce_take("n-never", NOW).unwrap(), "unknown");
    acme.nonce_put("n-old", NOW + 60).unwrap();
    assert!(!acme.nonce_take("n-old", NOW + 60).unwrap(), "expired at its expiry");
    assert!(!acme.nonce_take("n-old", NOW).unwrap(), "and gone");
    // Eight connections take one nonce at once, twenty times: exactly one of them gets it.
    for round in 0..20 {
        let nonce = format!("n-race-{round}");
        store.acme().nonce_put(&nonce, NOW + 60).unwrap();
        let results = race(open, &|s| s.acme().nonce_take(&nonce, NOW).unwrap());
        assert_eq!(winners(&results), 1, "round {round}: {results:?}");
    }
}

fn accounts(open: Open<'_>, store: &mut dyn Store) {
    // One key, eight instances creating its account at once: one account, the same for all.
    for round in 0..5 {
        let thumbprint = format!("thumb-race-{round}");
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let results = race(open, &|s| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            s.acme()
                .account_create(&account(&format!("race-{round}-{n}"), &thumbprint))
                .unwrap()
        });
        assert_eq!(results.iter().filter(|(_, new)| *new).count(), 1, "{results:?}");
        let winner = &results.iter().find(|(_, new)| *new).unwrap().0;
        assert!(results.iter().all(|(a, _)| a == winner), "{results:?}");
        assert_eq!(
            store.acme().account_by_thumbprint(&thumbprint).unwrap().as_ref(),
            Some(winner)
        );
    }
}

fn challenges_and_orders(open: Open<'_>, store: &mut dyn Store) {
    let acme = store.acme();
    acme.account_create(&account("bob", "thumb-bob")).unwrap();

    // Two authorizations: the order becomes ready when the second is valid, not before.
    let (o, a) = order("o-two", "bob", &["a.acme.test", "b.acme.test"], NOW + 3600);
    acme.order_create(&o, &a).unwrap();
    assert!(acme.challenge_claim("o-two-a0-h", NOW).unwrap());
    assert!(!acme.challenge_claim("o-two-a0-h", NOW).unwrap(), "claimed once");
    acme.challenge_finish("o-two-a0-h", true, None, NOW + 5).unwrap();
    let (c, authz) = acme.challenge("o-two-a0-h").unwrap().unwrap();
    assert_eq!(
        (c.status, c.validated, c.error),
        (ChallengeStatus::Valid, Some(NOW + 5), None)
    );
    assert_eq!(authz.status, AuthorizationStatus::Valid);
    assert_eq!(
        authz.challenges[1].status,
        ChallengeStatus::Pending,
        "the other challenge untouched"
    );
    assert_eq!(acme.order("o-two").unwrap().unwrap().status, OrderStatus::Pending);
    assert!(
        !acme.challenge_claim("o-two-a0-t", NOW).unwrap(),
        "no claim once the authorization is valid"
    );
    assert!(
        !acme.order_claim_finalize("o-two").unwrap(),
        "a pending order is not finalized"
    );
    // Eight instances claim the second authorization's challenge at once: one validates.
    let results = race(open, &|s| s.acme().challenge_claim("o-two-a1-t", NOW).unwrap());
    assert_eq!(winners(&results), 1, "{results:?}");
    assert_eq!(acme_challenge_status(store, "o-two-a1-t"), ChallengeStatus::Processing);
    let acme = store.acme();
    acme.challenge_finish("o-two-a1-t", true, None, NOW + 6).unwrap();
    assert_eq!(acme.order("o-two").unwrap().unwrap().status, OrderStatus::Ready);
    // Finishing again changes nothing.
    acme.challenge_finish("o-two-a1-t", false, Some("{}"), NOW + 7).unwrap();
    assert_eq!(acme.order("o-two").unwrap().unwrap().status, OrderStatus::Ready);
    assert_eq!(
        acme.authorization("o-two-a1").unwrap().unwrap().status,
        AuthorizationStatus::Valid
    );

    // One failed authorization makes the order invalid, with the challenge's problem.
    let problem = r#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"wrong key authorization"}"#;
    let (o, a) = order("o-fail", "bob", &["a.acme.test", "b.acme.test"], NOW + 3600);
    acme.order_create(&o, &a).unwrap();
    assert!(acme.challenge_claim("o-fail-a0-h", NOW).unwrap());
    acme.challenge_finish("o-fail-a0-h", true, None, NOW).unwrap();
    assert!(acme.challenge_claim("o-fail-a1-h", NOW).unwrap());
    acme.challenge_finish("o-fail-a1-h", false, Some(problem), NOW).unwrap();
    let (c, authz) = acme.challenge("o-fail-a1-h").unwrap().unwrap();
    assert_eq!((c.status, c.validated), (ChallengeStatus::Invalid, None));
    assert_eq!(c.error.as_deref(), Some(problem));
    assert_eq!(authz.status, AuthorizationStatus::Invalid);
    let failed = acme.order("o-fail").unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (OrderStatus::Invalid, Some(problem))
    );

    // An expired authorization's challenge cannot be claimed.
    let (o, a) = order("o-late", "bob", &["a.acme.test"], NOW + 10);
    acme.order_create(&o, &a).unwrap();
    assert!(!acme.challenge_claim("o-late-a0-h", NOW + 10).unwrap());
    assert!(!acme.challenge_claim("nope", NOW).unwrap());

    // Deactivation (§7.5.2): pending or valid only; the order becomes invalid.
    let (o, a) = order("o-deact", "bob", &["a.acme.test"], NOW + 3600);
    acme.order_create(&o, &a).unwrap();
    assert!(acme.authorization_deactivate("o-deact-a0").unwrap());
    assert!(!acme.authorization_deactivate("o-deact-a0").unwrap());
    assert!(!acme.authorization_deactivate("nope").unwrap());
    assert_eq!(
        acme.authorization("o-deact-a0").unwrap().unwrap().status,
        AuthorizationStatus::Deactivated
    );
    assert_eq!(acme.order("o-deact").unwrap().unwrap().status, OrderStatus::Invalid);

    // Two authorizations of one order validated at the same moment on two connections: the
    // order ends ready every time (neither misses the other's authorization).
    for round in 0..10 {
        let id = format!("o-pair-{round}");
        let (o, a) = order(&id, "bob", &["a.acme.test", "b.acme.test"], NOW + 3600);
        let acme = store.acme();
        acme.order_create(&o, &a).unwrap();
        assert!(acme.challenge_claim(&format!("{id}-a0-h"), NOW).unwrap());
        assert!(acme.challenge_claim(&format!("{id}-a1-h"), NOW).unwrap());
        let barrier = Barrier::new(2);
        std::thread::scope(|scope| {
            for n in 0..2 {
                let (barrier, id) = (&barrier, &id);
                scope.spawn(move || {
                    let mut s = open();
                    barrier.wait();
                    s.acme()
                        .challenge_finish(&format!("{id}-a{n}-h"), true, None, NOW)
                        .unwrap();
                });
            }
        });
        assert_eq!(
            store.acme().order(&id).unwrap().unwrap().status,
            OrderStatus::Ready,
            "{id}"
        );
    }
}

fn acme_challenge_status(store: &mut dyn Store, id: &str) -> ChallengeStatus {
    store.acme().challenge(id).unwrap().unwrap().0.status
}

/// A ready order `id` of bob's for one name.
fn ready_order(store: &mut dyn Store, id: &str) {
    let acme = store.acme();
    let (o, a) = order(id, "bob", &["a.acme.test"], NOW + 3600);
    acme.order_create(&o, &a).unwrap();
    assert!(acme.challenge_claim(&format!("{id}-a0-h"), NOW).unwrap());
    acme.challenge_finish(&format!("{id}-a0-h"), true, None, NOW).unwrap();
    assert_eq!(acme.order(id).unwrap().unwrap().status, OrderStatus::Ready);
}

fn finalization(open: Open<'_>, store: &mut dyn Store, pem: &str) {
    // Eight instances finalize one order at once: one of them issues.
    ready_order(store, "o-fin");
    let results = race(open, &|s| s.acme().order_claim_finalize("o-fin").unwrap());
    assert_eq!(winners(&results), 1, "{results:?}");
    assert!(!store.acme().order_claim_finalize("o-fin").unwrap());
    assert_eq!(
        store.acme().order("o-fin").unwrap().unwrap().status,
        OrderStatus::Processing
    );

    // order_finish records the certificate and makes the order valid, together.
    let serial = "7f01".parse().unwrap();
    assert!(store.acme().order_finish("o-fin", &record("7f01", pem), WRITE).unwrap());
    let done = store.acme().order("o-fin").unwrap().unwrap();
    assert_eq!(
        (done.status, done.certificate.as_ref()),
        (OrderStatus::Valid, Some(&serial))
    );
    assert_eq!(store.find(&serial).unwrap(), Some(record("7f01", pem)));
    assert_eq!(store.acme().order_by_certificate(&serial).unwrap(), Some(done));
    let err = store
        .acme()
        .order_finish("o-fin", &record("7f02", pem), WRITE)
        .unwrap_err();
    assert!(err.to_string().contains("not processing"), "{err}");
    assert_eq!(store.find(&"7f02".parse().unwrap()).unwrap(), None, "nothing recorded");

    // A taken serial: false, and nothing changed (the order stays processing, the existing
    // certificate is untouched); then another serial succeeds.
    ready_order(store, "o-taken");
    assert!(store.acme().order_claim_finalize("o-taken").unwrap());
    let mut other = record("7f01", pem);
    other.subject = "CN=other".into();
    assert!(!store.acme().order_finish("o-taken", &other, WRITE).unwrap());
    let o = store.acme().order("o-taken").unwrap().unwrap();
    assert_eq!((o.status, o.certificate), (OrderStatus::Processing, None));
    assert_eq!(store.find(&serial).unwrap().unwrap().subject, "CN=7f01");
    assert!(
        store
            .acme()
            .order_finish("o-taken", &record("7f03", pem), WRITE)
            .unwrap()
    );
    assert_eq!(
        store.acme().order("o-taken").unwrap().unwrap().status,
        OrderStatus::Valid
    );

    // order_fail: processing → invalid with the problem.
    ready_order(store, "o-refused");
    assert!(store.acme().order_claim_finalize("o-refused").unwrap());
    let problem = r#"{"type":"urn:ietf:params:acme:error:badCSR"}"#;
    store.acme().order_fail("o-refused", problem).unwrap();
    let o = store.acme().order("o-refused").unwrap().unwrap();
    assert_eq!((o.status, o.error.as_deref()), (OrderStatus::Invalid, Some(problem)));
    assert!(
        store
            .acme()
            .order_finish("o-refused", &record("7f04", pem), WRITE)
            .is_err()
    );
    assert_eq!(store.find(&"7f04".parse().unwrap()).unwrap(), None);
}

fn leases_and_crls(store: &mut dyn Store) {
    let ttl = Duration::from_secs(30);
    let acme = store.acme();
    let a = acme.lease_acquire("crl", "holder-a", ttl, NOW).unwrap().unwrap();
    assert_eq!(
        (a.name.as_str(), a.holder.as_str(), a.until),
        ("crl", "holder-a", NOW + 30)
    );
    let first = a.token;
    // Renewal before the end keeps the token.
    let renewed = acme.lease_acquire("crl", "holder-a", ttl, NOW + 20).unwrap().unwrap();
    assert_eq!((renewed.token, renewed.until), (first, NOW + 50));
    // Another holder is refused while it runs; other work has its own lease.
    assert_eq!(acme.lease_acquire("crl", "holder-b", ttl, NOW + 49).unwrap(), None);
    let expire_lease = acme.lease_acquire("expire", "holder-b", ttl, NOW).unwrap().unwrap();

    let crl = |number: u64| PublishedCrl {
        der: vec![0x30, 0x03, 0x02, 0x01, number as u8],
        number,
        this_update: NOW,
        next_update: NOW + 3600,
    };
    assert_eq!(acme.crl_published().unwrap(), None);
    assert!(acme.crl_publish(&crl(5), Some(&renewed)).unwrap());
    assert!(
        !acme.crl_publish(&crl(5), Some(&renewed)).unwrap(),
        "the same number again"
    );
    assert!(!acme.crl_publish(&crl(3), None).unwrap(), "a lower number");
    assert_eq!(acme.crl_published().unwrap(), Some(crl(5)));
    let wrong_name = Lease {
        name: "expire".into(),
        ..renewed.clone()
    };
    assert!(
        !acme.crl_publish(&crl(6), Some(&wrong_name)).unwrap(),
        "not a grant of that lease"
    );

    // After the end another holder gets it, with the next token; the old holder is fenced off.
    let b = acme.lease_acquire("crl", "holder-b", ttl, NOW + 50).unwrap().unwrap();
    assert_eq!((b.holder.as_str(), b.token, b.until), ("holder-b", first + 1, NOW + 80));
    assert_eq!(acme.lease_acquire("crl", "holder-a", ttl, NOW + 51).unwrap(), None);
    assert!(
        !acme.crl_publish(&crl(7), Some(&renewed)).unwrap(),
        "stale token refused"
    );
    assert_eq!(acme.crl_published().unwrap(), Some(crl(5)));
    let stale_expire = Lease {
        name: "expire".into(),
        holder: "holder-b".into(),
        token: expire_lease.token - 1,
        until: NOW + 30,
    };
    assert_eq!(acme.expire(NOW, NOW, &stale_expire).unwrap(), None);
    assert!(acme.crl_publish(&crl(7), Some(&b)).unwrap());
    assert_eq!(acme.crl_published().unwrap(), Some(crl(7)));
    assert!(
        acme.crl_publish(&crl(9), None).unwrap(),
        "without a lease: by number alone"
    );
    assert_eq!(acme.crl_published().unwrap().unwrap().number, 9);

    // A holder renewing after its own lease ran out gets a new token: its old one is stale.
    let b2 = acme.lease_acquire("crl", "holder-b", ttl, NOW + 80).unwrap().unwrap();
    assert_eq!(b2.token, b.token + 1);
    assert!(!acme.crl_publish(&crl(10), Some(&b)).unwrap());
    assert!(acme.crl_publish(&crl(10), Some(&b2)).unwrap());

    // The expire lease taken over: its old holder's clean-up is refused.
    let c = acme
        .lease_acquire("expire", "holder-c", ttl, NOW + 30)
        .unwrap()
        .unwrap();
    assert_eq!(c.token, expire_lease.token + 1);
    assert_eq!(acme.expire(NOW, NOW, &expire_lease).unwrap(), None);
    assert!(acme.expire(NOW, NOW, &c).unwrap().is_some());

    // Sub-second TTLs count as one second.
    let d = acme
        .lease_acquire("short", "holder-d", Duration::from_millis(200), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(d.until, NOW + 1);
}

fn clean_up(store: &mut dyn Store) {
    let acme = store.acme();
    let lease = acme
        .lease_acquire("expire", "cleaner", Duration::from_secs(60), NOW + 1_000_000)
        .unwrap()
        .unwrap();
    let later = NOW + 10_000;
    // Start from nothing left to do at `later`.
    acme.expire(later, 0, &lease).unwrap().unwrap();
    acme.nonce_put("n-live", later + 10).unwrap();
    acme.nonce_put("n-dead-1", later).unwrap();
    acme.nonce_put("n-dead-2", later - 5).unwrap();
    // A pending order past its expiry (its authorization expires too), a ready one past its
    // expiry, a live pending one, one stuck in processing.
    let (o, a) = order("o-exp-pending", "bob", &["a.acme.test"], later - 1);
    acme.order_create(&o, &a).unwrap();
    let (o, a) = order("o-exp-live", "bob", &["a.acme.test"], later + 100);
    acme.order_create(&o, &a).unwrap();
    let (mut o, mut a) = order("o-exp-ready", "bob", &["a.acme.test"], later - 1);
    o.status = OrderStatus::Ready;
    a[0].status = AuthorizationStatus::Valid;
    acme.order_create(&o, &a).unwrap();
    ready_order(store, "o-stuck");
    assert!(store.acme().order_claim_finalize("o-stuck").unwrap());
    let acme = store.acme();
    let clock = OffsetDateTime::now_utc().unix_timestamp();
    // Not stuck yet (claimed after `clock - 60`).
    let first = acme.expire(later, clock - 60, &lease).unwrap().unwrap();
    assert_eq!(
        first,
        Expired {
            nonces: 2,
            orders: 2,
            authorizations: 1
        }
    );
    assert!(acme.nonce_take("n-live", later).unwrap());
    assert!(!acme.nonce_take("n-dead-1", NOW).unwrap(), "deleted");
    for id in ["o-exp-pending", "o-exp-ready"] {
        assert_eq!(acme.order(id).unwrap().unwrap().status, OrderStatus::Invalid, "{id}");
    }
    assert_eq!(acme.order("o-exp-live").unwrap().unwrap().status, OrderStatus::Pending);
    assert_eq!(
        acme.authorization("o-exp-pending-a0").unwrap().unwrap().status,
        AuthorizationStatus::Expired
    );
    assert_eq!(
        acme.authorization("o-exp-ready-a0").unwrap().unwrap().status,
        AuthorizationStatus::Valid
    );
    assert_eq!(acme.order("o-stuck").unwrap().unwrap().status, OrderStatus::Processing);
    // Stuck: processing since before `stuck_before`.
    let second = acme.expire(later, clock + 5, &lease).unwrap().unwrap();
    assert_eq!(
        second,
        Expired {
            nonces: 0,
            orders: 1,
            authorizations: 0
        }
    );
    let stuck = acme.order("o-stuck").unwrap().unwrap();
    assert_eq!(stuck.status, OrderStatus::Invalid);
    assert!(stuck.error.unwrap().contains("serverInternal"));
    assert_eq!(acme.expire(later, clock + 5, &lease).unwrap(), Some(Expired::default()));
}

#[test]
fn the_acme_suite_passes_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let issuer = "aa".repeat(32);
    store::create(&dir, &issuer, &Location::Sqlite).unwrap();
    acme_suite(&|| store::open(&dir, &issuer, None).unwrap());
}

#[test]
fn the_acme_suite_passes_on_postgresql() {
    let pg = Postgres::start();
    let location = Location::Postgres(pg.url("ca"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let issuer = "aa".repeat(32);
    store::create(&dir, &issuer, &location).unwrap();
    acme_suite(&|| store::open(&dir, &issuer, Some(&location)).unwrap());

    // Another CA in the same database sees none of it, and has its own leases.
    let other_dir = tempfile::tempdir().unwrap();
    let other = "bb".repeat(32);
    store::create(other_dir.path(), &other, &location).unwrap();
    let mut store = store::open(other_dir.path(), &other, Some(&location)).unwrap();
    let acme = store.acme();
    assert_eq!(acme.account("alice").unwrap(), None);
    assert_eq!(acme.order("o1").unwrap(), None);
    assert_eq!(acme.crl_published().unwrap(), None);
    let lease = acme
        .lease_acquire("crl", "someone", Duration::from_secs(5), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(lease.token, 1);
}

// ---------------------------------------------------------------------------------------------
// Periodic work under leases

/// A new root CA in `dir` with its state in `location`.
fn new_ca(dir: &Path, location: &Location) -> CertificateAuthority {
    let mut request = InitRequest::new("Periodic Test CA");
    request.store = location.clone();
    CertificateAuthority::init(dir, &request, None, OffsetDateTime::now_utc()).unwrap();
    CertificateAuthority::open_with_store(dir, None, Some(location)).unwrap()
}

fn open_store(dir: &Path, location: &Location) -> Box<dyn Store> {
    store::open_dir(dir, Some(location)).unwrap()
}

/// The published CRL, parsed, after checking with OpenSSL that the CA in `dir` signed it.
fn published(store: &mut dyn Store, dir: &Path) -> (PublishedCrl, CrlInfo) {
    let crl = store.acme().crl_published().unwrap().expect("a published CRL");
    let file = dir.join(format!("published-{}.der", crl.number));
    std::fs::write(&file, &crl.der).unwrap();
    let ca_pem = dir.join("ca.pem");
    let out = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-in"])
        .arg(&file)
        .arg("-CAfile")
        .arg(&ca_pem)
        .output()
        .expect("openssl is installed (`make deps` installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.contains("verify OK"), "{said}");
    let info = CrlInfo::from_der(&crl.der).unwrap();
    assert_eq!(info.crl_number.as_deref(), Some(crl.number.to_string().as_str()));
    assert_eq!(info.this_update.unix_timestamp(), crl.this_update);
    assert_eq!(info.next_update.map(|t| t.unix_timestamp()), Some(crl.next_update));
    (crl, info)
}

#[test]
fn a_round_publishes_a_crl_when_one_is_due_and_cleans_up_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = new_ca(&dir, &Location::Sqlite);
    let mut store = store::open_dir(&dir, None).unwrap();
    let settings = PeriodicSettings {
        lease_ttl: Duration::from_secs(3600),
        crl_lifetime: Duration::from_secs(3600),
        ..PeriodicSettings::default()
    };
    let t0 = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();

    // None published: the first round signs and publishes CRL 1; both leases are this runner's.
    let first = periodic::round(&ca, store.as_mut(), "runner-a", &settings, t0).unwrap();
    assert_eq!(first.published, Some(1));
    assert_eq!(
        first.crl_lease.as_ref().map(|l| (l.holder.as_str(), l.token)),
        Some(("runner-a", 1))
    );
    assert_eq!(first.expire_lease.as_ref().map(|l| l.token), Some(1));
    assert_eq!(first.expired, Some(Default::default()));
    let (crl, info) = published(store.as_mut(), &dir);
    assert_eq!(
        (crl.number, crl.this_update, crl.next_update),
        (1, t0.unix_timestamp(), t0.unix_timestamp() + 3600)
    );
    assert!(info.revoked.is_empty());

    // Not due: nothing signed, no CRL number used.
    let again = periodic::round(
        &ca,
        store.as_mut(),
        "runner-a",
        &settings,
        t0 + time::Duration::seconds(60),
    )
    .unwrap();
    assert_eq!(again.published, None);
    assert_eq!(again.crl_lease.map(|l| l.token), Some(1), "renewed, same token");
    assert_eq!(store.crl_number().unwrap(), 1);

    // A revocation hands out a newer number (`ca` first brings crl.pem, which `ca serve` does
    // not write, up to the store: one more number): the next round publishes a CRL that lists
    // it.
    let issued = ca
        .issue(&IssueRequest::new(Profile::Server, "svc.periodic.test"), t0)
        .unwrap();
    ca.revoke(
        &issued.info.serial,
        RevocationReason::KeyCompromise,
        t0,
        Duration::from_secs(3600),
    )
    .unwrap();
    let revoked_number = store.crl_number().unwrap();
    assert!(revoked_number > 1, "{revoked_number}");
    let after = periodic::round(
        &ca,
        store.as_mut(),
        "runner-a",
        &settings,
        t0 + time::Duration::seconds(61),
    )
    .unwrap();
    assert_eq!(after.published, Some(revoked_number + 1));
    let (_, info) = published(store.as_mut(), &dir);
    assert_eq!(
        info.revoked.iter().map(|r| r.serial.to_string()).collect::<Vec<_>>(),
        [issued.info.serial.to_string()]
    );

    // Past half its lifetime: signed again.
    let late = t0 + time::Duration::seconds(61 + 1800);
    let renewed = periodic::round(&ca, store.as_mut(), "runner-a", &settings, late).unwrap();
    assert_eq!(renewed.published, Some(revoked_number + 2));
    assert_eq!(published(store.as_mut(), &dir).0.this_update, late.unix_timestamp());

    // Another runner gets neither lease while they run, and does nothing.
    let other = periodic::round(&ca, store.as_mut(), "runner-b", &settings, late).unwrap();
    assert_eq!(other, periodic::Round::default());

    // The clean-up ran under its lease: an expired nonce is gone.
    store.acme().nonce_put("old", late.unix_timestamp() - 1).unwrap();
    store.acme().nonce_put("new", late.unix_timestamp() + 100).unwrap();
    let cleaned = periodic::round(&ca, store.as_mut(), "runner-a", &settings, late).unwrap();
    assert_eq!(cleaned.expired.map(|e| e.nonces), Some(1));
    assert!(store.acme().nonce_take("new", late.unix_timestamp()).unwrap());
}

/// The `crl` lease as the database has it: (holder, token).
fn crl_lease(pg: &Postgres) -> Option<(String, i64)> {
    pg.client("ca")
        .query_opt("SELECT holder, token FROM acme_leases WHERE name = 'crl'", &[])
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

/// Polls `check` every 50 ms for up to `limit`; true once it holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn a_second_runner_takes_over_with_the_next_token_when_the_first_stops_on_postgresql() {
    let pg = Postgres::start();
    let location = Location::Postgres(pg.url("ca"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = Arc::new(new_ca(&dir, &location));
    let ttl = Duration::from_secs(3);
    let settings = PeriodicSettings {
        period: Duration::from_millis(100),
        lease_ttl: ttl,
        crl_lifetime: Duration::from_secs(3600),
        stuck_after: Duration::from_secs(60),
    };
    let mut reader = open_store(&dir, &location);
    // The runners run on a runtime; this thread (blocking PostgreSQL calls) watches them.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Runner A starts alone: it takes the lease and publishes CRL 1.
    let a = runtime.spawn(periodic::run(
        Arc::clone(&ca),
        open_store(&dir, &location),
        "runner-a".into(),
        settings.clone(),
        std::future::pending(),
    ));
    assert!(eventually(Duration::from_secs(10), || reader
        .acme()
        .crl_published()
        .unwrap()
        .is_some()));
    let (a_holder, a_token) = crl_lease(&pg).unwrap();
    assert_eq!(a_holder, "runner-a");
    assert_eq!(published(reader.as_mut(), &dir).0.number, 1);

    // Runner B starts: while A renews its lease, B waits.
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let b = runtime.spawn(periodic::run(
        Arc::clone(&ca),
        open_store(&dir, &location),
        "runner-b".into(),
        settings.clone(),
        async move {
            let _ = stopped_b.await;
        },
    ));
    std::thread::sleep(ttl + Duration::from_millis(500));
    assert_eq!(crl_lease(&pg), Some(("runner-a".to_string(), a_token)), "A kept it");

    // A stops (aborted, as a killed instance would): B takes over within the lease's time (whole
    // seconds, so up to one more) and a period, with the next token.
    a.abort();
    assert!(runtime.block_on(a).unwrap_err().is_cancelled());
    let stopped = Instant::now();
    assert!(
        eventually(ttl + Duration::from_secs(8), || crl_lease(&pg)
            .is_some_and(|(holder, _)| holder == "runner-b")),
        "B never took the lease: {:?}",
        crl_lease(&pg)
    );
    // Not before A's last lease ran out (granted for whole seconds from a time in whole
    // seconds: at least `ttl` − 1 s after its last renewal), and soon after.
    let took = stopped.elapsed();
    assert!(took >= ttl - Duration::from_millis(1500), "{took:?}");
    assert!(took <= ttl + Duration::from_secs(4), "{took:?}");
    assert_eq!(crl_lease(&pg), Some(("runner-b".to_string(), a_token + 1)));

    // B does the work now: a revocation is in the next CRL, which B publishes (every CRL number
    // handed out after the revocation lists it).
    let issued = ca
        .issue(
            &IssueRequest::new(Profile::Server, "svc.periodic.test"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    ca.revoke(
        &issued.info.serial,
        RevocationReason::Superseded,
        OffsetDateTime::now_utc(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let revoked_by = reader.crl_number().unwrap();
    // (Bounded generously: under a loaded CI machine a round can wait seconds for a thread.)
    let published_after = eventually(Duration::from_secs(60), || {
        reader
            .acme()
            .crl_published()
            .unwrap()
            .is_some_and(|crl| crl.number > revoked_by)
    });
    assert!(
        published_after,
        "B published no CRL numbered above {revoked_by} in 60 s: published {:?}, store number {:?}, lease {:?}",
        reader.acme().crl_published().unwrap().map(|crl| crl.number),
        reader.crl_number(),
        crl_lease(&pg)
    );
    let (_, info) = published(reader.as_mut(), &dir);
    assert!(info.revoked.iter().any(|r| r.serial == issued.info.serial));
    assert_eq!(crl_lease(&pg).map(|(_, token)| token), Some(a_token + 1));

    // B stops when told to.
    stop_b.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), b).await })
        .unwrap()
        .unwrap();
}

#[test]
fn a_runner_whose_lease_ran_out_while_it_stalled_cannot_publish_on_postgresql() {
    let pg = Postgres::start();
    let location = Location::Postgres(pg.url("ca"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = new_ca(&dir, &location);
    let settings = PeriodicSettings {
        lease_ttl: Duration::from_secs(10),
        crl_lifetime: Duration::from_secs(3600),
        ..PeriodicSettings::default()
    };
    let mut a = open_store(&dir, &location);
    let mut b = open_store(&dir, &location);
    let t0 = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();

    // A takes the lease and signs CRL 1, then stalls past its lease (before publishing).
    let (lease, prepared) = periodic::prepare_crl(&ca, a.as_mut(), "runner-a", &settings, t0).unwrap();
    let prepared = prepared.expect("a CRL is due");
    assert_eq!((lease.unwrap().token, prepared.crl.number), (1, 1));
    let (expire_lease, _) = periodic::expire(a.as_mut(), "runner-a", &settings, t0).unwrap();
    let expire_lease = expire_lease.unwrap();

    // Meanwhile B takes both leases over with the next tokens.
    let later = t0.unix_timestamp() + 11;
    let b_lease = b
        .acme()
        .lease_acquire(periodic::CRL_LEASE, "runner-b", settings.lease_ttl, later)
        .unwrap()
        .unwrap();
    assert_eq!(b_lease.token, 2);
    let b_expire = b
        .acme()
        .lease_acquire(periodic::EXPIRE_LEASE, "runner-b", settings.lease_ttl, later)
        .unwrap()
        .unwrap();

    // A wakes up: its CRL is refused although no CRL is published yet (fenced by the token, not
    // by the number), and so is its clean-up.
    assert!(!periodic::publish_crl(a.as_mut(), &prepared).unwrap());
    assert_eq!(a.acme().crl_published().unwrap(), None);
    assert_eq!(a.acme().expire(later, later, &expire_lease).unwrap(), None);
    // A's next round finds the leases taken and does nothing.
    let t1 = OffsetDateTime::from_unix_timestamp(later).unwrap();
    assert_eq!(
        periodic::round(&ca, a.as_mut(), "runner-a", &settings, t1).unwrap(),
        periodic::Round::default()
    );

    // B's round publishes the next CRL under token 2 and cleans up under its own lease.
    let round = periodic::round(&ca, b.as_mut(), "runner-b", &settings, t1).unwrap();
    assert_eq!(round.crl_lease.map(|l| l.token), Some(2));
    assert_eq!(round.published, Some(2));
    assert_eq!(round.expire_lease.map(|l| l.token), Some(b_expire.token));
    assert!(round.expired.is_some());
    assert_eq!(published(b.as_mut(), &dir).0.number, 2);
    // A's stale CRL stays refused after B's.
    assert!(!periodic::publish_crl(a.as_mut(), &prepared).unwrap());
}

/// Every SQL statement of the PostgreSQL implementation (the string literals of
/// `postgres_acme.rs` that start with SELECT, INSERT, UPDATE or DELETE, column lists filled in).
fn postgres_statements() -> Vec<String> {
    let source = include_str!("../src/ca/store/postgres_acme.rs");
    let columns: Vec<(String, String)> = [
        "ACCOUNT_COLUMNS",
        "ORDER_COLUMNS",
        "AUTHORIZATION_COLUMNS",
        "CHALLENGE_COLUMNS",
    ]
    .iter()
    .map(|name| {
        let start = format!("const {name}: &str = \"");
        let at = source.find(&start).unwrap() + start.len();
        let end = source[at..].find("\";").unwrap();
        let value = source[at..at + end]
            .split("\\\n")
            .map(str::trim_start)
            .collect::<String>();
        (format!("{{{name}}}"), value)
    })
    .collect();
    let code = source.split("#[cfg(test)]").next().unwrap();
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let end = after.find('"').unwrap();
        let mut text = after[..end].split("\\\n").map(str::trim_start).collect::<String>();
        rest = &after[end + 1..];
        for (placeholder, value) in &columns {
            text = text.replace(placeholder, value);
        }
        if ["SELECT ", "INSERT ", "UPDATE ", "DELETE "]
            .iter()
            .any(|k| text.starts_with(k))
        {
            found.push(text);
        }
    }
    found
}

/// Cost per request must not grow with the rows: with sequential scans priced out, PostgreSQL
/// finds every row the ACME statements touch through an index (a statement no index serves
/// would still show a `Seq Scan`). Generic plans, as for any parameter values.
#[test]
fn no_postgresql_statement_needs_a_sequential_scan() {
    let pg = Postgres::start();
    let location = Location::Postgres(pg.url("ca"));
    let tmp = tempfile::tempdir().unwrap();
    store::create(tmp.path(), &"aa".repeat(32), &location).unwrap();
    let statements = postgres_statements();
    assert!(statements.len() >= 30, "{statements:#?}");
    let mut client = pg.client("ca");
    // Rows enough for the planner's statistics to be those of a store in use: 100 accounts with
    // 50 orders each in every status, their authorizations and challenges, 5000 nonces.
    let issuer = "aa".repeat(32);
    client
        .batch_execute(&format!(
            "INSERT INTO acme_accounts SELECT '{issuer}', 'acct' || a, 'thumb' || a, '{{}}', '[]', 'valid', 0 \
               FROM generate_series(1, 100) a; \
             INSERT INTO acme_orders SELECT '{issuer}', 'ord' || o, 'acct' || (o % 100 + 1), \
               (ARRAY['pending', 'ready', 'processing', 'valid', 'invalid'])[o % 5 + 1], '[]', '[]', o, NULL, NULL, \
               NULL, CASE WHEN o % 5 = 3 THEN to_hex(o) END, NULL, 0, CASE WHEN o % 5 = 2 THEN o END \
               FROM generate_series(1, 5000) o; \
             INSERT INTO acme_authorizations SELECT '{issuer}', 'authz' || o, 'ord' || o, 'acct' || (o % 100 + 1), \
               'dns', 'a.test', false, (ARRAY['pending', 'valid', 'invalid'])[o % 3 + 1], o \
               FROM generate_series(1, 5000) o; \
             INSERT INTO acme_challenges SELECT '{issuer}', 'chall' || c, 'authz' || (c / 2 + 1), c % 2, 'http-01', \
               't', 'pending', NULL, NULL FROM generate_series(0, 9999) c; \
             INSERT INTO acme_nonces SELECT '{issuer}', 'nonce' || n, n FROM generate_series(1, 5000) n; \
             ANALYZE"
        ))
        .unwrap();
    client
        .batch_execute("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
        .unwrap();
    let mut indexed = 0;
    for (n, sql) in statements.iter().enumerate() {
        let params = (1..=20).rev().find(|i| sql.contains(&format!("${i}"))).unwrap_or(0);
        client.batch_execute(&format!("PREPARE s{n} AS {sql}")).unwrap();
        let nulls = vec!["NULL"; params].join(", ");
        let execute = if params == 0 {
            format!("EXPLAIN EXECUTE s{n}")
        } else {
            format!("EXPLAIN EXECUTE s{n}({nulls})")
        };
        let plan: Vec<String> = client
            .query(&execute, &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let text = plan.join("\n");
        assert!(!text.contains("Seq Scan"), "{sql}\n{text}");
        // An index searched by the issuer alone would read every row of the CA (except where
        // the issuer is the key).
        let mut on = "";
        for line in &plan {
            if let Some((_, table)) = line.split_once("Scan").and_then(|(_, rest)| rest.split_once(" on ")) {
                on = table.split_whitespace().next().unwrap_or("");
            }
            if line.trim() == "Index Cond: (issuer = $1)" {
                assert_eq!(on, "published_crls", "{sql}\n{text}");
            }
        }
        indexed += usize::from(text.contains("Index"));
    }
    assert!(indexed >= 25, "{indexed}");
}

/// The holder and token of every lease, from the SQLite store in `dir`.
fn sqlite_leases(dir: &Path) -> Vec<(String, String, i64)> {
    let db = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut statement = db
        .prepare("SELECT name, holder, token FROM acme_leases ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_runner_stopped_cleanly_releases_its_leases_and_the_next_takes_over_at_once_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = Arc::new(new_ca(&dir, &Location::Sqlite));
    // A lease far longer than the test: only the release lets B in.
    let settings = PeriodicSettings {
        period: Duration::from_millis(100),
        lease_ttl: Duration::from_secs(600),
        crl_lifetime: Duration::from_secs(3600),
        stuck_after: Duration::from_secs(60),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let held_by = |holder: &str| {
        let leases = sqlite_leases(&dir);
        leases.len() == 2 && leases.iter().all(|(_, h, _)| h == holder)
    };
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let a = runtime.spawn(periodic::run(
        Arc::clone(&ca),
        store::open_dir(&dir, None).unwrap(),
        "runner-a".into(),
        settings.clone(),
        async move {
            let _ = stopped_a.await;
        },
    ));
    assert!(eventually(Duration::from_secs(10), || held_by("runner-a")));
    let tokens: Vec<i64> = sqlite_leases(&dir).into_iter().map(|(_, _, t)| t).collect();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let b = runtime.spawn(periodic::run(
        Arc::clone(&ca),
        store::open_dir(&dir, None).unwrap(),
        "runner-b".into(),
        settings.clone(),
        async move {
            let _ = stopped_b.await;
        },
    ));
    std::thread::sleep(Duration::from_millis(600));
    assert!(held_by("runner-a"), "A kept them: {:?}", sqlite_leases(&dir));

    // A stops cleanly: B holds both leases within a few of its rounds, with the next tokens.
    stop_a.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), a).await })
        .unwrap()
        .unwrap();
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || held_by("runner-b")),
        "{:?}",
        sqlite_leases(&dir)
    );
    assert!(stopped.elapsed() < Duration::from_secs(10));
    let next: Vec<i64> = sqlite_leases(&dir).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(next, tokens.iter().map(|t| t + 1).collect::<Vec<_>>());

    stop_b.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), b).await })
        .unwrap()
        .unwrap();
    // B released them too: good until 0.
    let db = rusqlite::Connection::open(dir.join("ca.db")).unwrap();
    let released: i64 = db
        .query_row("SELECT count(*) FROM acme_leases WHERE good_until = 0", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(released, 2);
}

/// `ca --dir DIR ARGS…` in a clean environment; its output.
fn run_ca(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ca"));
    for var in ["TESSERA_PASSPHRASE", "TESSERA_CA_DIR", "TESSERA_DB", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `ca ARGS…`, which must succeed without a warning; its stdout.
fn ca_quietly(dir: &Path, args: &[&str]) -> String {
    let out = run_ca(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ca {args:?}: {err}");
    assert!(!err.contains("warning"), "ca {args:?}: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CRL number of `DIR/crl.pem` and its DER.
fn crl_file(dir: &Path) -> (u64, Vec<u8>) {
    let der = tessera::pki::pem::load_crls(&dir.join("crl.pem"))
        .unwrap()
        .remove(0)
        .to_vec();
    let number = CrlInfo::from_der(&der).unwrap().crl_number.unwrap().parse().unwrap();
    (number, der)
}

#[test]
fn a_crl_published_by_serve_becomes_crl_pem_without_a_new_number_or_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = new_ca(&dir, &Location::Sqlite);
    let mut store = open_store(&dir, &Location::Sqlite);
    let settings = PeriodicSettings {
        lease_ttl: Duration::from_secs(3600),
        crl_lifetime: Duration::from_secs(3600),
        ..PeriodicSettings::default()
    };
    let t0 = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    for name in ["a.test", "b.test"] {
        ca_quietly(&dir, &["issue", "--profile", "server", "--name", name]);
    }
    let listed: serde_json::Value = serde_json::from_str(&ca_quietly(&dir, &["list", "--json"])).unwrap();
    let serial_of = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"].as_str().is_some_and(|s| s.contains(name)))
            .unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (serial_of("a.test"), serial_of("b.test"));
    ca_quietly(&dir, &["revoke", &a]);
    let (revoked_number, _) = crl_file(&dir);

    // ca serve's round signs the next CRL into the store only: crl.pem is now behind.
    let first = periodic::round(&ca, store.as_mut(), "serve", &settings, t0).unwrap();
    assert_eq!(first.published, Some(revoked_number + 1));
    assert_eq!(crl_file(&dir).0, revoked_number);
    let (published, _) = published(store.as_mut(), &dir);

    // `ca list` says nothing; a command that signs copies the published CRL as it is.
    ca_quietly(&dir, &["list"]);
    ca_quietly(&dir, &["issue", "--profile", "server", "--name", "c.test"]);
    assert_eq!(crl_file(&dir), (published.number, published.der.clone()));
    assert_eq!(store.crl_number().unwrap(), published.number, "no CRL number used");

    // crl.pem missing: the same.
    let later = t0 + Duration::from_secs(1800);
    std::fs::remove_file(dir.join("crl.pem")).unwrap();
    let again = periodic::round(&ca, store.as_mut(), "serve", &settings, later).unwrap();
    assert_eq!(again.published, Some(published.number + 1));
    ca_quietly(&dir, &["list"]);
    ca_quietly(&dir, &["revoke", &b]);
    // The revocation itself hands out the next number after the published one.
    assert_eq!(crl_file(&dir).0, published.number + 2);
    assert_eq!(store.crl_number().unwrap(), published.number + 2);
    let info = CrlInfo::from_der(&crl_file(&dir).1).unwrap();
    assert_eq!(info.revoked.len(), 2);

    // A store that moved on since the round (a revocation not yet published) is no copy source:
    // crl.pem is re-signed under a new number, as before.
    let third = periodic::round(&ca, store.as_mut(), "serve", &settings, later).unwrap();
    assert_eq!(third.published, Some(published.number + 3));
    store.advance_crl_number(WRITE).unwrap();
    let out = run_ca(&dir, &["issue", "--profile", "server", "--name", "d.test"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(crl_file(&dir).0, published.number + 5);
}
