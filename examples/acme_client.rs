//! A minimal ACME client (RFC 8555) on instant-acme, for `make demo` on machines without lego:
//! it obtains a certificate for one DNS name over http-01, answering the challenge itself on
//! 127.0.0.1:PORT, and writes the chain and a new P-256 key.
//!
//! ```text
//! acme_client DIRECTORY_URL ROOT_PEM NAME HTTP_PORT OUT_PREFIX
//! ```
//!
//! ROOT_PEM is the root that the server's HTTPS certificate chains to. Writes OUT_PREFIX.pem
//! (the chain, leaf first) and OUT_PREFIX.key (PKCS#8 PEM, 0600, never overwritten). Exit
//! codes: 0 issued, 1 the server said no, 2 usage, 3 could not run.
#![allow(clippy::disallowed_macros)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tokio::net::TcpListener;

/// The answers the http-01 responder gives: token → key authorization.
type Answers = Arc<Mutex<HashMap<String, String>>>;

/// Serves `/.well-known/acme-challenge/TOKEN` from `answers` on `listener`, until dropped.
fn respond(listener: TcpListener, answers: Answers) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = request
                        .uri()
                        .path()
                        .strip_prefix("/.well-known/acme-challenge/")
                        .and_then(|token| answers.lock().ok()?.get(token).cloned());
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(answer.clone().unwrap_or_default())));
                        if answer.is_none() {
                            *response.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                )
                .await;
            });
        }
    })
}

/// Why the client stopped: the server refused (exit 1) or something could not run (exit 3).
enum Failure {
    Refused(String),
    CouldNotRun(String),
}

fn could_not_run(what: &str) -> impl Fn(instant_acme::Error) -> Failure + '_ {
    move |e| match e {
        instant_acme::Error::Api(problem) => Failure::Refused(format!("{what}: {problem}")),
        other => Failure::CouldNotRun(format!("{what}: {other}")),
    }
}

async fn obtain(directory: &str, root: &str, name: &str, port: u16, out: &str) -> Result<(), Failure> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Failure::CouldNotRun(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let answers: Answers = Arc::default();
    let _responder = respond(listener, answers.clone());

    let (account, _credentials) = Account::builder_with_root(root)
        .map_err(could_not_run("reading the root"))?
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .map_err(could_not_run("newAccount"))?;
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(could_not_run("newOrder"))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(could_not_run("authorization"))?;
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| Failure::Refused("the server offers no http-01 challenge".into()))?;
        if let Ok(mut map) = answers.lock() {
            map.insert(
                challenge.token.clone(),
                challenge.key_authorization().as_str().to_string(),
            );
        }
        challenge.set_ready().await.map_err(could_not_run("challenge"))?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .timeout(Duration::from_secs(60));
    let status = order
        .poll_ready(&retries)
        .await
        .map_err(could_not_run("waiting for validation"))?;
    if status != OrderStatus::Ready {
        return Err(Failure::Refused(format!(
            "the order is {status:?}, not ready: {:?}",
            order.state().error
        )));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| Failure::CouldNotRun(format!("generating a key: {e}")))?;
    // An empty subject (rcgen's default common name is not one of the order's names).
    let csr = rcgen::CertificateParams::new(vec![name.to_string()])
        .and_then(|mut params| {
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.serialize_request(&key)
        })
        .map_err(|e| Failure::CouldNotRun(format!("making the CSR: {e}")))?;
    order.finalize_csr(csr.der()).await.map_err(could_not_run("finalize"))?;
    let chain = order
        .poll_certificate(&retries)
        .await
        .map_err(could_not_run("downloading the certificate"))?;

    let write = |path: String, bytes: &[u8], mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(|e| Failure::CouldNotRun(format!("writing {path}: {e}")))
    };
    write(format!("{out}.key"), key.serialize_pem().as_bytes(), 0o600)?;
    write(format!("{out}.pem"), chain.as_bytes(), 0o644)?;
    println!("acme_client: certificate for {name} in {out}.pem, key in {out}.key");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory, root, name, port, out] = args.as_slice() else {
        eprintln!("usage: acme_client DIRECTORY_URL ROOT_PEM NAME HTTP_PORT OUT_PREFIX");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("acme_client: error: {port:?} is not a port");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("acme_client: error: {e}");
            return ExitCode::from(3);
        }
    };
    let limit = Duration::from_secs(120);
    let outcome =
        runtime.block_on(async { tokio::time::timeout(limit, obtain(directory, root, name, port, out)).await });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(Failure::Refused(why))) => {
            eprintln!("acme_client: error: {why}");
            ExitCode::from(1)
        }
        Ok(Err(Failure::CouldNotRun(why))) => {
            eprintln!("acme_client: error: {why}");
            ExitCode::from(3)
        }
        Err(_) => {
            eprintln!("acme_client: error: no certificate within {limit:?}");
            ExitCode::from(3)
        }
    }
}
