//! The PostgreSQL backend: the tables of [`crate::store::schema`] as
//! tables of the schema `photoclaim` in one database (`migrations/`),
//! shared by any number of photoclaim processes. Reads run on reader
//! threads that each own a connection (`conn.rs`); writes run on one
//! writer thread per process, many to a transaction, under an advisory
//! lock that orders the writes of every process (`writer.rs`). The engine
//! knows nothing of claims: the core ([`crate::store::core`]) runs the
//! rules over it, as over sled.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Config, NoTls};

use super::engine::{After, Chunked, Committed, Engine, KeyRange, Scan, TxError, WriteTx};
use super::errors::StorageError;
use super::schema::{Table, META_FORMAT_VERSION, META_PAGE_TOKEN_KEY};
use super::sled_store::DIR_FORMAT_VERSION;
use super::write_queue::WriteQueue;
use super::{PageTokenKey, PAGE_TOKEN_KEY_LEN};
use crate::domain::Result;
use conn::{describe, fault, Fault, Readers, Session};

mod conn;
pub mod migrate;
pub mod tls;
pub mod transfer;
mod writer;

/// Entries a scan reads per query.
const SCAN_CHUNK: usize = 512;

/// Reader threads (connections for reads) of a server by default.
pub const DEFAULT_READERS: u16 = 4;

/// How long a connection attempt may take when the URL sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgOpenError {
    /// The URL is not a PostgreSQL connection string.
    #[error("--database-url: {0}")]
    BadUrl(String),
    /// The database cannot be reached (now): worth retrying.
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// The schema was migrated by a newer photoclaim.
    #[error("the database's photoclaim schema has version {found}, newer than this binary supports ({supported}); upgrade photoclaim")]
    TooNew {
        /// Version found in the database.
        found: i32,
        /// Newest version this binary knows.
        supported: i32,
    },
    /// Anything else (permissions, a failed migration).
    #[error("cannot open the database: {cause}")]
    Other {
        /// What went wrong.
        cause: String,
    },
}

impl PgOpenError {
    fn from_pg(err: &postgres::Error) -> Self {
        match fault(err) {
            Fault::Unreachable => PgOpenError::Unreachable(describe(err)),
            _ => PgOpenError::Other {
                cause: describe(err),
            },
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PgOpenError::Unreachable(_))
    }
}

/// How to reach the database: the driver's settings and its TLS.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    /// A new connection (blocking: call it off the async runtime).
    pub(super) fn connect(&self) -> std::result::Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }
}

/// The connection settings of `url` (a `postgres://` URL or a libpq
/// key=value string), with photoclaim's application name and a connect
/// timeout unless it sets them, and TLS as its `sslmode` and `sslrootcert`
/// say (`tls.rs`).
pub fn config(url: &str) -> std::result::Result<Connector, PgOpenError> {
    let (rest, tls) = tls::split(url).map_err(PgOpenError::BadUrl)?;
    let mut config = Config::from_str(&rest).map_err(|e| PgOpenError::BadUrl(e.to_string()))?;
    if config.get_application_name().is_none() {
        config.application_name("photoclaim");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.ssl_mode(tls.mode);
    let tls = tls::connector(&tls).map_err(PgOpenError::BadUrl)?;
    Ok(Connector { config, tls })
}

/// `url` for logs and messages: user, hosts, ports and database, never
/// the password or other parameters.
pub fn describe_url(url: &str) -> String {
    let rest = tls::split(url).map(|(rest, _)| rest).unwrap_or_default();
    let Ok(config) = Config::from_str(&rest) else {
        return "(an invalid database URL)".into();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The SQL of the engine's statements, by table.
mod sql {
    use std::ops::Bound;

    use crate::store::schema::Table;

    pub(super) fn get(table: Table) -> String {
        format!("SELECT v FROM photoclaim.{} WHERE k = $1", table.name())
    }

    pub(super) fn get_many(table: Table) -> String {
        format!(
            "SELECT k, v FROM photoclaim.{} WHERE k = ANY($1::bytea[])",
            table.name()
        )
    }

    pub(super) fn upsert(table: Table) -> String {
        format!(
            "INSERT INTO photoclaim.{} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
            table.name()
        )
    }

    pub(super) fn delete(table: Table) -> String {
        format!(
            "DELETE FROM photoclaim.{} WHERE k = ANY($1::bytea[])",
            table.name()
        )
    }

    /// A chunk of a scan, and the bounds it takes as parameters.
    pub(super) fn scan(
        table: Table,
        range: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
        limit: usize,
    ) -> (String, Vec<Vec<u8>>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let mut bound = |bound: &Bound<Vec<u8>>, inclusive: &str, exclusive: &str| {
            let op = match bound {
                Bound::Included(key) => (inclusive, key),
                Bound::Excluded(key) => (exclusive, key),
                Bound::Unbounded => return,
            };
            params.push(op.1.clone());
            conditions.push(format!("k {} ${}", op.0, params.len()));
        };
        bound(&range.0, ">=", ">");
        bound(&range.1, "<=", "<");
        let filter = match conditions.is_empty() {
            true => String::new(),
            false => format!(" WHERE {}", conditions.join(" AND ")),
        };
        let order = if reverse { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT k, v FROM photoclaim.{}{filter} ORDER BY k {order} LIMIT {limit}",
            table.name()
        );
        (sql, params)
    }
}

/// The tables in a PostgreSQL database.
pub struct PgEngine {
    readers: Readers,
    writer: WriteQueue,
    page_token_key: PageTokenKey,
    /// The connection that listens for other processes' commits.
    listener: Mutex<Listener>,
    options: PgOptions,
}

/// A connection that has run `LISTEN` on [`writer::COMMITS_CHANNEL`].
struct Listener {
    session: Session,
    listening: bool,
}

impl Listener {
    /// Waits up to `timeout` for a notification: whether one came, or
    /// `None` if the connection failed (the caller then waits without it).
    fn wait(&mut self, timeout: Duration) -> Option<bool> {
        let listening = self.listening;
        let conn = self.session.conn().ok()?;
        if !listening || conn.client.is_closed() {
            let listen = format!("LISTEN {}", writer::COMMITS_CHANNEL);
            if let Err(err) = conn.client.batch_execute(&listen) {
                self.session.failed(&err);
                self.listening = false;
                return None;
            }
            self.listening = true;
        }
        let conn = self.session.conn().ok()?;
        let heard = {
            let mut notifications = conn.client.notifications();
            let first = notifications.timeout_iter(timeout).next();
            // Every pending one is covered by the same look at the tables.
            first.and_then(|first| notifications.iter().count().map(|_| first.is_some()))
        };
        match heard {
            Err(err) => {
                self.session.failed(&err);
                self.listening = false;
                None
            }
            Ok(heard) => Some(heard),
        }
    }
}

/// How a [`PgEngine`] connects and follows the other replicas.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Reader threads, each with a connection.
    pub readers: usize,
    /// Wake the follower on other replicas' commits with LISTEN/NOTIFY
    /// (off for PostgreSQL-compatible engines that lack it).
    pub listen: bool,
    /// How often the follower looks at the log without a notification.
    pub poll: Duration,
}

/// The follower's polling interval by default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// The longest a follower's wait lasts before it checks its stop flag.
const WAIT_SLICE: Duration = Duration::from_millis(200);

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            readers: usize::from(DEFAULT_READERS),
            listen: true,
            poll: DEFAULT_POLL,
        }
    }
}

