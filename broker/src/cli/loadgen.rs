//! `surge loadgen ...`: runs the load generator, `surge-loadgen`, which is
//! built next to `surge` (it lives in its own crate so the broker does not
//! carry its plotting and reporting dependencies).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

#[derive(Debug, clap::Args)]
pub struct LoadgenArgs {
    /// Arguments for surge-loadgen (see `surge loadgen --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn loadgen_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .context("locating the surge binary")?
        .with_file_name("surge-loadgen");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "surge-loadgen not found next to surge ({}); build it with `cargo build --release -p surge-loadgen`",
        beside.display()
    )
}

pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let binary = loadgen_binary()?;
    let status =
        tokio::task::spawn_blocking(move || Command::new(&binary).args(&args.args).status())
            .await
            .context("waiting for surge-loadgen")?
            .context("starting surge-loadgen")?;
    if !status.success() {
        bail!("surge-loadgen exited with {status}");
    }
    Ok(())
}
