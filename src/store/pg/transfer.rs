//! Moving tables between a database and a data directory, byte for byte:
//! both keep the same tables of [`crate::store::schema`] with the same
//! keys and values, so a copy is exact and everything built for data
//! directories (restore's verification, `photoclaim check`) serves the
//! database too.
//!
//! - [`dump_to_dir`] copies the database into a new sled directory from
//!   one snapshot (a REPEATABLE READ, READ ONLY transaction), so it may run
//!   while replicas write: `check --database-url` checks that copy.
//! - [`load_from_dir`] copies a data directory into a database that holds
//!   no claim, key or request record yet, in one transaction under the
//!   writers' advisory lock: `restore --database-url` restores a backup
//!   into a scratch directory (verifying every chain) and loads it.

use std::path::Path;

use postgres::{Client, IsolationLevel};

use super::conn::describe;
use super::writer::WRITE_LOCK;
use super::{config, migrate, sql, PgOpenError};
use crate::store::schema::Table;
use crate::store::sled_store::open_db;

/// Entries per query or statement.
const CHUNK: i64 = 5000;
/// sled's page cache for a copy: each entry is written once.
const COPY_CACHE_BYTES: u64 = 64 * 1024 * 1024;

fn pg(err: postgres::Error) -> String {
    describe(&err)
}

fn connect(url: &str) -> Result<Client, String> {
    config(url)
        .map_err(|e| e.to_string())?
        .connect()
        .map_err(|e| PgOpenError::from_pg(&e).to_string())
}

/// Copies every table of the database at `url` into the new data directory
/// `to`, from one snapshot; returns the entries copied.
pub fn dump_to_dir(url: &str, to: &Path) -> Result<u64, String> {
    if to.join("conf").exists() {
        return Err(format!("{} already holds a database", to.display()));
    }
    let mut client = connect(url)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg)?;
    let db = open_db(to, COPY_CACHE_BYTES).map_err(|e| e.to_string())?;
    let mut copied = 0;
    for table in Table::ALL {
        let tree = db.open_tree(table.name()).map_err(|e| e.to_string())?;
        let mut after: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let query = format!(
                "SELECT k, v FROM photoclaim.{} WHERE $1 OR k > $2 ORDER BY k LIMIT {CHUNK}",
                table.name()
            );
            let rows = tx.query(&query, &[&first, &after]).map_err(pg)?;
            let mut batch = sled::Batch::default();
            for row in &rows {
                let (k, v): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                batch.insert(k.as_slice(), v.as_slice());
                after = k;
            }
            tree.apply_batch(batch).map_err(|e| e.to_string())?;
            copied += rows.len() as u64;
            first = false;
            if (rows.len() as i64) < CHUNK {
                break;
            }
        }
    }
    tx.commit().map_err(pg)?;
    db.flush().map_err(|e| e.to_string())?;
    Ok(copied)
}

/// Copies every tree of the data directory `from` into the database at
/// `url` (migrating its schema first), which must hold no claim, event,
/// key or request record; returns the entries copied.
pub fn load_from_dir(from: &Path, url: &str) -> Result<u64, String> {
    if !from.join("conf").is_file() {
        return Err(format!("{} is not a data directory", from.display()));
    }
    let mut client = connect(url)?;
    migrate::migrate(&mut client).map_err(|e| e.to_string())?;
    let db = open_db(from, COPY_CACHE_BYTES).map_err(|e| e.to_string())?;
    let mut tx = client.transaction().map_err(pg)?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
        .map_err(pg)?;
    for table in [
        Table::Claims,
        Table::EventLog,
        Table::ApiKeys,
        Table::RequestIds,
    ] {
        let query = format!("SELECT EXISTS (SELECT 1 FROM photoclaim.{})", table.name());
        let used: bool = tx.query_one(&query, &[]).map_err(pg)?.get(0);
        if used {
            return Err(format!(
                "the database already holds {}: restore or load only into an empty database",
                table.name()
            ));
        }
    }
    // A server may have opened it (its format version and page-token
    // key): the directory's own meta replaces them.
    tx.batch_execute("DELETE FROM photoclaim.meta")
        .map_err(pg)?;
    let mut copied = 0;
    for table in Table::ALL {
        let tree = db.open_tree(table.name()).map_err(|e| e.to_string())?;
        let upsert = sql::upsert(table);
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for entry in tree.iter() {
            let (k, v) = entry.map_err(|e| e.to_string())?;
            keys.push(k.to_vec());
            values.push(v.to_vec());
            if keys.len() as i64 == CHUNK {
                tx.execute(&upsert, &[&keys, &values]).map_err(pg)?;
                copied += keys.len() as u64;
                keys.clear();
                values.clear();
            }
        }
        if !keys.is_empty() {
            tx.execute(&upsert, &[&keys, &values]).map_err(pg)?;
            copied += keys.len() as u64;
        }
    }
    tx.commit().map_err(pg)?;
    Ok(copied)
}
