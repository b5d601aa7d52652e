//! Tool installation (owned by the tools work; placeholder until it lands).
use anyhow::Result;

#[derive(clap::Args)]
pub struct ToolsArgs {}

pub fn run(_args: ToolsArgs) -> Result<()> {
    anyhow::bail!("tool installation is not implemented yet")
}
