//! The `weir` command line: `run` serves a configuration until SIGTERM or
//! SIGINT, `check` validates one and lists every problem.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use weir::config::Config;

/// Weir: a programmable edge gateway.
///
/// Weir accepts HTTP traffic, matches each request to a route from its
/// configuration file and forwards it to that route's upstream.
/// Start with `weir check -c weir.toml`, then `weir run -c weir.toml`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug` or `weir=debug,weir::access=info`
    /// (the RUST_LOG environment variable wins when set).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configuration until SIGTERM or SIGINT, then drain and exit.
    /// SIGHUP, or saving the configuration file, reloads it: a valid file
    /// is swapped in without dropping requests, an invalid one is reported
    /// and the running configuration stays.
    Run {
        /// Configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file: exit 0 if it is valid, or print every
    /// problem (file, line, key and why) and exit 1.
    Check {
        /// Configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            // Plugins are compiled and initialised with their
            // configurations, and every TLS file is loaded and checked, so
            // whatever would fail start-up fails the check.
            Ok(c) => {
                let mut problems: Vec<String> = Vec::new();
                let plugins = match weir::plugin::Plugins::load(&c) {
                    Ok((plugins, _)) => plugins.names().len(),
                    Err(errors) => {
                        problems.extend(errors.0.iter().map(ToString::to_string));
                        0
                    }
                };
                let mut tls = 0;
                for l in &c.listeners {
                    let Some(cfg) = &l.tls else { continue };
                    tls += 1;
                    if let Err(errors) = weir::tls::TlsListener::load(&l.name, cfg) {
                        problems.extend(
                            errors
                                .0
                                .iter()
                                .map(|e| format!("listener `{}`: TLS: {e}", l.name)),
                        );
                    }
                }
                for u in &c.upstreams {
                    let Some(cfg) = &u.tls else { continue };
                    if cfg.insecure_skip_verify {
                        eprintln!(
                            "warning: upstream `{}`: tls.insecure_skip_verify = true: its certificates are not verified, so anyone on the path can read and change its traffic",
                            u.name
                        );
                    }
                    if let Err(errors) = weir::tls::ClientTls::load(cfg, &weir::tls::provider()) {
                        problems.extend(
                            errors
                                .0
                                .iter()
                                .map(|e| format!("upstream `{}`: TLS: {e}", u.name)),
                        );
                    }
                }
                if problems.is_empty() {
                    println!(
                        "{}: ok ({} listeners, {tls} with TLS, {} upstreams, {} routes, {plugins} plugins)",
                        config.display(),
                        c.listeners.len(),
                        c.upstreams.len(),
                        c.routes.len(),
                    );
                    ExitCode::SUCCESS
                } else {
                    for e in &problems {
                        eprintln!("error: {e}");
                    }
                    eprintln!("{}: {} problem(s) found", config.display(), problems.len());
                    ExitCode::FAILURE
                }
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {e}");
                }
                eprintln!("{}: {} problem(s) found", config.display(), errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)
        .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    rt.block_on(weir::control::run(config, path))?;
    Ok(())
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
