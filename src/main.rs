//! `docker-api-proxy`: a policy-enforcing HTTP/1.1 proxy for the Docker
//! Engine API, one monoio runtime per core.
//!
//! This file parses the command line and dispatches: run the proxy (the
//! default), `--check-config`, `explain`, or the `setup` wizard. Loading,
//! serving and everything else live in the library (`lib.rs`).

use std::process::ExitCode;

use clap::Parser;
use docker_api_proxy::{cli, runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let overrides = args.overrides();
    match args.command {
        Some(cli::Command::Explain(explain)) => cli::explain(&overrides, &explain),
        Some(cli::Command::Setup(setup)) => cli::setup(&setup),
        None if args.check_config => cli::check_config(&overrides),
        None => match runtime::run(overrides) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("docker-api-proxy: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
