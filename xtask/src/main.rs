//! `cargo xtask`: the project's own build tooling (CRD generation, tool installation, CI).

mod bench;
mod chart;
mod ci;
mod cluster;
mod crds;
mod tools;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "wayguard build tooling")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write crds/*.yaml and the Helm chart's copy from the Rust types.
    Crds {
        /// Fail instead of writing when the committed files are stale.
        #[arg(long)]
        check: bool,
        /// Instead, write the Gateway API CRDs (for a test cluster) to this file.
        #[arg(long)]
        gateway_api: Option<std::path::PathBuf>,
    },
    /// Install (idempotently, into a cache outside the repo) the tools the test tiers need.
    Tools(tools::ToolsArgs),
    /// Run the benchmarks (figures, not pass/fail).
    Bench,
    /// helm lint + helm template of charts/wayguard, with assertions on the output.
    Chart,
    /// Run a local etcd + kube-apiserver until DIR/stop exists (development).
    Cluster(cluster::ClusterArgs),
    /// Run everything CI runs: fmt, clippy, CRD staleness, and every test tier.
    Ci(ci::CiArgs),
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Crds {
            check,
            gateway_api: Some(path),
        } => {
            let _ = check;
            crds::write_gateway_api(&path)
        }
        Command::Crds {
            check,
            gateway_api: None,
        } => crds::run(check),
        Command::Tools(args) => tools::run(args),
        Command::Bench => bench::run(),
        Command::Chart => chart::run(),
        Command::Cluster(args) => cluster::run(args),
        Command::Ci(args) => ci::run(args),
    }
}
