//! Process logs: `text` for people or `json` (one object per line), written
//! by a background thread so a slow terminal or journal never blocks a core.
//!
//! The level filter can be replaced at run time: a reload that changes
//! `global.log_level` takes effect without a restart (`RUST_LOG`, when
//! set, keeps precedence, as at start).

use std::sync::OnceLock;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines buffered before the log writer starts dropping them.
const BUFFERED_LINES: usize = 65_536;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's filter.
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global subscriber. `filter` is `RUST_LOG` when set, else
/// `global.log_level`. Keep the guard alive until exit so lines flush.
pub fn init(format: LogFormat, filter: &str) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(ansi)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            builder.try_init()
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_env_filter(filter)
                .with_writer(writer)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = RELOAD.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            builder.try_init()
        }
    };
    if let Err(error) = result {
        eprintln!("docker-api-proxy: logging already initialised: {error}");
    }
    guard
}

/// The filter in force for a configured level: `RUST_LOG` wins.
pub fn effective_filter(log_level: &str) -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| log_level.to_owned())
}

/// Applies a new level filter (after a reload).
pub fn set_filter(filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    match RELOAD.get() {
        Some(reload) => reload(filter),
        None => Ok(()),
    }
}
