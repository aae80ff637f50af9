//! One stream's turn in a tick (or the watch between ticks, or an
//! `optimize` call): sample and observe under the lock, describe and plan,
//! apply through `TopologyControl` without the lock, record.

use std::sync::atomic::Ordering;

use crate::api::{Action, ActionKind, Decision};
use crate::control::{ChangeReport, ControlError, TopologyControl};
use crate::metrics::MetricsSource;
use crate::policy::{self, ShardState, StreamState};

use super::stream::{Refit, StreamEntry};
use super::{Autoscaler, STREAMS_MAX};

/// Why a stream is planned, which decides what its plan may do.
#[derive(Debug, Clone, Copy)]
pub(super) enum Turn {
    /// The loop's tick: applies unless in dry mode, records a decision that
    /// changes something or sees an anomaly.
    Tick,
    /// `optimize`: applies if `apply`, always records.
    Optimize { apply: bool },
    /// The watch between ticks, on the rate it measured: growth only.
    Watch { measured_eps: f64 },
}

impl<C: TopologyControl, M: MetricsSource> Autoscaler<C, M> {
    /// Samples one stream; false when it has no sample or is over the
    /// limit. A refit this sample makes due runs between two short holds
    /// of the lock, so /predict_load and the rest never wait on a fit.
    pub(super) fn observe(&self, name: &str, now_ms: u64) -> bool {
        let Some(sample) = self.metrics.sample(name) else {
            return false;
        };
        let (measured, refit) = {
            let mut shared = self.shared.lock();
            if !shared.streams.contains_key(name) {
                if shared.streams.len() >= STREAMS_MAX {
                    self.counters
                        .streams_ignored
                        .fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                shared
                    .streams
                    .insert(name.to_string(), StreamEntry::new(name, &self.config));
            }
            let entry = shared.streams.get_mut(name).expect("inserted above");
            entry.record(sample, now_ms, &self.config)
        };
        let refit = refit.map(Refit::run);
        let mut shared = self.shared.lock();
        let shared = &mut *shared;
        let hints = shared.hints.for_stream(name);
        let Some(entry) = shared.streams.get_mut(name) else {
            return false;
        };
        entry.settle(refit, measured, now_ms);
        entry.anomaly = measured.and_then(|measured| {
            entry.anomaly(now_ms, measured, &hints, self.config.anomaly_sigma)
        });
        true
    }

    /// Plans one stream for `turn` and carries the plan out unless the turn
    /// is a dry run. Returns the decision when it was recorded.
    pub(super) async fn plan_and_apply(
        &self,
        name: &str,
        now_ms: u64,
        turn: Turn,
    ) -> Option<Decision> {
        let (apply, always) = match turn {
            Turn::Tick => (self.config.enabled, false),
            Turn::Optimize { apply } => (apply, true),
            Turn::Watch { .. } => (true, false),
        };
        let topology = match self.control.describe(name).await {
            Ok(topology) => topology,
            Err(err) => {
                tracing::debug!(stream = name, %err, "autoscaler cannot describe the stream");
                return None;
            }
        };
        let (plan, view, anomaly, shards_before) = {
            let mut shared = self.shared.lock();
            let hints = shared.hints.for_stream(name);
            let entry = shared.streams.get_mut(name)?;
            let mut open: Vec<_> = topology.open_shards().collect();
            open.sort_by(|a, b| (&a.group, a.hash_start).cmp(&(&b.group, b.hash_start)));
            let rate_of = |id: u32| {
                entry
                    .rates
                    .as_ref()
                    .and_then(|r| r.shards.iter().find(|s| s.shard == id))
                    .map_or(0.0, |s| s.events_per_s)
            };
            let state = StreamState {
                shards: open
                    .iter()
                    .map(|s| ShardState {
                        id: s.id,
                        dir: s.dir,
                        group: s.group.clone(),
                        events_per_s: rate_of(s.id),
                    })
                    .collect(),
                measured_eps: match turn {
                    Turn::Watch { measured_eps } => measured_eps,
                    _ => entry.rates.as_ref().map_or(0.0, |r| r.events_per_s),
                },
                growth_eps_per_s: entry.growth_eps_per_s(),
                trend_eps_per_s: entry.trend_eps_per_s(),
                last_split_ms: entry.last_split_ms,
                low_since_ms: entry.low_since_ms,
                changes_ms: entry.changes_ms.iter().copied().collect(),
            };
            let span_ms = self.policy.lead_ms + self.config.horizon.as_millis() as u64;
            let long_span_ms = self.policy.lead_ms + self.config.sizing_horizon.as_millis() as u64;
            let view = entry.view(now_ms, span_ms, long_span_ms, &hints);
            let (plan, anomaly) = match turn {
                // The tick's anomaly is the tick's to record.
                Turn::Watch { .. } => (policy::watch(&self.policy, &state, &view, now_ms)?, None),
                _ => (
                    policy::decide(&self.policy, &state, &view, now_ms),
                    entry.anomaly.take(),
                ),
            };
            entry.low_since_ms = plan.low_since_ms;
            entry.last_view = Some(view.clone());
            entry.last_target = plan.target_shards;
            (plan, view, anomaly, state.shards.len() as u32)
        };
        let mut actions = Vec::with_capacity(plan.actions.len());
        for kind in &plan.actions {
            actions.push(if apply {
                self.apply(name, kind).await
            } else {
                Action {
                    kind: kind.clone(),
                    applied: false,
                    created: Vec::new(),
                    error: None,
                }
            });
        }
        let mut shared = self.shared.lock();
        let applied = actions.iter().filter(|a| a.applied).count();
        if applied > 0 {
            let split = actions
                .iter()
                .any(|a| a.applied && matches!(a.kind, ActionKind::Split { .. }));
            if let Some(entry) = shared.streams.get_mut(name) {
                entry.note_change(now_ms, split, plan.spends_budget);
            }
        }
        if apply {
            self.counters
                .applied
                .fetch_add(applied as u64, Ordering::Relaxed);
        } else {
            self.counters
                .dry_run
                .fetch_add(actions.len() as u64, Ordering::Relaxed);
        }
        let failed = actions.iter().filter(|a| a.error.is_some()).count();
        self.counters
            .failed
            .fetch_add(failed as u64, Ordering::Relaxed);
        if anomaly.is_some() {
            self.counters.anomalies.fetch_add(1, Ordering::Relaxed);
        }
        if !(always || !actions.is_empty() || anomaly.is_some()) {
            return None;
        }
        let decision = Decision {
            at_ms: now_ms,
            stream: name.to_string(),
            actions,
            reasons: plan.reasons,
            anomalies: anomaly.into_iter().collect(),
            model: view.model,
            shards_before,
            shards_target: plan.target_shards,
            shards_goal: plan.goal_shards,
        };
        self.record(&mut shared, decision.clone());
        Some(decision)
    }

    async fn apply(&self, stream: &str, kind: &ActionKind) -> Action {
        let result: Result<ChangeReport, ControlError> = match *kind {
            ActionKind::Split { shard } => self.control.split(stream, shard, None).await,
            ActionKind::Merge { left, right } => self.control.merge(stream, left, right).await,
            ActionKind::Move { shard, dir } => self.control.move_shard(stream, shard, dir).await,
        };
        match result {
            Ok(report) => Action {
                kind: kind.clone(),
                applied: true,
                created: report.created,
                error: None,
            },
            Err(err) => {
                tracing::warn!(stream, ?kind, %err, "autoscaler change failed");
                Action {
                    kind: kind.clone(),
                    applied: false,
                    created: Vec::new(),
                    error: Some(err.to_string()),
                }
            }
        }
    }
}
