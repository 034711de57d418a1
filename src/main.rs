//! The `carebridge` binary: parse the command line, run it. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: under ingest load glibc's malloc/free (with
/// `malloc_consolidate` and contention between the runtime and the SQLite worker thread) took
/// about a sixth of the server's CPU (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    carebridge::cli::run(carebridge::cli::Cli::parse()).await
}
