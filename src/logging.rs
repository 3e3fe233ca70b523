//! Process logs: `text` for people or `json` (one object per line), written
//! by a background thread so a slow terminal or journal never blocks a core.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines buffered before the log writer starts dropping them.
const BUFFERED_LINES: usize = 65_536;

/// Installs the global subscriber. `filter` is `RUST_LOG` when set, else
/// `global.log_level`. Keep the guard alive until exit so lines flush.
pub fn init(format: LogFormat, filter: &str) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if let Err(error) = result {
        eprintln!("docker-api-proxy: logging already initialised: {error}");
    }
    guard
}
