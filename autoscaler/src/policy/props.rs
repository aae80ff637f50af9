//! Property tests for `decide` (and `watch`, which runs it between ticks): whatever the loads, forecast, history of
//! changes and time (rates of zero, bursts far over any capacity, rates a
//! broken source made NaN or infinite), the plan never panics and is one a
//! broker can apply.

use proptest::prelude::*;

use super::*;

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0f64..5_000.0,
        2 => 0.0f64..1e9,
        1 => Just(0.0),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 1e300]),
    ]
}

fn peak() -> impl Strategy<Value = Option<Peak>> {
    prop::option::of((rate(), rate()).prop_map(|(mean_eps, upper_eps)| Peak {
        mean_eps,
        upper_eps,
    }))
}

fn view() -> impl Strategy<Value = ForecastView> {
    (
        prop::option::of(rate()),
        prop::option::of(rate()),
        peak(),
        peak(),
    )
        .prop_map(
            |(mean_now_eps, upper_now_eps, peak, peak_long)| ForecastView {
                model: "any".into(),
                mean_now_eps,
                upper_now_eps,
                peak,
                peak_long,
            },
        )
}

/// Shards in hash order, in one or two routing groups, with ids in any
/// order, and the policy's bookkeeping at any point of its life.
fn state() -> impl Strategy<Value = StreamState> {
    (
        prop::collection::vec((rate(), any::<bool>()), 1..40),
        rate(),
        prop_oneof![Just(0.0), -1e6f64..1e6],
        prop::option::of(0u64..4_000_000),
        prop::option::of(0u64..4_000_000),
        prop::collection::vec(0u64..4_000_000, 0..20),
    )
        .prop_map(|(shards, measured_eps, growth, split, low, changes)| {
            let split_at = shards.len() / 2;
            StreamState {
                shards: shards
                    .into_iter()
                    .enumerate()
                    .map(|(i, (events_per_s, hot))| ShardState {
                        id: (i as u32 * 7 + 3) % 101,
                        dir: u32::from(hot),
                        group: if i >= split_at && hot {
                            "hot".into()
                        } else {
                            String::new()
                        },
                        events_per_s,
                    })
                    .collect(),
                measured_eps,
                growth_eps_per_s: growth,
                trend_eps_per_s: growth,
                last_split_ms: split,
                low_since_ms: low,
                changes_ms: changes,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_plan_can_be_applied(
        state in state(),
        forecast in view(),
        now_ms in 0u64..5_000_000,
        dirs in 1u32..4,
    ) {
        let mut config = PolicyConfig::from_config(&AutoscalerConfig::new("/unused"));
        config.dirs = dirs;
        config.max_shards = 64;
        let shards = state.shards.len() as u32;
        let plan = decide(&config, &state, &forecast, now_ms);

        let ids: Vec<u32> = state.shards.iter().map(|s| s.id).collect();
        let mut touched = Vec::new();
        let (mut splits, mut merges) = (0u32, 0u32);
        for action in &plan.actions {
            match *action {
                ActionKind::Split { shard } => {
                    splits += 1;
                    touched.push(shard);
                }
                ActionKind::Merge { left, right } => {
                    merges += 1;
                    let at = ids.iter().position(|&id| id == left);
                    prop_assert!(at.is_some(), "merge of an unknown shard {left}");
                    let at = at.unwrap_or(0);
                    prop_assert_eq!(ids.get(at + 1), Some(&right), "not adjacent: {:?}", action);
                    prop_assert_eq!(&state.shards[at].group, &state.shards[at + 1].group);
                    touched.extend([left, right]);
                }
                ActionKind::Move { shard, dir } => {
                    prop_assert!(dir < dirs, "{action:?}");
                    touched.push(shard);
                }
            }
        }
        prop_assert!(touched.iter().all(|id| ids.contains(id)), "{:?}", plan.actions);
        let mut unique = touched.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), touched.len(), "a shard in two actions: {:?}", plan.actions);
        prop_assert!(splits == 0 || merges == 0, "{:?}", plan.actions);
        prop_assert_eq!(plan.target_shards, shards + splits - merges);
        prop_assert!(plan.target_shards <= config.max_shards.max(shards));
        prop_assert!(plan.target_shards >= config.min_shards.min(shards));
        if splits > 0 {
            prop_assert!(plan.goal_shards >= plan.target_shards);
        }
        if merges > 0 {
            prop_assert!(plan.goal_shards <= plan.target_shards);
        }
        prop_assert!(!plan.reasons.is_empty());
    }

    #[test]
    fn the_watch_only_splits(
        state in state(),
        forecast in view(),
        now_ms in 0u64..5_000_000,
    ) {
        let mut config = PolicyConfig::from_config(&AutoscalerConfig::new("/unused"));
        config.max_shards = 64;
        let shards = state.shards.len() as u32;
        match watch(&config, &state, &forecast, now_ms) {
            None => {}
            Some(plan) => {
                prop_assert!(overloaded(&config, shards, state.measured_eps));
                prop_assert!(plan.target_shards > shards, "{:?}", plan);
                prop_assert!(
                    plan.actions.iter().all(|a| matches!(a, ActionKind::Split { .. })),
                    "{:?}",
                    plan.actions
                );
            }
        }
    }
}