impl PgEngine {
    /// Connects to the database `config` names, applies the migrations it
    /// lacks, checks its format and starts the reader and writer threads.
    /// Blocks the calling thread while it connects.
    pub fn open(config: Connector, options: &PgOptions) -> std::result::Result<Self, PgOpenError> {
        let config = Arc::new(config);
        // The synchronous client runs its own small runtime, which must
        // not be started on a thread that drives async tasks: connect on a
        // thread of our own.
        let setup = Arc::clone(&config);
        let page_token_key = std::thread::Builder::new()
            .name("photoclaim-pg-open".into())
            .spawn(move || prepare(&setup))
            .map_err(|e| PgOpenError::Other {
                cause: format!("cannot start a thread: {e}"),
            })?
            .join()
            .map_err(|_| PgOpenError::Other {
                cause: "opening the database panicked".into(),
            })??;
        let thread = |e: std::io::Error| PgOpenError::Other {
            cause: format!("cannot start a thread: {e}"),
        };
        Ok(PgEngine {
            readers: Readers::start(&config, options.readers).map_err(thread)?,
            writer: writer::start(Arc::clone(&config)).map_err(thread)?,
            page_token_key,
            listener: Mutex::new(Listener {
                session: Session::new(config),
                listening: false,
            }),
            options: options.clone(),
        })
    }
}

/// Connects, migrates, and reads (or makes) the page-token key; checks the
/// record format.
fn prepare(config: &Connector) -> std::result::Result<PageTokenKey, PgOpenError> {
    let started = std::time::Instant::now();
    let pg = |err: postgres::Error| PgOpenError::from_pg(&err);
    let mut client = config.connect().map_err(pg)?;
    migrate::migrate(&mut client)?;
    let mut key = [0; PAGE_TOKEN_KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| PgOpenError::Other {
        cause: format!("no randomness for the page-token key: {e}"),
    })?;
    let format = DIR_FORMAT_VERSION.to_be_bytes().to_vec();
    let insert = "INSERT INTO photoclaim.meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING";
    for (k, v) in [
        (META_FORMAT_VERSION, &format[..]),
        (META_PAGE_TOKEN_KEY, &key[..]),
    ] {
        client.execute(insert, &[&k, &v]).map_err(pg)?;
    }
    let read =
        |client: &mut postgres::Client, k: &[u8]| -> std::result::Result<Vec<u8>, PgOpenError> {
            let row = client
                .query_one("SELECT v FROM photoclaim.meta WHERE k = $1", &[&k])
                .map_err(pg)?;
            Ok(row.get(0))
        };
    let found = read(&mut client, META_FORMAT_VERSION)?;
    if found != format {
        return Err(PgOpenError::Other {
            cause: format!(
                "the database holds records of format {found:?}; this binary writes {DIR_FORMAT_VERSION}"
            ),
        });
    }
    let stored = read(&mut client, META_PAGE_TOKEN_KEY)?;
    let key = PageTokenKey::try_from(&stored[..]).map_err(|_| PgOpenError::Other {
        cause: "corrupt page_token_key entry in photoclaim.meta".into(),
    })?;
    tracing::info!(
        total_ms = started.elapsed().as_millis() as u64,
        "database opened"
    );
    Ok(key)
}

