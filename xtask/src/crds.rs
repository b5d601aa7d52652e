//! CRD generation.
use anyhow::Result;

pub fn run(_check: bool) -> Result<()> {
    anyhow::bail!("not implemented yet")
}
