//! The `flo` binary: `flo server start` runs the server; `flo bench` is the load tool;
//! `flo kv|queue|stream|ts|ns|cluster|status` are the client (`cli`).
//!
//! Exit codes: 0 success, 1 the server failed at run time (port taken, data directory locked,
//! io_uring unavailable), 2 bad command line or configuration. The client's: 0 success,
//! 1 the server answered with an error, 2 bad usage, 3 the server could not be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use flo::config::{Config, Durability, LogFormat, Overrides, DEFAULT_TOML};

mod bench;
mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "flo",
    version,
    about = "Flo: versioned KV, queues, streams and time series over HTTP/1.1"
)]
struct Cli {
    #[command(flatten)]
    client: cli::TopOpts,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run and manage the server.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Load generator: drives a workload against a running server and reports like fio.
    Bench(bench::BenchArgs),
    /// Drives the log writer in-process (group commit, fdatasync) and measures it.
    BenchLog(bench::log::LogBenchArgs),
    /// Client: the key-value store.
    Kv(cli::kv::KvArgs),
    /// Client: priority work queues.
    Queue(cli::queue::QueueArgs),
    /// Client: append-only streams and consumer groups.
    Stream(cli::stream::StreamArgs),
    /// Client: time series (line protocol writes, FloQL queries).
    Ts(cli::ts::TsArgs),
    /// Client: namespaces.
    Ns(cli::admin::NsArgs),
    /// Client: cluster status and partitions.
    Cluster(cli::admin::ClusterArgs),
    /// Client: the server's status.
    Status(cli::admin::StatusArgs),
}

#[derive(Subcommand, Debug)]
enum ServerCmd {
    /// Start the server (foreground; SIGTERM or SIGINT stops it cleanly).
    Start(StartArgs),
    /// Recover a stopped server's data directory without serving it and print each
    /// partition's state digest (SHA-256 of its snapshot section), one JSON line per partition.
    Digest(DigestArgs),
}

#[derive(Args, Debug)]
struct DigestArgs {
    /// Configuration file (default: $FLO_CONFIG, else ./flo.toml if present, else built-ins).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Shards (0 = one per CPU).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Partitions objects are hashed into.
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
}

#[derive(Args, Debug)]
struct StartArgs {
    /// Configuration file (default: $FLO_CONFIG, else ./flo.toml if present, else built-ins).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the default configuration as TOML and exit.
    #[arg(long)]
    default_config: bool,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to bind the API and metrics listeners to.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// API port.
    #[arg(long, value_name = "N")]
    dashboard_port: Option<u16>,
    /// Prometheus metrics port.
    #[arg(long, value_name = "N")]
    metrics_port: Option<u16>,
    /// Shards (0 = one per CPU).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Partitions objects are hashed into.
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// When mutations are acknowledged.
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// Require bearer tokens.
    #[arg(long)]
    auth: bool,
    /// Cut a shard's log at corruption (dropping what follows) instead of refusing to start.
    #[arg(long)]
    repair: bool,
    /// Log level or filter directive (overrides FLO_LOG and the file).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DurabilityArg {
    Sync,
    Async,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let top = cli.client;
    let client = |opts: &cli::ClientOpts| cli::Ctx::new(opts, &top);
    match cli.command {
        Cmd::Server(_) | Cmd::Bench(_) | Cmd::BenchLog(_)
            if ["host", "namespace", "token", "format"]
                .iter()
                .any(|id| matches.value_source(id) == Some(ValueSource::CommandLine)) =>
        {
            config_error("--host, --namespace, --token and --format before the command are for the client commands (kv, queue, stream, ts, ns, cluster, status)")
        }
        Cmd::Server(ServerCmd::Start(args)) => start(args),
        Cmd::Server(ServerCmd::Digest(args)) => digest(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::BenchLog(args) => bench::log::run(args),
        Cmd::Kv(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::kv::run(&ctx, a.cmd))
        }
        Cmd::Queue(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::queue::run(&ctx, a.cmd))
        }
        Cmd::Stream(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::stream::run(&ctx, a.cmd))
        }
        Cmd::Ts(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::ts::run(&ctx, a.cmd))
        }
        Cmd::Ns(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::admin::ns(&ctx, a.cmd))
        }
        Cmd::Cluster(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::admin::cluster(&ctx, a.cmd))
        }
        Cmd::Status(a) => {
            let ctx = client(&a.opts);
            cli::finish(&ctx, cli::admin::status(&ctx))
        }
    }
}

/// The configuration file to read: `--config`, else `$FLO_CONFIG`, else `./flo.toml` if present.
fn config_path(arg: Option<PathBuf>) -> Option<PathBuf> {
    arg.or_else(|| std::env::var_os("FLO_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let p = PathBuf::from("flo.toml");
            p.is_file().then_some(p)
        })
}

/// The configuration file's (or the built-in) configuration; a bad file is the error to print.
fn read_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn digest(args: DigestArgs) -> ExitCode {
    let path = config_path(args.config);
    let mut config = match read_config(path.as_ref()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    config.apply(&Overrides {
        data_dir: args.data_dir,
        shards: args.shards,
        partitions: args.partitions,
        ..Overrides::default()
    });
    let resolved = match config.validate(None) {
        Ok(r) => r,
        Err(mut e) => {
            e.file = path;
            return config_error(&e.to_string());
        }
    };
    flo::logging::init(&config.logging.level, config.logging.format);
    flo::server::fail_stop_on_panic();
    match flo::server::digest::run(config, resolved) {
        Ok(digests) => {
            for d in digests {
                println!("{}", d.json_line());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flo: {e}");
            ExitCode::from(1)
        }
    }
}

fn start(args: StartArgs) -> ExitCode {
    if args.default_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    let path = config_path(args.config.clone());
    let mut config = match read_config(path.as_ref()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    config.apply(&Overrides {
        data_dir: args.data_dir,
        bind: args.bind,
        dashboard_port: args.dashboard_port,
        metrics_port: args.metrics_port,
        shards: args.shards,
        partitions: args.partitions,
        durability: args.durability.map(|d| match d {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Async => Durability::Async,
        }),
        auth: args.auth,
        log_level: args.log_level.or_else(|| std::env::var("FLO_LOG").ok()),
        log_format: args.log_format,
    });
    let env_tokens = std::env::var("FLO_AUTH_TOKENS").ok();
    let resolved = match config.validate(env_tokens.as_deref()) {
        Ok(r) => r,
        Err(mut e) => {
            e.file = path.clone();
            return config_error(&e.to_string());
        }
    };
    flo::logging::init(&config.logging.level, config.logging.format);
    flo::server::fail_stop_on_panic();
    if !config.auth.enabled && (env_tokens.is_some() || !resolved.tokens.is_empty()) {
        tracing::warn!("tokens are configured but auth is off: enable it with --auth or [auth] enabled = true");
    }
    if let Some(p) = &path {
        tracing::info!(config = %p.display(), "configuration loaded");
    }
    match flo::server::run(config, resolved, flo::server::RunOptions { repair: args.repair }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("flo: {e}");
            ExitCode::from(1)
        }
    }
}

fn config_error(message: &str) -> ExitCode {
    eprintln!("flo: {message}");
    ExitCode::from(2)
}
