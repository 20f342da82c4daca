//! Operations on a PostgreSQL database with the real binary: `db
//! migrate` (alone, repeated, and by several processes at once), an
//! archive moved from sled to PostgreSQL and back through backup/restore
//! with `check` clean and identical exports on every side, a restore into
//! a database that is not empty refused, and `check --database-url`
//! finding a tampered record. Skipped without a test server (see
//! `common/pg.rs`).

mod common;

use std::path::Path;

use common::pg::fresh_database;
use common::{attach, cli, cli_exit, rate_false, register, sample_claim, sample_response, Process};
use photoclaim::pb;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn migrate_applies_each_version_once_even_from_several_processes_at_once() {
    let Some(db) = fresh_database() else {
        return;
    };
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || cli(&["db", "migrate", "--database-url", &url]))
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        let (ok, text) = run.join().unwrap();
        assert!(ok, "{text}");
        applied += usize::from(text.contains("applied migration"));
    }
    assert_eq!(applied, 1, "exactly one process applied the migrations");
    let (ok, text) = cli(&["db", "migrate", "--database-url", &db.url]);
    assert!(ok && text.contains("up to date"), "{text}");
    assert_eq!(
        db.query_text("SELECT string_agg(version::text, ',' ORDER BY version) FROM photoclaim.schema_migrations"),
        Some("1,2".into())
    );
    // A password never shows.
    let (_, text) = cli(&[
        "db",
        "migrate",
        "--database-url",
        "postgres://desk:s3cret@127.0.0.1:1/none?connect_timeout=2",
    ]);
    assert!(!text.contains("s3cret"), "{text}");
}

/// Claims with images, responses, verdicts and a key, on the server at `addr`.
async fn fill(addr: &str) {
    let mut client = common::connect(addr).await;
    for n in 0..12u64 {
        let mut claim = sample_claim(&format!("archive claim {n}"));
        claim.image.as_mut().unwrap().sha256 = common::fake_sha256(n % 5);
        let made = register(&mut client, claim, &format!("fill-{n}"))
            .await
            .claim
            .unwrap();
        attach(
            &mut client,
            &made.name,
            sample_response(pb::Stance::Refutes),
            &format!("fill-{n}-a"),
        )
        .await;
        if n % 2 == 0 {
            rate_false(&mut client, &made.name, &format!("verdict {n}")).await;
        }
    }
}

fn export(server: &str, out: &Path) -> String {
    let (ok, text) = cli(&["export", "--server", server, "--out", s(out)]);
    assert!(ok, "export: {text}");
    std::fs::read_to_string(out).unwrap()
}

