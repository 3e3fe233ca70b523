//! The Docker Engine side: where its socket is and per-core keep-alive
//! connections to it.
//!
//! Each worker owns one [`pool::Pool`]; nothing here is shared between
//! cores. `crate::proxy` checks a connection out for one exchange and gives
//! it back when the response ended cleanly.

pub mod pool;
pub mod socket;

use std::path::PathBuf;

use thiserror::Error;

/// Why no request could be sent to the engine.
#[derive(Debug, Error)]
pub enum Error {
    #[error("no Docker Engine socket found (tried {})", list(.tried))]
    NoSocket { tried: Vec<PathBuf> },
    #[error("cannot connect to the Docker Engine at {}: {source}", .path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connecting to the Docker Engine at {} timed out", .path.display())]
    ConnectTimeout { path: PathBuf },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
