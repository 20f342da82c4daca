//! The `photoclaim` binary: everything is in the library's
//! [`photoclaim::cli`]; this only starts the runtime.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    photoclaim::cli::commands::run().await
}
