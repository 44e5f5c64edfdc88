use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use silt_agent::{config::Settings, faults::TestFaults};
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
    /// One agent with a local directory as the bucket and embedded metadata.
    Dev(Flags),
    /// One stateless agent of a cluster: metadata in etcd, data in a bucket.
    Agent(Flags),
    /// Background jobs (retention, compaction, object GC) against a
    /// cluster's etcd and bucket.
    Jobs {
        #[command(subcommand)]
        command: JobsCmd,
    },
    /// SASL/SCRAM users in the cluster's etcd (the first administrator;
    /// afterwards Kafka's AlterUserScramCredentials does the same).
    Users {
        #[command(subcommand)]
        command: UsersCmd,
    },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Sets a user's SCRAM credential; the password is read from standard
    /// input (one line) or --password-file, never from the command line.
    Add {
        #[command(flatten)]
        flags: Flags,
        /// The user name (principal User:NAME).
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Deletes a user's SCRAM credential for one mechanism.
    Delete {
        #[command(flatten)]
        flags: Flags,
        name: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
    /// Lists users with their mechanisms and iteration counts.
    List {
        #[command(flatten)]
        flags: Flags,
    },
}

/// `silt users` parsed: the action, with the password read.
fn users_action(cmd: &UsersCmd) -> Result<silt_agent::cluster::UsersAction, String> {
    use silt_agent::{cluster::UsersAction, security::scram};
    let mech = |m: &str| {
        scram::Mechanism::parse(m)
            .ok_or_else(|| format!("--mechanism {m:?}: SCRAM-SHA-256 or SCRAM-SHA-512"))
    };
    Ok(match cmd {
        UsersCmd::Add {
            name,
            mechanism,
            iterations,
            password_file,
            ..
        } => {
            if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(iterations) {
                return Err(format!(
                    "--iterations must be between {} and {}",
                    scram::MIN_ITERATIONS,
                    scram::MAX_ITERATIONS
                ));
            }
            let text = match password_file {
                Some(f) => std::fs::read_to_string(f)
                    .map_err(|e| format!("--password-file {}: {e}", f.display()))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| format!("reading the password from standard input: {e}"))?;
                    line
                }
            };
            let password = text.lines().next().unwrap_or_default().to_string();
            UsersAction::Add {
                name: name.clone(),
                mechanism: mech(mechanism)?,
                iterations: *iterations,
                password,
            }
        }
        UsersCmd::Delete {
            name, mechanism, ..
        } => UsersAction::Delete {
            name: name.clone(),
            mechanism: mech(mechanism)?,
        },
        UsersCmd::List { .. } => UsersAction::List,
    })
}

#[derive(Subcommand)]
enum JobsCmd {
    /// Runs the jobs (those of the `jobs` setting, or all when it is
    /// `none`) under the same locks as agents.
    Run {
        #[command(flatten)]
        flags: Flags,
        /// One pass of each job, a JSON report line per job, then exit.
        #[arg(long)]
        once: bool,
        /// Only this job: retention, compaction, cleaner, tables or gc.
        #[arg(long)]
        job: Option<String>,
    },
}

