//! Schema migrations: versioned SQL files embedded in the binary
//! (`migrations/NNNN_name.sql`), applied in order under a session-level
//! advisory lock, so that replicas starting together apply each exactly
//! once; each in its own transaction with its row in
//! `photoclaim.schema_migrations`.

use postgres::Client;

use super::conn::describe;
use super::PgOpenError;

/// Every migration: version, name, SQL.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "tables", include_str!("migrations/0001_tables.sql")),
    (
        2,
        "external reviews",
        include_str!("migrations/0002_external_reviews.sql"),
    ),
];

/// The advisory lock held while migrating ("migrate!" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d69_6772_6174_6521;

/// The newest schema version this binary knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Connects to `url` and applies the migrations the database lacks
/// (`photoclaim db migrate`); returns the versions applied. Blocks: call
/// it off the async runtime.
pub fn run(url: &str) -> Result<Vec<i32>, PgOpenError> {
    let mut client = super::config(url)?
        .connect()
        .map_err(|e| PgOpenError::from_pg(&e))?;
    migrate(&mut client)
}

/// Applies the migrations the database lacks; returns the versions applied.
pub(super) fn migrate(client: &mut Client) -> Result<Vec<i32>, PgOpenError> {
    let sql = |err: postgres::Error| PgOpenError::from_pg(&err);
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .map_err(sql)?;
    let outcome = apply(client);
    // Also released when the connection closes.
    let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    outcome
}

fn apply(client: &mut Client) -> Result<Vec<i32>, PgOpenError> {
    let sql = |err: postgres::Error| PgOpenError::from_pg(&err);
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS photoclaim;
             CREATE TABLE IF NOT EXISTS photoclaim.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .map_err(sql)?;
    let applied: Vec<i32> = client
        .query("SELECT version FROM photoclaim.schema_migrations", &[])
        .map_err(sql)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(&newest) = applied.iter().max() {
        if newest > latest() {
            return Err(PgOpenError::TooNew {
                found: newest,
                supported: latest(),
            });
        }
    }
    let mut done = Vec::new();
    for &(version, name, text) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let mut tx = client.transaction().map_err(sql)?;
        tx.batch_execute(text).map_err(|e| PgOpenError::Other {
            cause: format!("migration {version} ({name}) failed: {}", describe(&e)),
        })?;
        tx.execute(
            "INSERT INTO photoclaim.schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(version, name, "database migration applied");
        done.push(version);
    }
    Ok(done)
}
