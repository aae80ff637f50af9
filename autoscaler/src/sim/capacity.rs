//! The capacity model the simulator scores policies on: a shard count that
//! changes a lead time after it is decided, demand checked against
//! `shards x capacity per shard` at every tick, over-provisioning as the
//! capacity above demand. Plus the two reference policies: the standard
//! reactive threshold policy and the oracle.

use std::collections::VecDeque;

use serde::Serialize;

/// A policy's provisioned shards over time and what they cost.
#[derive(Debug, Clone)]
pub struct Capacity {
    shards: u32,
    /// (effective at, shard count), in decision order.
    pending: VecDeque<(u64, u32)>,
    pub changes: u64,
    pub rounds: u64,
    pub operations: u64,
    over_ticks: u64,
    ticks: u64,
    over_provisioned: f64,
    demand: f64,
    shard_sum: f64,
    shards_max: u32,
}

/// A policy's score over a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub policy: String,
    pub lead_s: f64,
    /// % of ticks where demand exceeded capacity.
    pub over_capacity_pct: f64,
    /// Capacity above demand, as % of demand (shard-seconds).
    pub over_provisioned_pct: f64,
    /// Resize decisions.
    pub changes: u64,
    /// Ticks that changed the count: a decision to more than double or
    /// halve a stream takes several (Surge's splits and merges are
    /// pairwise; the baselines resize in one).
    pub rounds: u64,
    /// Shard operations (splits + merges) those needed.
    pub operations: u64,
    pub mean_shards: f64,
    pub max_shards: u32,
}

impl Capacity {
    pub fn new(shards: u32) -> Self {
        Self {
            shards,
            pending: VecDeque::new(),
            changes: 0,
            rounds: 0,
            operations: 0,
            over_ticks: 0,
            ticks: 0,
            over_provisioned: 0.0,
            demand: 0.0,
            shard_sum: 0.0,
            shards_max: shards,
        }
    }

    /// Shards serving now (changes whose lead has passed).
    pub fn serving(&mut self, now_ms: u64) -> u32 {
        while let Some(&(at, shards)) = self.pending.front() {
            if at > now_ms {
                break;
            }
            self.shards = shards;
            self.pending.pop_front();
        }
        self.shards
    }

    /// Shards once every decided change is in place.
    pub fn planned(&self) -> u32 {
        self.pending
            .back()
            .map_or(self.shards, |&(_, shards)| shards)
    }

    /// Decides a new count, in place at `now_ms + lead_ms`.
    pub fn resize(&mut self, now_ms: u64, lead_ms: u64, shards: u32) {
        if shards != self.planned() {
            self.changes += 1;
            self.next_round(now_ms, lead_ms, shards);
        }
    }

    /// Another round of the last decision (towards the count it aimed
    /// at): one change, executed over several ticks.
    pub fn next_round(&mut self, now_ms: u64, lead_ms: u64, shards: u32) {
        let planned = self.planned();
        if shards == planned {
            return;
        }
        self.rounds += 1;
        self.operations += u64::from(shards.abs_diff(planned));
        self.pending.push_back((now_ms + lead_ms, shards));
    }

    /// Scores one tick of `demand_eps` against what serves now.
    pub fn account(&mut self, now_ms: u64, demand_eps: f64, capacity_per_shard: f64) {
        let shards = self.serving(now_ms);
        let capacity = f64::from(shards) * capacity_per_shard;
        self.ticks += 1;
        if demand_eps > capacity {
            self.over_ticks += 1;
        }
        self.over_provisioned += (capacity - demand_eps).max(0.0);
        self.demand += demand_eps;
        self.shard_sum += f64::from(shards);
        self.shards_max = self.shards_max.max(shards);
    }

    pub fn score(&self, policy: &str, lead_ms: u64) -> Score {
        let ticks = self.ticks.max(1) as f64;
        Score {
            policy: policy.to_string(),
            lead_s: lead_ms as f64 / 1000.0,
            over_capacity_pct: 100.0 * self.over_ticks as f64 / ticks,
            over_provisioned_pct: if self.demand > 0.0 {
                100.0 * self.over_provisioned / self.demand
            } else {
                0.0
            },
            changes: self.changes,
            rounds: self.rounds,
            operations: self.operations,
            mean_shards: self.shard_sum / ticks,
            max_shards: self.shards_max,
        }
    }
}

