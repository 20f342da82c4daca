//! The domain: records, validation and status rules. No tonic, no sled: the
//! API layer converts to and from these types, the store persists them.

pub mod access;
pub mod chain;
pub mod error;
pub mod external_review;
pub mod history;
pub mod model;
pub mod pdq;
pub mod provenance;
pub mod review;
pub mod rules;
pub mod validate;
pub mod verdict_checks;

pub use error::{excerpt, Error, EtagMismatch, FieldViolation, Precondition, Result};
pub use model::*;