fn backup(server: &str, out: &Path) {
    let (ok, text) = cli(&["backup", "--server", server, "--out", s(out)]);
    assert!(ok, "backup: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_moves_from_sled_to_postgres_and_back_with_check_clean_and_identical_exports() {
    let Some(db) = fresh_database() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let sled_dir = work.path().join("sled");
    let sled = Process::spawn(&sled_dir);
    fill(&sled.addr).await;
    let from_sled = export(&sled.addr, &work.path().join("sled.jsonl"));
    backup(&sled.addr, &work.path().join("sled.backup"));
    drop(sled);

    // sled -> PostgreSQL.
    let (ok, text) = cli(&[
        "restore",
        "--in",
        s(&work.path().join("sled.backup")),
        "--database-url",
        &db.url,
    ]);
    assert!(ok, "restore into PostgreSQL: {text}");
    let (code, text) = cli_exit(&["check", "--database-url", &db.url]);
    assert_eq!(code, 0, "check on PostgreSQL: {text}");
    assert!(text.contains("12 claims"), "{text}");
    let replica = Process::spawn_on_database(&db.url, &[]);
    let on_pg = export(&replica.addr, &work.path().join("pg.jsonl"));
    assert_eq!(
        on_pg, from_sled,
        "the same export from PostgreSQL as from sled"
    );
    // The restored archive takes new writes, numbered after the old ones.
    let mut client = common::connect(&replica.addr).await;
    let next = register(&mut client, sample_claim("after the move"), "").await;
    assert_eq!(next.claim.unwrap().name, "claims/13");
    backup(&replica.addr, &work.path().join("pg.backup"));
    let after_write = export(&replica.addr, &work.path().join("pg2.jsonl"));
    drop(replica);

    // PostgreSQL -> sled.
    let back = work.path().join("back");
    let (ok, text) = cli(&[
        "restore",
        "--in",
        s(&work.path().join("pg.backup")),
        "--data-dir",
        s(&back),
    ]);
    assert!(ok, "restore into sled: {text}");
    let (code, text) = cli_exit(&["check", "--data-dir", s(&back)]);
    assert_eq!(code, 0, "check on sled: {text}");
    let sled_again = Process::spawn(&back);
    assert_eq!(
        export(&sled_again.addr, &work.path().join("back.jsonl")),
        after_write
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_database_with_claims_is_refused_and_changes_nothing() {
    let Some(db) = fresh_database() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let sled = Process::spawn(&work.path().join("sled"));
    fill(&sled.addr).await;
    backup(&sled.addr, &work.path().join("b"));
    drop(sled);
    let replica = Process::spawn_on_database(&db.url, &[]);
    let mut client = common::connect(&replica.addr).await;
    register(&mut client, sample_claim("already here"), "").await;
    let before = export(&replica.addr, &work.path().join("before.jsonl"));
    let (ok, text) = cli(&[
        "restore",
        "--in",
        s(&work.path().join("b")),
        "--database-url",
        &db.url,
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("only into an empty database"), "{text}");
    assert_eq!(
        export(&replica.addr, &work.path().join("after.jsonl")),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_a_database_finds_a_tampered_record_and_exits_8() {
    let Some(db) = fresh_database() else {
        return;
    };
    let replica = Process::spawn_on_database(&db.url, &[]);
    fill(&replica.addr).await;
    let (code, text) = cli_exit(&["check", "--database-url", &db.url]);
    assert_eq!(code, 0, "clean before: {text}");
    // Rewrite one byte of a stored event, as an attacker with SQL access could.
    db.execute(
        "UPDATE photoclaim.events SET v = overlay(v placing '\\x00'::bytea from 12 for 1) \
         WHERE k = (SELECT k FROM photoclaim.events ORDER BY k OFFSET 3 LIMIT 1)",
    );
    let (code, text) = cli_exit(&["check", "--database-url", &db.url]);
    assert_eq!(code, 8, "{text}");
    assert!(text.contains("PROBLEM"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_load_copies_a_stopped_data_directory_exactly() {
    let Some(db) = fresh_database() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("generated");
    let (ok, text) = cli(&[
        "generate",
        "--data-dir",
        s(&dir),
        "--claims",
        "300",
        "--seed",
        "7",
    ]);
    assert!(ok, "generate: {text}");
    let (ok, text) = cli(&[
        "export",
        "--data-dir",
        s(&dir),
        "--out",
        s(&work.path().join("dir.jsonl")),
    ]);
    assert!(ok, "export: {text}");
    let (ok, text) = cli(&[
        "db",
        "load",
        "--data-dir",
        s(&dir),
        "--database-url",
        &db.url,
    ]);
    assert!(ok, "db load: {text}");
    // A second load is refused: the database is no longer empty.
    let (ok, text) = cli(&[
        "db",
        "load",
        "--data-dir",
        s(&dir),
        "--database-url",
        &db.url,
    ]);
    assert!(
        !ok && text.contains("only into an empty database"),
        "{text}"
    );
    let (code, text) = cli_exit(&["check", "--database-url", &db.url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("300 claims"), "{text}");
    let replica = Process::spawn_on_database(&db.url, &[]);
    assert_eq!(
        export(&replica.addr, &work.path().join("pg.jsonl")),
        std::fs::read_to_string(work.path().join("dir.jsonl")).unwrap()
    );
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_by_migrate_and_serve() {
    let Some(db) = fresh_database() else {
        return;
    };
    let (ok, text) = cli(&["db", "migrate", "--database-url", &db.url]);
    assert!(ok, "{text}");
    db.execute(
        "INSERT INTO photoclaim.schema_migrations (version, name) VALUES (99, 'from the future')",
    );
    let (code, text) = cli_exit(&["db", "migrate", "--database-url", &db.url]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("newer than this binary supports"), "{text}");
    let (code, text) = cli_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("upgrade photoclaim"), "{text}");
}

#[test]
fn bad_database_flags_are_usage_errors_naming_the_flag() {
    // No server needed: these are refused before any connection.
    let (code, text) = cli_exit(&[
        "serve",
        "--database-url",
        "postgres://x@127.0.0.1/db",
        "--data-dir",
        "d",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--database-url") && text.contains("--data-dir"),
        "{text}"
    );
    let (code, text) = cli_exit(&[
        "serve",
        "--database-url",
        "postgres://x@127.0.0.1/db",
        "--in-memory",
    ]);
    assert_eq!(code, 2, "{text}");
    let (code, text) = cli_exit(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgres://x@127.0.0.1/db?sslmode=sometimes",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--database-url") && text.contains("sslmode=sometimes"),
        "{text}"
    );
    let (code, text) = cli_exit(&[
        "db",
        "migrate",
        "--database-url",
        "postgres://x@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("sslrootcert=/nonexistent/ca.pem"), "{text}");
    let (code, text) = cli_exit(&["db", "migrate", "--database-url", "not a url at all ="]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--database-url"), "{text}");
}