/// The standard threshold policy: above `high` utilisation for one tick,
/// resize to `target` utilisation; below `low` for `low_for_ms`, resize
/// down to `target`.
#[derive(Debug, Clone)]
pub struct Reactive {
    pub high: f64,
    pub low: f64,
    pub target: f64,
    pub low_for_ms: u64,
    low_since_ms: Option<u64>,
}

impl Reactive {
    pub fn new(high: f64, low: f64, target: f64, low_for_ms: u64) -> Self {
        Self {
            high,
            low,
            target,
            low_for_ms,
            low_since_ms: None,
        }
    }

    /// The shard count this policy wants now, if it wants a change.
    pub fn decide(
        &mut self,
        now_ms: u64,
        measured_eps: f64,
        planned: u32,
        capacity_per_shard: f64,
    ) -> Option<u32> {
        let utilisation = measured_eps / (f64::from(planned) * capacity_per_shard);
        let sized = ((measured_eps / (self.target * capacity_per_shard)).ceil() as u32).max(1);
        if utilisation > self.high {
            self.low_since_ms = None;
            return (sized > planned).then_some(sized);
        }
        if utilisation >= self.low {
            self.low_since_ms = None;
            return None;
        }
        let since = *self.low_since_ms.get_or_insert(now_ms);
        if now_ms - since >= self.low_for_ms {
            self.low_since_ms = None;
            return (sized < planned).then_some(sized);
        }
        None
    }
}

/// The oracle: exactly demand x (1 + headroom) over the coming tick,
/// in place with no lead.
pub fn oracle_shards(
    demand_now: f64,
    demand_next: f64,
    headroom: f64,
    capacity_per_shard: f64,
) -> u32 {
    let peak = demand_now.max(demand_next);
    ((peak * (1.0 + headroom) / capacity_per_shard).ceil() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_take_effect_after_the_lead() {
        let mut capacity = Capacity::new(2);
        capacity.resize(1_000, 30_000, 5);
        assert_eq!(capacity.serving(20_000), 2);
        assert_eq!(capacity.planned(), 5);
        assert_eq!(capacity.serving(31_000), 5);
        capacity.resize(40_000, 30_000, 5);
        assert_eq!(capacity.changes, 1);
        assert_eq!(capacity.operations, 3);
        capacity.next_round(50_000, 30_000, 9);
        assert_eq!((capacity.changes, capacity.rounds), (1, 2));
        assert_eq!(capacity.operations, 7);
    }

    #[test]
    fn scores_over_capacity_and_over_provisioning() {
        let mut capacity = Capacity::new(2);
        capacity.account(0, 1000.0, 1000.0); // 100% over-provisioned
        capacity.account(10, 3000.0, 1000.0); // over capacity
        let score = capacity.score("p", 0);
        assert_eq!(score.over_capacity_pct, 50.0);
        assert!((score.over_provisioned_pct - 25.0).abs() < 1e-9);
        assert_eq!(score.max_shards, 2);
    }

    #[test]
    fn reactive_thresholds() {
        let mut reactive = Reactive::new(0.8, 0.4, 0.6, 300_000);
        // 85% of 10 shards: up to 1.0/0.6 of demand.
        assert_eq!(reactive.decide(0, 8_500.0, 10, 1000.0), Some(15));
        assert_eq!(reactive.decide(0, 7_000.0, 10, 1000.0), None);
        // Low for less than 5 minutes: hold; then down.
        assert_eq!(reactive.decide(0, 3_000.0, 10, 1000.0), None);
        assert_eq!(reactive.decide(200_000, 3_000.0, 10, 1000.0), None);
        assert_eq!(reactive.decide(300_000, 3_000.0, 10, 1000.0), Some(5));
    }

    #[test]
    fn oracle_covers_the_coming_tick() {
        assert_eq!(oracle_shards(1000.0, 2000.0, 0.2, 1000.0), 3);
        assert_eq!(oracle_shards(0.0, 0.0, 0.2, 1000.0), 1);
    }
}
