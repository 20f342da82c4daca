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
//! - [`store`]: the [`store::Store`] trait and its sled implementation
//!   ([`store::SledStore`]: a disk reserve in front, and an in-process
//!   reopening after a failed disk write).
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
//! - [`keys`]: `photoclaim keys ...`, on a data directory or through a
//!   running server.
//! - [`export`]: `photoclaim export`, the JSON Lines archive (format in
//!   [`api::archive`]), on a data directory or through a running server.
//! - [`backup`]: `photoclaim backup` / `restore`, the backup file format and
//!   the snapshot behind `AdminService.Backup`; [`store::check_dir`] is
//!   `photoclaim check`, and [`domain::chain`] the audit trail's hash chains.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`generate`]: `photoclaim generate`, synthetic claims for scale tests.
//! - [`bench`]: `photoclaim bench`, the load generator (health-check
//!   baseline, RPC mix, throughput and latency percentiles).
//! - [`domain::review`]: schema.org ClaimReview / MediaReview JSON-LD of a
//!   resolved claim (ExportClaimReview).
//! - [`desk`]: `photoclaim claim ...`, the desk CLI, a gRPC client of a
//!   running server.
//! - [`remote`]: the client side of `--server`: connection, TLS, bearer
//!   token; shared by [`keys`], [`export`] and [`desk`].
//! - [`cli`]: what every subcommand shares at the terminal: the one error
//!   type, message format and exit-code table, standard output that ends
//!   quietly on a closed pipe, progress bars.
//!
//! The binary (`src/main.rs`) only parses flags, sets up tracing and calls
//! [`server::run`], [`keys`], [`export`], [`backup`], [`store::check_dir`] or [`desk`].

pub mod api;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod desk;
pub mod domain;
pub mod export;
pub mod generate;
pub mod imaging;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod pb;
pub mod remote;
pub mod rpc;
pub mod server;
pub mod store;
