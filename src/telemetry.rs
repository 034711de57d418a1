//! Logging setup. Logs are structured (`json` for machines, `pretty` for people) and carry the
//! request id of the request they belong to. What goes into a log line is decided at the call
//! site: ids, counts, outcomes and durations, never names, phones, emails, messages or bodies.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Err(error) = installed {
        // A subscriber already exists (tests install one per binary); keep it.
        eprintln!("logging already initialised: {error}");
    }
    std::panic::set_hook(Box::new(log_panic_without_message));
}

/// A panic is logged with where it happened, never its message: a message can quote the data
/// being handled (an index or slicing panic quotes the text), and that may be a patient's name.
/// The delivery a mapper panicked on is kept as FAILED with its raw bytes (see `vendors`).
fn log_panic_without_message(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|at| format!("{}:{}", at.file(), at.line()))
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::error!(%location, "panic (message withheld: it may quote personal data)");
}
