use std::path::PathBuf;

use clap::{Parser, Subcommand};
use silt_agent::config::Settings;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "silt",
    version,
    about = "A Kafka-compatible event log on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one agent with a local directory as the bucket and embedded metadata.
    Dev {
        /// Settings file (TOML); keys as in the README's configuration table.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory for the bucket, metadata and cache.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Kafka listener address.
        #[arg(long)]
        listen: Option<String>,
        /// Address given to clients (default: the listen address).
        #[arg(long)]
        advertise: Option<String>,
        /// Partitions of auto-created topics.
        #[arg(long)]
        default_partitions: Option<u32>,
        /// Turn topic auto-creation off.
        #[arg(long)]
        no_auto_create: bool,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Cmd::Dev {
        config,
        data_dir,
        listen,
        advertise,
        default_partitions,
        no_auto_create,
        log_json,
    } = cli.command;
    let mut overrides: Vec<(&str, String)> = Vec::new();
    if let Some(d) = data_dir {
        overrides.push(("data_dir", d.display().to_string()));
    }
    if let Some(l) = listen {
        overrides.push(("listen", l));
    }
    if let Some(a) = advertise {
        overrides.push(("advertise", a));
    }
    if let Some(p) = default_partitions {
        overrides.push(("default_partitions", p.to_string()));
    }
    if no_auto_create {
        overrides.push(("auto_create_topics", "false".into()));
    }
    if log_json {
        overrides.push(("log_format", "json".into()));
    }
    let settings = match Settings::load(config.as_deref(), std::env::vars(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("silt: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("silt: starting runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        silt_agent::dev::run(settings, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("silt: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("signal received");
    shutdown.cancel();
}
