//! The command line, in one place: the flags of every subcommand
//! ([`args`]), what each does ([`commands`], which `main.rs` calls), the
//! commands that work on a data directory or through a server ([`keys`],
//! [`export`], [`backup`], [`generate`], [`bench`](mod@bench)), the desk client
//! ([`desk`]), and what they all share: errors and exit codes, output,
//! progress, the local-or-remote target ([`output`], re-exported here).
//!
//! Nothing below the command line imports it: the server, the store and
//! the domain know nothing of clap or the terminal.

pub mod args;
pub mod backup;
pub mod bench;
pub mod commands;
pub mod credentials;
pub mod database;
pub mod desk;
pub mod export;
pub mod generate;
pub mod keys;
pub mod local;
pub mod output;

pub use output::*;
