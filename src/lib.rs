//! `docker-api-proxy` as a library: the binary in `main.rs` is a thin
//! command-line front, and the fuzz targets in `fuzz/` reach the parsers
//! through this crate.
//!
//! Modules follow the architecture (`docs/architecture.md`): `http`
//! (framing, targets), `proxy` (the request path), `policy`, `auth`,
//! `tls`, `config`, `upstream`, `runtime`, `audit`, `metrics`.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod runtime;
pub mod setup;
pub mod tls;
pub mod upstream;
