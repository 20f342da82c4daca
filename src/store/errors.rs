//! Storage errors as the domain reports them: an engine's failure to read
//! or write, and stored data that turns out corrupt (`DataLoss` naming the
//! record, logged and counted). Shared by the core and every engine.

use crate::domain::Error;

/// Stored data at `at` (a record, `claims/7/events/2`, or a table and key)
/// is corrupt: logged at error with its name and `detail` (never the data),
/// counted (`photoclaim_storage_corruption_total`), and answered as
/// `DataLoss` naming it.
pub(crate) fn corrupt(at: &str, detail: impl std::fmt::Display) -> Error {
    tracing::error!(record = at, %detail, "stored data is corrupt");
    crate::metrics::global().storage_corrupt();
    Error::DataLoss(format!(
        "{at}: stored data is corrupt; run `photoclaim check` and restore from a backup"
    ))
}

/// An engine's failed read or write, not yet named: the caller knows what
/// it was reading and names it ([`StorageError::at`]).
#[derive(Debug, Clone)]
pub struct StorageError {
    /// The engine found its own stored data corrupt (checksums, framing).
    pub corrupt: bool,
    /// The storage cannot be reached now (a database connection went
    /// away): `Unavailable`, which a caller may retry.
    pub unavailable: bool,
    /// What the engine said.
    pub cause: String,
}

impl StorageError {
    /// The domain error for a failed access to `at`: `DataLoss` (logged
    /// and counted as corruption), `Unavailable` or `Internal`.
    pub fn at(self, at: &str) -> Error {
        if self.corrupt {
            return corrupt(at, self.cause);
        }
        match self.unavailable {
            true => Error::Unavailable(format!(
                "{at}: the database cannot be reached now; retry (with the same request_id for a write): {}",
                self.cause
            )),
            false => Error::Internal(format!("{at}: {}", self.cause)),
        }
    }
}
