//! `surge predict STREAM`: the forecast mean and prediction interval per
//! step, from `GET /predict_load`.

use surge_autoscaler::Prediction;

use super::{now_ms, parse_time, query_value, HttpAddr};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    stream: String,
    /// Start: unix ms, now, or +N[s|m|h] (default now).
    #[arg(long)]
    from: Option<String>,
    /// End: unix ms, now, or +N[s|m|h] (default one sizing horizon after the start).
    #[arg(long)]
    to: Option<String>,
    /// Milliseconds between points (default the autoscaler's interval).
    #[arg(long)]
    step: Option<u64>,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    http: HttpAddr,
}

pub async fn run(args: PredictArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let mut path = format!("/predict_load?stream={}", query_value(&args.stream));
    if let Some(from) = &args.from {
        path.push_str(&format!("&from={}", parse_time(from, now)?));
    }
    if let Some(to) = &args.to {
        path.push_str(&format!("&to={}", parse_time(to, now)?));
    }
    if let Some(step) = args.step {
        path.push_str(&format!("&step={step}"));
    }
    let prediction: Prediction = args.http.call("GET", &path, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&prediction)?);
        return Ok(());
    }
    println!(
        "stream {}  model {}  interval up to the {:.0}th percentile",
        prediction.stream,
        prediction.model,
        prediction.quantile * 100.0
    );
    println!(
        "{:>15} {:>9} {:>12} {:>12} {:>12}  HINT",
        "AT (UNIX MS)", "IN S", "MEAN EV/S", "LOW EV/S", "HIGH EV/S"
    );
    for point in &prediction.points {
        let ahead_s = (point.at_ms as i64 - now as i64) / 1000;
        println!(
            "{:>15} {:>9} {:>12.1} {:>12.1} {:>12.1}  {}",
            point.at_ms,
            ahead_s,
            point.mean_eps,
            point.lower_eps,
            point.upper_eps,
            if point.hinted { "yes" } else { "-" }
        );
    }
    Ok(())
}
