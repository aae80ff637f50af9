//! The policy core: a pure function of (stream state, forecast, now) to a
//! plan, so the same decisions are made embedded, in the simulator and in
//! table tests.
//!
//! Sizing is a threshold policy with two look-aheads. The need is the
//! larger of the measured rate pushed forward by its current growth (to the
//! end of what a decision now serves) and the measured rate plus the
//! forecast's rise over the growth horizon (of its mean with the headroom,
//! or of its upper band at full capacity; see `Peak::load`): the
//! forecast is a floor under reactive scaling, never a replacement, and
//! measured load above it scales at once, ignoring the change budget
//! without spending it. A need above the per-shard target grows the stream
//! so the need fills `GROWTH_FILL` of it, which leaves room for the load to
//! rise before the next change. While the measurement is inside the
//! forecast's band, the forecast bounds both guesses about the rise: the
//! growth's straight line stops at the band's upper edge, and at a crest
//! the forecast foresees the room ends there too (on a trace with hourly
//! spikes, the room held a third more shards than the spike's top for
//! the minutes until the merge).
//! Shrinking needs both measurements and forecast to allow it: the
//! measured need below `SHRINK_BELOW` of the per-shard target for
//! `scale_down_stable`, not within `scale_down_cooldown` of a split, within
//! the change budget (the rounds of one descent spend it once), and the
//! forecast's mean over the sizing horizon fitting the smaller topology (a
//! merge the forecast would undo at once is not worth a change). Where the
//! forecast foresees the low (its upper band over the sizing horizon fits
//! the smaller topology, the surplus is at least half the shards and the
//! fall has ended), both waits are `scale_down_foreseen` instead: after a
//! spike, the full waits held its shards for minutes at a tenth of their
//! load. A descent's later rounds wait for nothing. A forecast the
//! measurement has fallen clearly below (it still carries a burst that
//! has ended) counts by its shape alone, as a ratio on the measured rate.
//! The forecast's band does not hold capacity back:
//! on bursty load the band an hour ahead is about twice the mean, and
//! holding shards for it cost more than reactive scaling saves (see the
//! simulator section of BENCHMARKS.md). Moves between directories come from
//! the placement solver when nothing else changes.

use crate::api::ActionKind;
use crate::config::AutoscalerConfig;
use crate::placement::{self, ShardLoad};

mod view;
pub use view::{ForecastView, Peak};

/// A growth sizes the stream so the need fills this much of the per-shard
/// target (60% of capacity at 20% headroom, the reactive baseline's
/// target): load creeping up through one shard boundary after another then
/// costs a change per two fifths of growth, not one per boundary.
const GROWTH_FILL: f64 = 0.72;
/// A shrink is due when the measured need stays below this much of the
/// per-shard target (45% of capacity at 20% headroom); it shrinks to
/// `GROWTH_FILL`, so the band between the two keeps it from flapping.
const SHRINK_BELOW: f64 = 0.54;

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub capacity_per_shard_eps: f64,
    pub headroom: f64,
    /// Time from a decision to the capacity being there.
    pub lead_ms: u64,
    /// Time between decisions.
    pub interval_ms: u64,
    pub scale_down_cooldown_ms: u64,
    pub scale_down_stable_ms: u64,
    /// Both waits before a shrink the forecast foresees (see
    /// `foreseen_low`).
    pub scale_down_foreseen_ms: u64,
    /// Change rounds (ticks that change the topology) allowed per window.
    pub change_budget: u32,
    pub budget_window_ms: u64,
    pub max_splits_per_tick: u32,
    pub min_shards: u32,
    pub max_shards: u32,
    pub dirs: u32,
    pub move_gain_min: f64,
    /// Each merged pair must fit one shard (true for a real broker, where a
    /// merge puts both loads on one shard). The simulator's capacity model
    /// spreads load evenly over any shard count, as it does for its
    /// baselines, and turns this off.
    pub merge_pairs_must_fit: bool,
}

