//! The autoscaler's own metrics in the Prometheus text format, appended to
//! whatever the broker writes on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::control::TopologyControl;
use crate::metrics::MetricsSource;

use super::Autoscaler;

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

impl<C: TopologyControl, M: MetricsSource> Autoscaler<C, M> {
    pub fn prometheus(&self, out: &mut String) {
        let c = &self.counters;
        counter(
            out,
            "surge_autoscaler_ticks_total",
            "Loop iterations.",
            c.ticks.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_watch_growths_total",
            "Growths the watch between ticks applied for measured overload.",
            c.watch_growths.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_changes_applied_total",
            "Topology changes applied.",
            c.applied.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_changes_failed_total",
            "Topology changes that failed.",
            c.failed.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_changes_dry_run_total",
            "Changes decided but not applied (dry mode or dry run).",
            c.dry_run.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_anomalies_total",
            "Measurements far outside the prediction interval.",
            c.anomalies.load(Ordering::Relaxed),
        );
        counter(
            out,
            "surge_autoscaler_streams_ignored_total",
            "Streams skipped over the stream limit.",
            c.streams_ignored.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP surge_autoscaler_ready 1 once state is loaded and a tick ran.\n# TYPE surge_autoscaler_ready gauge\nsurge_autoscaler_ready {}", u8::from(self.ready()));
        let shared = self.shared.lock();
        let mut names: Vec<&String> = shared.streams.keys().collect();
        names.sort();
        let gauges = [
            (
                "surge_autoscaler_measured_events_per_second",
                "Measured event rate.",
            ),
            (
                "surge_autoscaler_forecast_mean_events_per_second",
                "Forecast mean now.",
            ),
            (
                "surge_autoscaler_forecast_peak_upper_events_per_second",
                "Upper band peak over the growth horizon (the lead plus `horizon`).",
            ),
            (
                "surge_autoscaler_target_shards",
                "Shards the policy aims for.",
            ),
        ];
        for (index, (name, help)) in gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for stream in &names {
                let entry = &shared.streams[*stream];
                let view = entry.last_view.as_ref();
                let value = match index {
                    0 => entry.rates.as_ref().map(|r| r.events_per_s),
                    1 => view.and_then(|v| v.mean_now_eps),
                    2 => view.and_then(|v| v.peak).map(|p| p.upper_eps),
                    _ => Some(f64::from(entry.last_target)),
                };
                if let Some(value) = value {
                    let _ = writeln!(out, "{name}{{stream=\"{}\"}} {value}", label(stream));
                }
            }
        }
        let name = "surge_autoscaler_model_smape";
        let _ = writeln!(
            out,
            "# HELP {name} Rolling backtest sMAPE per model and horizon.\n# TYPE {name} gauge"
        );
        for stream in &names {
            for (model, short, long) in shared.streams[*stream].scores() {
                for (horizon, value) in [("short", short), ("day", long)] {
                    if let Some(value) = value {
                        let _ = writeln!(
                            out,
                            "{name}{{stream=\"{}\",model=\"{}\",horizon=\"{horizon}\"}} {value}",
                            label(stream),
                            model.name()
                        );
                    }
                }
            }
        }
    }
}