/// Every flag is also a `SILT_<NAME>` environment variable and a key in the
/// settings file; flags win over both.
#[derive(Args)]
struct Flags {
    /// Settings file (TOML); keys as in the README's configuration table.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cluster name (prefix of every metadata key).
    #[arg(long)]
    cluster: Option<String>,
    /// This agent's id (stable across restarts).
    #[arg(long)]
    agent_id: Option<String>,
    /// etcd endpoints, comma-separated (silt agent).
    #[arg(long)]
    etcd: Option<String>,
    /// s3://bucket[/prefix] or file:///path (silt agent).
    #[arg(long)]
    bucket: Option<String>,
    /// Kafka listener address.
    #[arg(long)]
    listen: Option<String>,
    /// Address given to clients (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// This agent's zone.
    #[arg(long)]
    zone: Option<String>,
    /// Directory for the bucket, metadata and cache (silt dev).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Block cache directory.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Memory part of the block cache, e.g. 256MiB.
    #[arg(long)]
    cache_memory: Option<String>,
    /// Disk part of the block cache, e.g. 2GiB.
    #[arg(long)]
    cache_disk: Option<String>,
    /// HTTP endpoint for /health and /metrics.
    #[arg(long)]
    http: Option<String>,
    /// HTTP API address (Confluent REST v3 produce, fetch, topics, offsets);
    /// silt dev serves it on 127.0.0.1:8082 unless told otherwise.
    #[arg(long)]
    rest: Option<String>,
    /// No HTTP API (silt dev).
    #[arg(long, conflicts_with = "rest")]
    no_rest: bool,
    /// Partitions of auto-created topics.
    #[arg(long)]
    default_partitions: Option<u32>,
    /// Turn topic auto-creation off.
    #[arg(long)]
    no_auto_create: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

impl Flags {
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o: Vec<(&'static str, String)> = Vec::new();
        let mut add = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                o.push((k, v));
            }
        };
        add("cluster", self.cluster.clone());
        add("agent_id", self.agent_id.clone());
        add("etcd", self.etcd.clone());
        add("bucket", self.bucket.clone());
        add("listen", self.listen.clone());
        add("advertise", self.advertise.clone());
        add("zone", self.zone.clone());
        add(
            "data_dir",
            self.data_dir.as_ref().map(|d| d.display().to_string()),
        );
        add(
            "cache_dir",
            self.cache_dir.as_ref().map(|d| d.display().to_string()),
        );
        add("cache_memory", self.cache_memory.clone());
        add("cache_disk", self.cache_disk.clone());
        add("http", self.http.clone());
        add("rest", self.rest.clone());
        add(
            "default_partitions",
            self.default_partitions.map(|p| p.to_string()),
        );
        if self.no_auto_create {
            add("auto_create_topics", Some("false".into()));
        }
        if self.log_json {
            add("log_format", Some("json".into()));
        }
        o
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (flags, agent) = match &cli.command {
        Cmd::Dev(f) => (f, false),
        Cmd::Agent(f) => (f, true),
        Cmd::Jobs {
            command: JobsCmd::Run { flags, .. },
        } => (flags, true),
        Cmd::Users {
            command:
                UsersCmd::Add { flags, .. } | UsersCmd::Delete { flags, .. } | UsersCmd::List { flags },
        } => (flags, true),
    };
    let users = match &cli.command {
        Cmd::Users { command } => match users_action(command) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("silt: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        _ => None,
    };
    let jobs = match &cli.command {
        Cmd::Jobs {
            command: JobsCmd::Run { once, job, .. },
        } => {
            match job
                .as_deref()
                .map(|j| (j, silt_tiering::jobs::Job::parse(j)))
            {
                Some((j, None)) => {
                    eprintln!("silt: --job {j:?}: unknown job (known: retention, compaction, cleaner, tables, gc)");
                    return std::process::ExitCode::from(2);
                }
                Some((_, job)) => Some((*once, job)),
                None => Some((*once, None)),
            }
        }
        _ => None,
    };
    let settings = Settings::load(
        flags.config.as_deref(),
        std::env::vars(),
        &flags.overrides(),
    )
    .and_then(|s| {
        if users.is_some() {
            s.validate_etcd().map(|_| s)
        } else if agent {
            s.validate_agent().map(|_| s)
        } else {
            Ok(s)
        }
    });
    let settings = match settings {
        // silt dev serves the HTTP API unless told otherwise; if its port
        // is taken (another silt dev), it runs without.
        Ok(mut s) if !agent && s.rest.is_none() && !flags.no_rest => {
            s.rest = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8082)));
            s.rest_optional = true;
            s
        }
        Ok(mut s) if flags.no_rest => {
            s.rest = None;
            s
        }
        Ok(s) => s,
        Err(e) => {
            eprintln!("silt: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let faults = match TestFaults::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("silt: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Agents name themselves on every log line (`silt dev` is alone).
    let log_id = if agent {
        settings.agent_id()
    } else {
        settings.agent_id.clone()
    };
    init_logging(&settings.log_format, &log_id);
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
        if let Some(action) = users {
            silt_agent::cluster::users(&settings, action).await
        } else if let Some((once, job)) = jobs {
            silt_agent::cluster::run_jobs(settings, faults, once, job, shutdown).await
        } else if agent {
            silt_agent::cluster::run(settings, faults, shutdown).await
        } else {
            silt_agent::dev::run(settings, faults, shutdown).await
        }
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

/// Logs to stderr; every line names the agent (`agent=ID` first, or an
/// `agent` field in JSON) when it has an id, so that logs of many agents
/// gathered in one place can be told apart.
fn init_logging(format: &str, agent: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let agent = (!agent.is_empty()).then(|| agent.to_string());
    if format == "json" {
        let inner = tracing_subscriber::fmt::format().json();
        builder
            .event_format(WithAgent {
                agent,
                inner,
                json: true,
            })
            .init();
    } else {
        let inner = tracing_subscriber::fmt::format();
        builder
            .event_format(WithAgent {
                agent,
                inner,
                json: false,
            })
            .init();
    }
}

/// An event format that adds the agent's id to every line.
struct WithAgent<F> {
    agent: Option<String>,
    inner: F,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithAgent<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(agent) = &self.agent else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "agent={agent} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let id = serde_json::to_string(agent).map_err(|_| std::fmt::Error)?;
                write!(writer, "{{\"agent\":{id},{rest}")
            }
            None => writer.write_str(&line),
        }
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
