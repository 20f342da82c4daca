//! A database of its own per test on the PostgreSQL server named by
//! `PHOTOCLAIM_TEST_DATABASE_URL` (`.ci/run` starts one with
//! `.ci/postgres.sh`; see docs/development.md). Without that variable the
//! PostgreSQL tests are skipped with a note, unless
//! `PHOTOCLAIM_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure.

#![allow(dead_code)] // each test binary uses part of it

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that names the test server (a URL of a database on it
/// that the tests may connect to, to create and drop their own).
pub const URL_VAR: &str = "PHOTOCLAIM_TEST_DATABASE_URL";

/// A database made for one test, dropped with it.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// The URL of the test's database.
    pub url: String,
}

/// Runs `work` with a synchronous client on a thread of its own (the
/// synchronous client must not run on a thread that drives async tasks).
fn admin<R: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
) -> R {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test server {url}: {e}"));
        work(&mut client)
    })
    .join()
    .expect("test database thread")
}

/// The test server's URL, or `None` (the test should return) when there
/// is none and none is required.
pub fn server() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PHOTOCLAIM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("PHOTOCLAIM_REQUIRE_POSTGRES=1 but {URL_VAR} is not set");
            }
            eprintln!("skipped: no PostgreSQL ({URL_VAR} is not set)");
            None
        }
    }
}

/// A new empty database on the test server, or `None` (see [`server`]).
pub fn fresh_database() -> Option<TestDatabase> {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let admin_url = server()?;
    let name = format!(
        "photoclaim_test_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let create = format!("CREATE DATABASE {name} TEMPLATE template0");
    admin(&admin_url, move |client| {
        client
            .batch_execute(&create)
            .expect("create a test database")
    });
    let url = with_database(&admin_url, &name);
    Some(TestDatabase {
        admin: admin_url,
        name,
        url,
    })
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestDatabase {
    /// Runs `sql` on the test's database (a synchronous client).
    pub fn execute(&self, sql: &str) {
        let sql = sql.to_owned();
        admin(&self.url, move |client| {
            client
                .batch_execute(&sql)
                .expect("run SQL on the test database")
        });
    }

    /// The first column of the first row of `sql`, as text.
    pub fn query_text(&self, sql: &str) -> Option<String> {
        let sql = sql.to_owned();
        admin(&self.url, move |client| {
            client
                .query_opt(&sql, &[])
                .expect("query the test database")
                .map(|row| row.get::<_, String>(0))
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let url = self.admin.clone();
        // Best effort: a left-over database is dropped with the cluster.
        let _ = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = client.batch_execute(&drop);
            }
        })
        .join();
    }
}
