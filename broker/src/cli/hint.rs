//! `surge hint STREAM --start +5m --end +20m --rate 3000`: tells the
//! autoscaler about load to come (`POST /hint_load`), so capacity is in
//! place when it starts.

use anyhow::bail;
use surge_autoscaler::{Hint, HintRequest};

use super::{now_ms, parse_time, HttpAddr};

#[derive(Debug, clap::Args)]
pub struct HintArgs {
    stream: String,
    /// When the load starts: unix ms, now, or +N[s|m|h].
    #[arg(long)]
    start: String,
    /// When it ends: unix ms or +N[s|m|h].
    #[arg(long)]
    end: String,
    /// Expected events/s inside the window.
    #[arg(long, conflicts_with = "multiplier", value_parser = finite)]
    rate: Option<f64>,
    /// Expected load as a multiple of the forecast.
    #[arg(long, value_parser = finite)]
    multiplier: Option<f64>,
    #[command(flatten)]
    http: HttpAddr,
}

/// JSON has no NaN or infinity: sent, they became `null`, and the broker
/// answered that no rate was given.
fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("expected a finite number, got {text:?}")),
    }
}

pub async fn run(args: HintArgs) -> anyhow::Result<()> {
    if args.rate.is_none() && args.multiplier.is_none() {
        bail!("give --rate EVENTS_PER_S or --multiplier X");
    }
    let now = now_ms();
    let request = HintRequest {
        stream: args.stream,
        start_ms: parse_time(&args.start, now)?,
        end_ms: parse_time(&args.end, now)?,
        rate_eps: args.rate,
        multiplier: args.multiplier,
    };
    let body = serde_json::to_string(&request)?;
    let hint: Hint = args.http.call("POST", "/hint_load", Some(body)).await?;
    let load = match (hint.rate_eps, hint.multiplier) {
        (Some(rate), _) => format!("{rate} ev/s"),
        (None, Some(multiplier)) => format!("{multiplier}x the forecast"),
        (None, None) => "the forecast".to_owned(),
    };
    println!(
        "hint {} for {}: {load} from {} to {} (unix ms)",
        hint.id, hint.stream, hint.start_ms, hint.end_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_finite_numbers() {
        assert_eq!(super::finite("2.5"), Ok(2.5));
        for text in ["nan", "inf", "-inf", "many"] {
            assert!(super::finite(text).is_err(), "{text}");
        }
    }
}
