//! `mammo-serve`: command line → [`Config`] → [`mammo_serve::run`].

use clap::Parser;
use mammo_serve::Config;
use std::process::ExitCode;

/// jemalloc: under a 10-minute mixed soak it kept the least memory and grew the least after
/// minute 2, where glibc's per-thread arenas kept growing (docs/benchmarks.md, "Memory").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object a line, for log collectors.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "mammo-serve",
    version,
    args_override_self = true,
    about = "HTTP inference service for mammogram breast density and malignancy (decision support, not a diagnosis)"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Log format.
    #[arg(long, env = "MAMMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log filter (RUST_LOG syntax), e.g. `info` or `mammo_serve=debug,ort=warn`.
    #[arg(long, env = "MAMMO_LOG", default_value = "info,ort=warn")]
    log: String,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_openapi {
        print!("{}", mammo_serve::api::openapi_json());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // A panic (a decoder's on malformed data, answered as that image's error) is one log
    // line in the chosen format, not text on stderr beside JSON.
    std::panic::set_hook(Box::new(|info| tracing::error!(%info, "a thread panicked")));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mammo_serve::run(cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
