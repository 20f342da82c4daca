//! The API's data as it travels and is kept outside the store, shared by
//! the server ([`crate::api`]) and the command line ([`crate::cli::keys`],
//! [`crate::cli::export`], [`crate::cli::backup`]) without either importing the
//! other:
//!
//! - [`convert`]: domain records to and from their protobuf messages;
//! - [`names`]: resource names (`claims/7`, `claims/7/officialResponses/2`),
//!   page sizes and signed page tokens;
//! - [`archive`]: the JSON Lines archive of `ExportClaims` and `photoclaim
//!   export`;
//! - [`backup`]: the backup file of `AdminService.Backup` and `photoclaim
//!   backup` / `restore`, and the snapshot that fills it.

pub mod archive;
pub mod backup;
pub mod convert;
pub mod names;
