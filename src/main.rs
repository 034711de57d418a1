//! The `carebridge` binary: parse the command line, run it. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    carebridge::cli::run(carebridge::cli::Cli::parse()).await
}
