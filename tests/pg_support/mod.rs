//! A private PostgreSQL 15 cluster for one test, never the system one: `initdb` as the
//! `postgres` user in a fresh temporary directory, `pg_ctl start` on a free loopback port, and
//! stopped (by `pg_ctl stop`, then by its PID) when the guard is dropped, also when the test
//! fails. A test that needs PostgreSQL fails, never skips, when it cannot be started.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's PostgreSQL 15 puts its programs (`apt-get install postgresql`).
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running private cluster; stopped on drop.
pub struct Postgres {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    port: u16,
    pid: Option<i32>,
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(Path::new(BIN).join(program));
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Postgres {
    /// initdb + pg_ctl start + createdb `ca`. Panics (the test fails) with the reason when
    /// PostgreSQL is not installed or does not start.
    pub fn start() -> Self {
        assert!(
            Path::new(BIN).join("initdb").exists(),
            "PostgreSQL 15 is not installed ({BIN}/initdb missing): `make deps` installs it"
        );
        let tmp = tempfile::Builder::new().prefix("tessera-pg-").tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let status = Command::new("chown").arg("postgres:").arg(&dir).status().unwrap();
        assert!(status.success(), "cannot give {} to the postgres user", dir.display());
        let data = dir.join("data");
        let out = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let out = as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .arg("-w")
                .arg("-o")
                .arg(format!(
                    "-k {} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=60",
                    dir.display()
                ))
                .arg("start")
                .output()
                .unwrap();
            if out.status.success() {
                let mut pg = Self {
                    dir: dir.clone(),
                    port,
                    pid: None,
                    _tmp: tmp,
                };
                pg.pid = std::fs::read_to_string(data.join("postmaster.pid"))
                    .ok()
                    .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
                pg.create_db("ca");
                return pg;
            }
            last_error = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The same database through the cluster's Unix socket:
    /// `postgres://postgres@%2Fsocket%2Fdir:PORT/DB`.
    pub fn socket_url(&self, db: &str) -> String {
        let dir = self.dir.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{dir}:{}/{db}", self.port)
    }

    /// Creates database `name`.
    pub fn create_db(&self, name: &str) {
        let out = as_postgres("createdb")
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client connected to database `db`.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).unwrap()
    }

    /// `SELECT pg_terminate_backend(pid)` for every connection whose `application_name` is
    /// `application` (the CA's is `tessera-ca`), through `psql` (usable inside a Tokio
    /// runtime); how many were terminated.
    pub fn terminate_backends(&self, application: &str) -> i64 {
        let out = as_postgres("psql")
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{application}'"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// `pg_ctl -m fast stop`: the server ends every connection and stops; the data stays, and
    /// [`Postgres::start_again`] starts it on the same port.
    pub fn stop_fast(&self) {
        let out = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the cluster stopped by [`Postgres::stop_fast`] again, on the same port.
    pub fn start_again(&mut self) {
        let data = self.dir.join("data");
        let out = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-k {} -c listen_addresses=127.0.0.1 -p {} -c fsync=off -c max_connections=60",
                self.dir.display(),
                self.port
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
        self.pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let stopped = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped && let Some(pid) = self.pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}
