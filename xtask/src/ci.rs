//! The CI pipeline.
use anyhow::Result;

#[derive(clap::Args)]
pub struct CiArgs {}

pub fn run(_args: CiArgs) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