impl Engine for PgEngine {
    type Value = Vec<u8>;

    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_vec();
        self.readers.call(move |conn| {
            let row = conn.query_opt(&sql::get(table), &[&key])?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn get_many(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> std::result::Result<Vec<Option<Vec<u8>>>, StorageError> {
        if keys.len() < 2 {
            return keys.iter().map(|key| self.get(table, key)).collect();
        }
        let wanted = keys.to_vec();
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            self.readers.call(move |conn| {
                let rows = conn.query(&sql::get_many(table), &[&wanted])?;
                Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
            })?;
        Ok(keys.iter().map(|key| found.remove(key)).collect())
    }

    fn scan(&self, table: Table, range: KeyRange, reverse: bool) -> Scan<'_, Vec<u8>> {
        let read = move |range: &KeyRange, reverse: bool, chunk: usize| {
            let (sql, params) = sql::scan(table, range, reverse, chunk);
            self.readers.call(move |conn| {
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = conn.query(&sql, &params)?;
                Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
            })
        };
        Box::new(Chunked::new(range, reverse, SCAN_CHUNK, read))
    }

    async fn commit<T, F, C, D>(&self, write: F, after: After<C, D>) -> Result<Committed<T>>
    where
        F: Fn(&dyn WriteTx) -> std::result::Result<T, TxError> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
        D: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(write, after).await
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.page_token_key
    }

    fn size(&self) -> std::result::Result<u64, StorageError> {
        self.readers.call(|conn| {
            let row = conn.query_opt(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'photoclaim' AND c.relkind = 'r'",
                &[],
            )?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
        })
    }

    async fn close(&self) -> Result<()> {
        // Every acknowledged write was durable when its COMMIT returned.
        Ok(())
    }

    fn flush_count(&self) -> u64 {
        self.writer.flush_count()
    }

    fn shared(&self) -> bool {
        true
    }

    fn await_commits(&self, stop: &AtomicBool) {
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let left = self.options.poll.saturating_sub(started.elapsed());
            if left.is_zero() {
                return;
            }
            let slice = left.min(WAIT_SLICE);
            let heard = match self.options.listen {
                true => self
                    .listener
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .wait(slice),
                false => None,
            };
            match heard {
                Some(true) => return,
                Some(false) => {}
                // Not listening, or no connection to listen on: wait.
                None => std::thread::sleep(slice),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Bound;

    #[test]
    fn scan_sql_takes_each_bound_as_a_parameter() {
        let range = (Bound::Excluded(vec![1]), Bound::Included(vec![9]));
        let (sql, params) = sql::scan(Table::Claims, &range, true, 10);
        assert_eq!(
            sql,
            "SELECT k, v FROM photoclaim.claims WHERE k > $1 AND k <= $2 ORDER BY k DESC LIMIT 10"
        );
        assert_eq!(params, vec![vec![1], vec![9]]);
        let (sql, params) = sql::scan(Table::Meta, &(Bound::Unbounded, Bound::Unbounded), false, 5);
        assert_eq!(
            sql,
            "SELECT k, v FROM photoclaim.meta ORDER BY k ASC LIMIT 5"
        );
        assert!(params.is_empty());
    }

    #[test]
    fn a_url_gets_an_application_name_a_connect_timeout_and_its_tls() {
        let parsed = config("postgres://desk@127.0.0.1:5432/photoclaim").unwrap();
        assert_eq!(parsed.config.get_application_name(), Some("photoclaim"));
        assert_eq!(parsed.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(
            parsed.tls.is_some(),
            "prefer: TLS when the server offers it"
        );
        let plain = config("postgres://desk@127.0.0.1/db?sslmode=disable").unwrap();
        assert!(plain.tls.is_none());
        let required = config("postgres://desk@127.0.0.1/db?sslmode=require").unwrap();
        assert_eq!(
            required.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        assert!(matches!(
            config("postgres://desk@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent.pem"),
            Err(PgOpenError::BadUrl(_))
        ));
        assert!(matches!(config("mysql://x"), Err(PgOpenError::BadUrl(_))));
    }

    #[test]
    fn a_described_url_never_shows_the_password() {
        let url = "postgres://desk:s3cret@db.example:6543/claims?sslmode=disable";
        assert_eq!(describe_url(url), "postgres://desk@db.example:6543/claims");
        assert!(!describe_url("host=a password=s3cret").contains("s3cret"));
    }
}