impl PolicyConfig {
    pub fn from_config(config: &AutoscalerConfig) -> Self {
        Self {
            capacity_per_shard_eps: config.capacity_per_shard_eps,
            headroom: config.headroom,
            lead_ms: config.interval.as_millis() as u64,
            interval_ms: config.interval.as_millis() as u64,
            scale_down_cooldown_ms: config.scale_down_cooldown.as_millis() as u64,
            scale_down_stable_ms: config.scale_down_stable.as_millis() as u64,
            scale_down_foreseen_ms: config.scale_down_foreseen.as_millis() as u64,
            change_budget: config.change_budget,
            budget_window_ms: config.budget_window.as_millis() as u64,
            max_splits_per_tick: config.max_splits_per_tick,
            min_shards: config.min_shards,
            max_shards: config.max_shards,
            dirs: config.dirs,
            move_gain_min: config.move_gain_min,
            merge_pairs_must_fit: true,
        }
    }

    /// Load one shard is sized for (capacity less headroom).
    pub fn shard_target_eps(&self) -> f64 {
        self.capacity_per_shard_eps / (1.0 + self.headroom)
    }

    /// How far ahead of the measured rate a decision must size for: the
    /// measured rate is the mean over the last interval (half an interval
    /// old), and what is decided now serves from the lead until the next
    /// decision's change is in place, an interval and a lead later.
    fn growth_ahead_s(&self) -> f64 {
        (self.lead_ms as f64 + 1.5 * self.interval_ms as f64) / 1000.0
    }

