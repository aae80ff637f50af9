//! `surge optimize [STREAM] [--dry-run]`: runs the autoscaler's policy now
//! (`POST /optimize_topology`) and prints each decision with its actions
//! and reasons; `--dry-run` shows the plan without applying it.

use surge_autoscaler::{Action, ActionKind};
use surge_broker::http::autoscale::{OptimizeRequest, OptimizeResponse};

use super::HttpAddr;

#[derive(Debug, clap::Args)]
pub struct OptimizeArgs {
    /// One stream (default: all).
    stream: Option<String>,
    /// Plan only: show the changes without applying them.
    #[arg(long)]
    dry_run: bool,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    http: HttpAddr,
}

pub async fn run(args: OptimizeArgs) -> anyhow::Result<()> {
    let request = OptimizeRequest {
        stream: args.stream,
        dry_run: args.dry_run,
    };
    let body = serde_json::to_string(&request)?;
    let answer: OptimizeResponse = args
        .http
        .call("POST", "/optimize_topology", Some(body))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if !answer.autoscaler_enabled {
        println!("(the autoscaler is in dry mode: nothing is applied)");
    }
    for decision in &answer.decisions {
        let towards = if decision.shards_goal != decision.shards_target {
            format!(", towards {}", decision.shards_goal)
        } else {
            String::new()
        };
        println!(
            "{}: {} -> {} shards{towards} (model {})",
            decision.stream, decision.shards_before, decision.shards_target, decision.model
        );
        for action in &decision.actions {
            println!("  {}", describe(action));
        }
        if decision.actions.is_empty() {
            println!("  no change");
        }
        for reason in &decision.reasons {
            println!("  because {reason}");
        }
    }
    Ok(())
}

fn describe(action: &Action) -> String {
    let what = match &action.kind {
        ActionKind::Split { shard } => format!("split shard {shard}"),
        ActionKind::Merge { left, right } => format!("merge shards {left} and {right}"),
        ActionKind::Move { shard, dir } => format!("move shard {shard} to directory {dir}"),
    };
    match (&action.error, action.applied) {
        (Some(error), _) => format!("{what}: failed: {error}"),
        (None, true) => format!("{what}: done, created {:?}", action.created),
        (None, false) => format!("{what}: planned"),
    }
}
