//! The command line (ARCHITECTURE.md "Command line").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wayguard: Istio and Solo auth policies for stock Envoy.
#[derive(Parser, Debug)]
#[command(name = "wayguard", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate resources: exit 0 when all are valid, else 1 with `FILE: Kind ns/name: field: message` lines.
    Validate {
        /// Files or directories (every .yaml/.yml/.json below a directory).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the Envoy configuration generated for a gateway as JSON (proto3 JSON mapping).
    ConfigDump {
        /// Directory of Kubernetes-style YAML.
        #[arg(long)]
        config_dir: PathBuf,
        /// The gateway, NAMESPACE/NAME.
        #[arg(long)]
        gateway: String,
    },
    /// Run the control plane.
    Serve {
        /// Run on a directory of Kubernetes-style YAML (watched for changes).
        #[arg(long, env = "WAYGUARD_CONFIG_DIR")]
        config_dir: Option<PathBuf>,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Validate { paths } => {
            let mut stdout = std::io::stdout().lock();
            match crate::validate::run(&paths, &mut stdout) {
                Ok(summary) if summary.errors == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::ConfigDump {
            config_dir,
            gateway,
        } => match crate::dump::run(config_dir, &gateway) {
            Ok(value) => match serde_json::to_string_pretty(&value) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Serve { config_dir } => {
            let Some(dir) = config_dir else {
                eprintln!(
                    "error: serve needs --config-dir DIR (the Kubernetes source is not implemented yet)"
                );
                return ExitCode::from(2);
            };
            let mut stdout = std::io::stdout().lock();
            let summary = match crate::validate::run(&[dir], &mut stdout) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            eprintln!(
                "loaded {} resources ({} errors, {} warnings); serving xDS is not implemented yet (issue 4)",
                summary.resources, summary.errors, summary.warnings
            );
            ExitCode::from(3)
        }
    }
}
