//! photoclaim: a gRPC service for newsroom verification desks.
//!
//! Data flows one way: a request reaches a handler in [`api`], which converts
//! it to [`domain`] types and validates it; the [`store`] applies the domain's
//! rules inside one transaction, makes the write durable, and the handler
//! converts the result back to protobuf.
//!
//! - [`pb`]: generated code for `proto/photoclaim/v1` and the descriptor set;
//!   one message, `ImageMatch`, written by hand to send claims encoded
//!   earlier.
//! - [`domain`]: records, API keys and roles, validation, status rules. No
//!   tonic, no sled.
//! - [`store`]: the [`store::Store`] trait, written once over any storage
//!   engine by [`store::Core`] (rules, idempotency, sealing, similarity,
//!   caches and the PDQ index), the engine interface [`store::Engine`], and
//!   two engines: sled ([`store::SledStore`]: a disk reserve in front, and
//!   an in-process reopening after a failed disk write) and memory
//!   ([`store::MemoryStore`], `serve --in-memory`).
//! - [`rpc`]: the one table of our RPCs (role, log level, request size
//!   class), read by the guard, call logging, metrics and body limits.
//! - [`api`]: the `ClaimService` and `AdminService` handlers, the guard layer
//!   (authentication, roles, fair slots per caller: [`api::slots`]), request
//!   bodies under per-method limits ([`api::body_limits`]), the codec that
//!   makes undecodable requests INVALID_ARGUMENT ([`api::codec`]), name
//!   parsing, signed page tokens, and the one mapping from domain errors to
//!   `tonic::Status`.
//! - [`listener`]: the accept loop in front of the server: a cap on open
//!   connections, a deadline for a new connection's first bytes.
//! - [`server`]: builds the tonic server (our services, health, reflection,
//!   the guard, TLS, limits), runs it on a bound listener until a shutdown
//!   future resolves, drains, flushes.
//! - [`wire`]: the API's data outside the store, shared by the server and
//!   the command line without either importing the other: domain ↔
//!   protobuf conversion, resource names and page tokens, the JSON Lines
//!   archive, the backup file format and the snapshot behind
//!   `AdminService.Backup`.
//! - [`store::check_dir`] is `photoclaim check`, [`domain::chain`] the
//!   audit trail's hash chains and [`domain::history`] their replay.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`domain::review`]: schema.org ClaimReview / MediaReview JSON-LD of a
//!   resolved claim (ExportClaimReview).
//! - [`client`]: reaching a running server: connection, TLS, bearer
//!   token, the AdminService client; no clap.
//! - [`cli`]: the command line in one place: every flag ([`cli::args`]),
//!   what each subcommand does ([`cli::commands`]), the commands on a data
//!   directory or through a server ([`cli::keys`], [`cli::export`],
//!   [`cli::backup`], [`cli::generate`], [`cli::bench`]), the desk client
//!   ([`cli::desk`]), and the one error type, message format and exit-code
//!   table, output that ends quietly on a closed pipe, progress bars
//!   ([`cli::output`]).
//!
//! No two modules import each other, directly or in a circle (checked in CI
//! by `.ci/module_cycles.py`).
//!
//! The binary (`src/main.rs`) only starts the runtime and calls
//! [`cli::commands::run`].

pub mod api;
pub mod cli;
pub mod client;
pub mod domain;
pub mod imaging;
pub mod listener;
pub mod metrics;
pub mod pb;
pub mod rpc;
pub mod search;
pub mod server;
pub mod store;
pub mod wire;
