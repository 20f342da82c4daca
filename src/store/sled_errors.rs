//! Storage errors as the domain reports them: sled's failures of a read or
//! write, and stored data that turns out corrupt (`DataLoss` naming the
//! record, logged and counted). Shared by the engine and its committer.

use crate::domain::Error;

/// Stored data at `at` (a record, `claims/7/events/2`, or a tree and key)
/// is corrupt: logged at error with its name and `detail` (never the data),
/// counted (`photoclaim_storage_corruption_total`), and answered as
/// `DataLoss` naming it.
pub(super) fn corrupt(at: &str, detail: impl std::fmt::Display) -> Error {
    tracing::error!(record = at, %detail, "stored data is corrupt");
    crate::metrics::global().storage_corrupt();
    Error::DataLoss(format!(
        "{at}: stored data is corrupt; run `photoclaim check` and restore from a backup"
    ))
}

/// A failed sled read or write of `at`: sled's `Corruption` is
/// [`corrupt`] (`DataLoss`), anything else `Internal`.
pub(super) fn storage(err: sled::Error, at: &str) -> Error {
    match err {
        sled::Error::Corruption { .. } => corrupt(at, err),
        other => Error::Internal(format!("{at}: {other}")),
    }
}