    fn shards_for(&self, events_per_s: f64, per_shard: f64) -> u32 {
        let shards = (events_per_s.max(0.0) / per_shard).ceil();
        (shards.min(f64::from(u32::MAX)) as u32).clamp(self.min_shards, self.max_shards)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShardState {
    pub id: u32,
    pub dir: u32,
    /// Routing group (`""`: the default one); merges stay inside one.
    pub group: String,
    pub events_per_s: f64,
}

/// What the policy knows about one stream now.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamState {
    /// Open shards by routing group, in hash order within each group (so
    /// neighbours of one group are adjacent).
    pub shards: Vec<ShardState>,
    pub measured_eps: f64,
    /// Recent growth of the measured rate (events/s per second).
    pub growth_eps_per_s: f64,
    /// The measured rate's slope over the recent window, signed: a
    /// foreseen low waits while a fall is still under way.
    pub trend_eps_per_s: f64,
    pub last_split_ms: Option<u64>,
    /// Since when a smaller topology has been enough.
    pub low_since_ms: Option<u64>,
    /// Times of recent change rounds.
    pub changes_ms: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Shards after this tick's actions.
    pub target_shards: u32,
    /// The count the decision aims at: a stream at most doubles or halves
    /// per tick, so a larger change takes further rounds.
    pub goal_shards: u32,
    pub actions: Vec<ActionKind>,
    pub reasons: Vec<String>,
    /// The state's new `low_since_ms`.
    pub low_since_ms: Option<u64>,
    /// The actions count against the change budget. Growth that measured
    /// load needs now does not: it ignores the budget, and charging it
    /// would hold the shards a burst needed until the budget's window has
    /// passed it.
    pub spends_budget: bool,
}

pub fn decide(
    config: &PolicyConfig,
    state: &StreamState,
    forecast: &ForecastView,
    now_ms: u64,
) -> Plan {
    let shards = state.shards.len() as u32;
    let per_shard = config.shard_target_eps();
    // The forecast gives the shape and the measurement the level: the
    // nowcast's average follows the level minutes late. Its rise from now
    // to its peak goes on the measured rate, and a band as wide now as at
    // the peak adds nothing (sizing for its upper edge kept bursty streams
    // at twice their load). Without a model (hints alone), the
    // measurement is the level now.
    let now = Peak {
        mean_eps: forecast.mean_now_eps.unwrap_or(state.measured_eps),
        upper_eps: forecast.upper_now_eps.unwrap_or(state.measured_eps),
    };
    // Once the measurement is clearly below the band (two half-widths
    // under its mean), the forecast still carries a burst that has ended:
    // its rise is then taken as a ratio, since a rise in events/s from
    // its stale level would size for the burst again.
    let stale = match (forecast.mean_now_eps, forecast.upper_now_eps) {
        (Some(mean), Some(upper)) => state.measured_eps < mean - 2.0 * (upper - mean).max(0.0),
        _ => false,
    };
    // While the measurement is inside the band, the forecast knows where
    // the load goes better than a straight line: the growth's
    // extrapolation stops at the band's upper edge over the horizons
    // ahead. Measured load above the band is never held back.
    let inside = forecast
        .upper_now_eps
        .is_some_and(|upper| state.measured_eps <= upper);
    let foreseen = Peak::max(forecast.peak, forecast.peak_long)
        .map(|peak| peak.upper_eps)
        .filter(|_| !stale && inside);
    let extrapolated =
        state.measured_eps + state.growth_eps_per_s.max(0.0) * config.growth_ahead_s();
    let reactive = foreseen.map_or(extrapolated, |upper| {
        extrapolated.min(state.measured_eps.max(upper))
    });
    let on_measured = |peak: f64, now: f64| {
        if stale && now > 0.0 {
            state.measured_eps * (peak / now).max(1.0)
        } else {
            state.measured_eps + (peak - now).max(0.0)
        }
    };
    let headroom = config.headroom;
    let predicted = forecast
        .peak
        .map(|peak| on_measured(peak.load(headroom), now.load(headroom)));
    // A merge needs the forecast's expected load over the sizing horizon
    // to fit: its own level (its rise on the measurement merged more
    // readily and cost a fifth more changes than the reactive baseline on
    // a bursty trace), unless it is stale.
    let long_mean = forecast
        .peak_long
        .or(forecast.peak)
        .map(|p| match forecast.mean_now_eps {
            Some(mean) if stale => on_measured(p.mean_eps, mean),
            _ => p.mean_eps,
        });
    let mut reasons = vec![format!(
        "measured {:.0} ev/s (growth {:+.1}/s, {:.0} ev/s in {:.0} s), forecast needs {} soon ({}; the larger of its mean and its upper band less the headroom) and its mean peaks at {} over the sizing horizon, {} shards of {:.0} ev/s at {:.0}% headroom",
        state.measured_eps,
        state.growth_eps_per_s,
        reactive,
        config.growth_ahead_s(),
        predicted.map_or("none".into(), |p| format!("{p:.0} ev/s")),
        forecast.model,
        long_mean.map_or("none".into(), |p| format!("{p:.0} ev/s")),
        shards,
        config.capacity_per_shard_eps,
        config.headroom * 100.0,
    )];
    if stale {
        reasons.push(
            "measured is far below the forecast (a burst it still carries has ended): only its shape counts, as a ratio on the measured rate"
                .into(),
        );
    }
    if let Some(upper) = forecast
        .upper_now_eps
        .filter(|&upper| state.measured_eps > upper)
    {
        reasons.push(format!(
            "measured is above the forecast band ({upper:.0} ev/s): reactive sizing leads"
        ));
    }
    if reactive < extrapolated {
        reasons.push(format!(
            "growth extrapolated to {extrapolated:.0} ev/s, held at the forecast's upper band ({reactive:.0} ev/s), which the measurement is inside"
        ));
    }
    let need = reactive.max(predicted.unwrap_or(0.0));
    let target_up = config.shards_for(need, per_shard);
    if target_up > shards {
        let urgent = config
            .shards_for(reactive, per_shard)
            .saturating_sub(shards);
        let roomy = config.shards_for(need, per_shard * GROWTH_FILL);
        // At a crest the forecast foresees (its band over the sizing
        // horizon no higher than over the growth horizon), room for a
        // further rise is room for what the band's upper edge needs: more
        // is held idle until the merge.
        let crest = match (forecast.peak, forecast.peak_long) {
            (Some(near), Some(long)) => long.upper_eps <= near.upper_eps,
            _ => false,
        };
        let target = match foreseen.filter(|&upper| crest && need <= upper) {
            Some(upper) => roomy.min(config.shards_for(upper, per_shard).max(target_up)),
            None => roomy,
        };
        if target < roomy {
            reasons.push(format!(
                "the forecast's band crests within the sizing horizon: {target} shards hold its upper edge, no room beyond it"
            ));
        }
        return grow(config, state, now_ms, target, urgent, reasons);
    }
    // Shrinking: measured load must be low, and the forecast's mean must
    // fit what is left.
    if reactive < f64::from(shards) * per_shard * SHRINK_BELOW {
        let target = config
            .shards_for(reactive, per_shard * GROWTH_FILL)
            .max(config.shards_for(long_mean.unwrap_or(0.0), per_shard))
            .max(target_up)
            .min(shards);
        // The forecast's load over the sizing horizon, its upper band at
        // full capacity: a level while it tracks the measurement, a shape
        // once it is stale.
        let long_load = forecast.peak_long.filter(|_| stale || inside).map(|p| {
            if stale {
                on_measured(p.load(headroom), now.load(headroom))
            } else {
                p.load(headroom)
            }
        });
        if target < shards {
            let foreseen = foreseen_low(config, state, long_load, target);
            return shrink(config, state, now_ms, target, foreseen, reasons);
        }
        reasons.push(format!(
            "measured load would fit fewer shards, but the forecast's mean over the sizing horizon needs {shards}"
        ));
    }
    let mut plan = Plan {
        target_shards: shards,
        goal_shards: shards,
        actions: Vec::new(),
        reasons,
        low_since_ms: None,
        spends_budget: true,
    };
    if budget_left(config, state, now_ms) > 0 {
        let loads: Vec<ShardLoad> = state
            .shards
            .iter()
            .map(|s| ShardLoad {
                shard: s.id,
                dir: s.dir,
                events_per_s: s.events_per_s,
            })
            .collect();
        for step in placement::rebalance(&loads, config.dirs, 1, config.move_gain_min) {
            plan.reasons.push(format!(
                "busiest directory lowered by at least {:.0}% by moving shard {} to directory {}",
                config.move_gain_min * 100.0,
                step.shard,
                step.dir
            ));
            plan.actions.push(ActionKind::Move {
                shard: step.shard,
                dir: step.dir,
            });
        }
    }
    plan
}

/// Whether measured load is above what `shards` are sized for. The loop
/// checks this between its ticks, at every watch interval: a burst then
/// waits a second for its growth, not up to a whole interval.
pub fn overloaded(config: &PolicyConfig, shards: u32, measured_eps: f64) -> bool {
    measured_eps > f64::from(shards) * config.shard_target_eps()
}

/// The policy between ticks: `decide`'s plan when the measurement is
/// `overloaded` and the plan grows the stream; merges and moves wait for
/// the tick.
pub fn watch(
    config: &PolicyConfig,
    state: &StreamState,
    forecast: &ForecastView,
    now_ms: u64,
) -> Option<Plan> {
    let shards = state.shards.len() as u32;
    if !overloaded(config, shards, state.measured_eps) {
        return None;
    }
    let mut plan = decide(config, state, forecast, now_ms);
    if plan.target_shards <= shards {
        return None;
    }
    plan.reasons.insert(
        0,
        format!(
            "between ticks: measured {:.0} ev/s is above the {:.0} ev/s {shards} shards are sized for",
            state.measured_eps,
            f64::from(shards) * config.shard_target_eps()
        ),
    );
    Some(plan)
}

fn budget_left(config: &PolicyConfig, state: &StreamState, now_ms: u64) -> u32 {
    let window_start = now_ms.saturating_sub(config.budget_window_ms);
    let used = state
        .changes_ms
        .iter()
        .filter(|&&at| at > window_start)
        .count() as u32;
    config.change_budget.saturating_sub(used)
}

fn grow(
    config: &PolicyConfig,
    state: &StreamState,
    now_ms: u64,
    target: u32,
    urgent: u32,
    mut reasons: Vec<String>,
) -> Plan {
    let shards = state.shards.len() as u32;
    // Forecast-driven growth spends the budget; measured overload does not.
    if urgent == 0 && budget_left(config, state, now_ms) == 0 {
        reasons.push(format!(
            "forecast asks for {target} shards, but the change budget ({} per {} s) is spent",
            config.change_budget,
            config.budget_window_ms / 1000
        ));
        return Plan {
            target_shards: shards,
            goal_shards: shards,
            actions: Vec::new(),
            reasons,
            low_since_ms: None,
            spends_budget: true,
        };
    }
    // One split per shard per tick, hottest first.
    let count = (target - shards)
        .min(config.max_splits_per_tick)
        .min(shards) as usize;
    let mut hottest: Vec<&ShardState> = state.shards.iter().collect();
    hottest.sort_by(|a, b| {
        b.events_per_s
            .total_cmp(&a.events_per_s)
            .then(a.id.cmp(&b.id))
    });
    let actions: Vec<ActionKind> = hottest
        .iter()
        .take(count)
        .map(|s| ActionKind::Split { shard: s.id })
        .collect();
    reasons.push(format!(
        "grow to {target} shards ({} now{}): {} split(s) this tick",
        shards,
        if urgent > 0 {
            ", measured load needs it now"
        } else {
            ""
        },
        actions.len()
    ));
    Plan {
        target_shards: shards + actions.len() as u32,
        goal_shards: target,
        actions,
        reasons,
        low_since_ms: None,
        spends_budget: urgent == 0,
    }
}

/// Whether a shrink to `target` shards may come after
/// `scale_down_foreseen` rather than the full waits. The waits are there
/// for a low that does not last; a forecast that tracks the stream can
/// say that it will. All of:
/// - the surplus is large: `target` is at most half the shards. The
///   shards it frees for the minutes saved are worth the change; a
///   smaller surplus costs little to hold, and shrinking it sooner made
///   slowly falling and bursty streams change in more, smaller steps
///   (1.3x the reactive baseline's changes in the simulator).
/// - the forecast's load over the sizing horizon, `long_load` (its upper
///   band at full capacity and its mean at the target), fits `target`;
/// - the fall has ended: the measured trend over the growth horizon
///   would not bring a further shrink after this one, so the stream
///   shrinks once, to where the load settled.
fn foreseen_low(
    config: &PolicyConfig,
    state: &StreamState,
    long_load: Option<f64>,
    target: u32,
) -> bool {
    let per_shard = config.shard_target_eps();
    let shards = state.shards.len() as u32;
    let heading_to = state.measured_eps + state.trend_eps_per_s.min(0.0) * config.growth_ahead_s();
    let falling = heading_to < f64::from(target) * per_shard * SHRINK_BELOW
        && config.shards_for(heading_to, per_shard * GROWTH_FILL) < target;
    2 * target <= shards
        && long_load.is_some_and(|load| config.shards_for(load, per_shard) <= target)
        && !falling
}

fn shrink(
    config: &PolicyConfig,
    state: &StreamState,
    now_ms: u64,
    target: u32,
    foreseen: bool,
    mut reasons: Vec<String>,
) -> Plan {
    let shards = state.shards.len() as u32;
    let low_since = state.low_since_ms.unwrap_or(now_ms);
    let hold = |reasons: &mut Vec<String>, why: String| {
        reasons.push(format!(
            "{target} shards would do ({shards} now), but {why}"
        ));
    };
    let stable_ms = now_ms - low_since.min(now_ms);
    // Merges halve a stream at most per tick, so coming down from a burst
    // takes several rounds; those after the first of one low period (any
    // growth ends the period) are one change with it. The budget is
    // against flapping, and a descent does not flap.
    let continuing = state
        .low_since_ms
        .is_some_and(|since| state.changes_ms.iter().any(|&at| at >= since));
    let mut plan = Plan {
        target_shards: shards,
        goal_shards: shards,
        actions: Vec::new(),
        reasons: Vec::new(),
        low_since_ms: Some(low_since),
        spends_budget: !continuing,
    };
    // Only a descent's first round waits: the rest follow at once, or
    // one whose low the forecast no longer foresees would stop and count
    // as a new change when it resumes.
    let (stable_wait_ms, cooldown_ms) = if continuing {
        (0, 0)
    } else if foreseen {
        let wait = config.scale_down_foreseen_ms;
        (
            wait.min(config.scale_down_stable_ms),
            wait.min(config.scale_down_cooldown_ms),
        )
    } else {
        (config.scale_down_stable_ms, config.scale_down_cooldown_ms)
    };
    if foreseen && !continuing {
        reasons.push(format!(
            "the forecast foresees the low (its upper band over the sizing horizon fits {target} shards) and the fall has ended: {} s of low and after a split are enough",
            stable_wait_ms / 1000
        ));
    }
    if stable_ms < stable_wait_ms {
        hold(
            &mut reasons,
            format!(
                "only for {} s of the {} s required",
                stable_ms / 1000,
                stable_wait_ms / 1000
            ),
        );
    } else if let Some(split) = state
        .last_split_ms
        .filter(|&at| now_ms.saturating_sub(at) < cooldown_ms)
    {
        hold(
            &mut reasons,
            format!(
                "the last split was {} s ago",
                now_ms.saturating_sub(split) / 1000
            ),
        );
    } else if !continuing && budget_left(config, state, now_ms) == 0 {
        hold(&mut reasons, "the change budget is spent".into());
    } else {
        plan.actions = merges(config, state, (shards - target) as usize);
        plan.target_shards = shards - plan.actions.len() as u32;
        if !plan.actions.is_empty() {
            plan.goal_shards = target;
        }
        reasons.push(format!(
            "shrink towards {target} shards ({shards} now, low for {} s): {} merge(s){}",
            stable_ms / 1000,
            plan.actions.len(),
            if continuing {
                ", going on with this low period's descent (no budget spent)"
            } else {
                ""
            }
        ));
    }
    plan.reasons = reasons;
    plan
}

/// Disjoint adjacent pairs of one routing group, coldest first, whose
/// merged load fills at most `GROWTH_FILL` of the per-shard target (what a
/// growth would leave).
fn merges(config: &PolicyConfig, state: &StreamState, count_max: usize) -> Vec<ActionKind> {
    let limit = if config.merge_pairs_must_fit {
        config.shard_target_eps() * GROWTH_FILL
    } else {
        f64::INFINITY
    };
    let mut pairs: Vec<(f64, usize)> = state
        .shards
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0].group == pair[1].group)
        .map(|(i, pair)| (pair[0].events_per_s + pair[1].events_per_s, i))
        .filter(|(load, _)| *load <= limit)
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut used = vec![false; state.shards.len()];
    let mut actions = Vec::new();
    for (_, i) in pairs {
        if actions.len() >= count_max.min(config.max_splits_per_tick as usize) {
            break;
        }
        if used[i] || used[i + 1] {
            continue;
        }
        used[i] = true;
        used[i + 1] = true;
        actions.push(ActionKind::Merge {
            left: state.shards[i].id,
            right: state.shards[i + 1].id,
        });
    }
    actions
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
