//! Table tests for `decide`: input load and forecast, expected plan.

use super::*;

const MIN_MS: u64 = 60_000;

fn config() -> PolicyConfig {
    let mut config = PolicyConfig::from_config(&AutoscalerConfig::new("/unused"));
    config.lead_ms = 30_000;
    config
}

fn state(loads: &[f64]) -> StreamState {
    StreamState {
        shards: loads
            .iter()
            .enumerate()
            .map(|(i, &load)| ShardState {
                id: i as u32 + 1,
                dir: 0,
                group: String::new(),
                events_per_s: load,
            })
            .collect(),
        measured_eps: loads.iter().sum(),
        growth_eps_per_s: 0.0,
        trend_eps_per_s: 0.0,
        last_split_ms: None,
        low_since_ms: None,
        changes_ms: Vec::new(),
    }
}

/// The band's upper edge over the sizing horizon goes on rising past the
/// growth horizon's (by this factor) in the fixtures below, so a growth
/// keeps its room; `crest` makes the two horizons' peaks one.
const STILL_RISING: f64 = 2.0;

fn forecast(mean: f64, upper: f64, peak: f64) -> ForecastView {
    ForecastView {
        model: "test".into(),
        mean_now_eps: Some(mean),
        upper_now_eps: Some(upper),
        peak: Some(Peak {
            mean_eps: mean,
            upper_eps: peak,
        }),
        peak_long: Some(Peak {
            mean_eps: mean,
            upper_eps: peak * STILL_RISING,
        }),
    }
}

/// A forecast whose mean rises from `now` to `peak`, its band 10% wide.
fn rising(now: f64, peak: f64) -> ForecastView {
    ForecastView {
        model: "test".into(),
        mean_now_eps: Some(now),
        upper_now_eps: Some(now * 1.1),
        peak: Some(Peak {
            mean_eps: peak,
            upper_eps: peak * 1.1,
        }),
        peak_long: Some(Peak {
            mean_eps: peak,
            upper_eps: peak * 1.1 * STILL_RISING,
        }),
    }
}

/// `view` with its band peaking within the growth horizon.
fn crest(mut view: ForecastView) -> ForecastView {
    view.peak_long = view.peak;
    view
}

fn flat(mean: f64) -> ForecastView {
    rising(mean, mean)
}

/// A hinted rate and no model yet.
fn hinted(rate: f64) -> ForecastView {
    let peak = Some(Peak {
        mean_eps: rate,
        upper_eps: rate,
    });
    ForecastView {
        peak,
        peak_long: peak,
        ..no_forecast()
    }
}

fn no_forecast() -> ForecastView {
    ForecastView {
        model: "none".into(),
        mean_now_eps: None,
        upper_now_eps: None,
        peak: None,
        peak_long: None,
    }
}

fn splits(plan: &Plan) -> Vec<u32> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            ActionKind::Split { shard } => Some(*shard),
            _ => None,
        })
        .collect()
}

fn merge_count(plan: &Plan) -> usize {
    plan.actions
        .iter()
        .filter(|a| matches!(a, ActionKind::Merge { .. }))
        .count()
}

#[test]
fn growth_table() {
    // Shards of 1000 ev/s at 20% headroom: 833 each at the target, 600
    // once a growth has left its room.
    // (shard loads, forecast, growth, expected target, expected split count)
    let cases: Vec<(Vec<f64>, ForecastView, f64, u32, usize)> = vec![
        // Comfortably inside 2 x 833 ev/s: nothing.
        (
            vec![600.0, 600.0],
            forecast(1200.0, 1400.0, 1500.0),
            0.0,
            2,
            0,
        ),
        // The forecast's upper band rises from 1400 to 2400 (2000 at the
        // target): +800 on the measured 1200 needs a third shard; the
        // growth sizes 2000 at 600 a shard (4), one split per shard now.
        (
            vec![600.0, 600.0],
            forecast(1200.0, 1400.0, 2400.0),
            0.0,
            4,
            2,
        ),
        // Its mean keeps the headroom: a rise of the mean from 1200 to 1700
        // needs a third shard though the band alone would not.
        (vec![600.0, 600.0], rising(1200.0, 1700.0), 0.0, 3, 1),
        // A band as wide now as at its peak adds nothing: 1400 measured
        // fits two shards, though the band's edge (1667 at the target)
        // would not.
        (
            vec![700.0, 700.0],
            forecast(1200.0, 2000.0, 2000.0),
            0.0,
            2,
            0,
        ),
        // No forecast yet: measured overload alone scales.
        (vec![1000.0, 900.0], no_forecast(), 0.0, 4, 2),
        // Growth until what is decided now stops serving (30 s lead + 1.5
        // x 10 s interval): 1600 + 40*45 = 3400 needs 5 shards, 6 with the
        // room.
        (vec![400.0; 4], flat(1600.0), 40.0, 6, 2),
        (vec![400.0; 4], flat(1600.0), 0.0, 4, 0),
        // Measured above the band: the measurement is the level, the
        // band's rise (833 to 1000 at the target) comes on top.
        (
            vec![900.0, 900.0],
            forecast(800.0, 1000.0, 1200.0),
            0.0,
            4,
            2,
        ),
        // Splits per tick are bounded by the shard count (one split each).
        (vec![3000.0], no_forecast(), 0.0, 2, 1),
        // A hint before any model is fitted: its rate over the measured
        // 1000 needs 9 shards at 600.
        (vec![500.0, 500.0], hinted(5000.0), 0.0, 4, 2),
    ];
    for (i, (loads, view, growth, target, count)) in cases.into_iter().enumerate() {
        let mut input = state(&loads);
        input.growth_eps_per_s = growth;
        let plan = decide(&config(), &input, &view, 10 * MIN_MS);
        assert_eq!(plan.target_shards, target, "case {i}: {:?}", plan.reasons);
        assert_eq!(splits(&plan).len(), count, "case {i}: {:?}", plan.reasons);
        assert!(!plan.reasons.is_empty(), "case {i}");
    }
}

#[test]
fn at_a_foreseen_crest_a_growth_leaves_no_room_past_the_band() {
    // 1200 ev/s measured on 2 shards; the band's upper edge rises from
    // 1400 to 2400 within the growth horizon (2000 at the target).
    let grow_to = |view: &ForecastView, loads: &[f64]| {
        let plan = decide(&config(), &state(loads), view, 0);
        (plan.target_shards, plan.reasons)
    };
    let view = forecast(1200.0, 1400.0, 2400.0);
    // Rising on past it: room for the rise, 2000 at 600 a shard.
    assert_eq!(grow_to(&view, &[600.0, 600.0]).0, 4);
    // Cresting there: 3 shards hold the upper edge (2400 at 800 each).
    let (target, reasons) = grow_to(&crest(view.clone()), &[600.0, 600.0]);
    assert_eq!(target, 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("crests")), "{reasons:?}");
    // A measurement above the band (1500 against 1400) is not what the
    // forecast foresaw: the room stays.
    let (target, reasons) = grow_to(&crest(view), &[750.0, 750.0]);
    assert_eq!(target, 4, "{reasons:?}");
}

#[test]
fn a_tracking_forecast_holds_the_extrapolated_growth_at_its_band() {
    // 1600 ev/s growing by 40/s: 3400 ev/s by the time the next change
    // is in place (45 s), 5 shards at the target.
    let plan_for = |view: &ForecastView| {
        let mut input = state(&[400.0; 4]);
        input.growth_eps_per_s = 40.0;
        decide(&config(), &input, view, 10 * MIN_MS)
    };
    // The measurement is inside a flat band whose upper edge is 1760
    // ahead: the line stops there, and 4 shards hold it.
    let held = plan_for(&crest(flat(1600.0)));
    assert!(held.actions.is_empty(), "{:?}", held.reasons);
    assert!(
        held.reasons
            .iter()
            .any(|r| r.contains("held at the forecast")),
        "{:?}",
        held.reasons
    );
    // Above the band (upper 1500), the extrapolation sizes: 6 with room.
    let mut outrun = crest(flat(1600.0));
    outrun.upper_now_eps = Some(1500.0);
    assert_eq!(plan_for(&outrun).target_shards, 6);
    // Without a forecast too.
    assert_eq!(plan_for(&no_forecast()).target_shards, 6);
}

#[test]
fn the_forecast_rises_from_the_measured_level() {
    // The nowcast's level (600) lags the measured 1500: the forecast's
    // rise to 900 is added to the measurement, not its own level.
    let lagging = ForecastView {
        mean_now_eps: Some(600.0),
        upper_now_eps: Some(700.0),
        ..forecast(900.0, 1000.0, 1000.0)
    };
    let plan = decide(&config(), &state(&[750.0, 750.0]), &lagging, 0);
    assert_eq!(splits(&plan).len(), 1, "{:?}", plan.reasons);
    assert_eq!(plan.target_shards, 3);
    // The same peak with no rise from now does not grow.
    let level = forecast(900.0, 1000.0, 1000.0);
    assert!(decide(&config(), &state(&[750.0, 750.0]), &level, 0)
        .actions
        .is_empty());
    // Nor does the sizing horizon's band, however wide.
    let mut calm = forecast(1200.0, 1300.0, 1500.0);
    calm.peak_long = Some(Peak {
        mean_eps: 1200.0,
        upper_eps: 4000.0,
    });
    assert!(decide(&config(), &state(&[600.0, 600.0]), &calm, 0)
        .actions
        .is_empty());
}

#[test]
fn splits_the_hottest_shards_first() {
    let plan = decide(
        &config(),
        &state(&[100.0, 900.0, 500.0, 800.0]),
        &forecast(2300.0, 2500.0, 4080.0),
        0,
    );
    // 2300 + a rise of 1100 = 3400: 5 shards at the target, 6 with room.
    assert_eq!(splits(&plan), vec![2, 4]);
}

#[test]
fn measured_overload_ignores_a_spent_budget_but_forecasts_do_not() {
    // (shard loads, change rounds in the window, forecast peak) -> plan.
    let decide_after = |loads: &[f64], changes: usize, peak: f64| {
        let mut input = state(loads);
        input.changes_ms = vec![MIN_MS; changes];
        decide(
            &config(),
            &input,
            &forecast(1200.0, 1300.0, peak),
            2 * MIN_MS,
        )
    };
    let plan = decide_after(&[600.0, 600.0], 20, 2400.0);
    assert!(plan.actions.is_empty(), "{:?}", plan.reasons);
    let plan = decide_after(&[600.0, 600.0], 11, 2400.0);
    assert!(!plan.actions.is_empty() && plan.spends_budget, "{plan:?}");
    let plan = decide_after(&[1000.0, 1000.0], 20, 1300.0);
    assert_eq!(splits(&plan).len(), 2, "{:?}", plan.reasons);
    // Nor does it spend the budget: a burst would hold its shards until
    // the budget's window had passed it.
    assert!(!plan.spends_budget);
}

#[test]
fn a_shrink_leaves_the_growth_room_and_what_the_forecast_needs() {
    // 1200 ev/s measured: low under 4 shards (below 450 each), and 2 at
    // 600 leave a growth's room.
    let shrink_to = |forecast_mean: f64| {
        let mut input = state(&[300.0; 4]);
        input.low_since_ms = Some(0);
        let view = rising(1200.0, forecast_mean);
        let plan = decide(&config(), &input, &view, 60 * MIN_MS);
        (merge_count(&plan), plan.target_shards)
    };
    assert_eq!(shrink_to(1500.0), (2, 2));
    // A forecast mean rising to 2400 over the sizing horizon needs 3 at 833.
    assert_eq!(shrink_to(2400.0), (1, 3));
}

#[test]
fn a_forecast_left_far_above_the_measurement_holds_its_shape_not_its_level() {
    // 1200 ev/s measured on 4 shards, low for 10 minutes.
    let shrink_to = |view: &ForecastView| {
        let mut input = state(&[300.0; 4]);
        input.low_since_ms = Some(50 * MIN_MS);
        decide(&config(), &input, view, 60 * MIN_MS).target_shards
    };
    // Inside its band, the forecast's level over the sizing horizon
    // (3000 ev/s, 4 shards at 833) holds every shard.
    assert_eq!(shrink_to(&rising(1300.0, 3000.0)), 4);
    // Still carrying a burst that ended (20,000 now against 1200
    // measured): its rise by half is put on the measurement, 1800 ev/s,
    // which 3 shards hold, and the shrink goes to 3.
    assert_eq!(shrink_to(&rising(20_000.0, 30_000.0)), 3);
    let mut input = state(&[300.0; 4]);
    input.low_since_ms = Some(50 * MIN_MS);
    let plan = decide(&config(), &input, &rising(20_000.0, 30_000.0), 60 * MIN_MS);
    assert!(
        plan.reasons
            .iter()
            .any(|r| r.contains("only its shape counts")),
        "{:?}",
        plan.reasons
    );
}

#[test]
fn the_rounds_of_one_descent_spend_the_budget_once() {
    let config = config();
    let now = 100 * MIN_MS;
    let low_since = now - 6 * MIN_MS;
    // The budget was spent before this low period began.
    let spent: Vec<u64> = (0..config.change_budget)
        .map(|i| low_since - MIN_MS * u64::from(i + 1))
        .collect();
    let descend = |changes_ms: Vec<u64>| {
        let mut input = state(&[50.0; 8]);
        input.low_since_ms = Some(low_since);
        input.changes_ms = changes_ms;
        decide(&config, &input, &flat(400.0), now)
    };
    let held = descend(spent.clone());
    assert_eq!(merge_count(&held), 0, "{:?}", held.reasons);
    // A round of this low period's descent is among them: go on, free.
    let mut descending = spent;
    descending.push(now - MIN_MS);
    let going_on = descend(descending);
    assert_eq!(merge_count(&going_on), 4, "{:?}", going_on.reasons);
    assert!(!going_on.spends_budget);
    assert!(
        going_on.reasons.iter().any(|r| r.contains("descent")),
        "{:?}",
        going_on.reasons
    );
}

#[test]
fn a_low_the_forecast_foresees_shrinks_sooner() {
    let now = 100 * MIN_MS;
    // Low for 4 minutes (3 are enough for a foreseen low, 5 otherwise), a
    // split 4 minutes ago.
    let shrink = |loads: &[f64], trend: f64, view: &ForecastView| {
        let mut input = state(loads);
        input.trend_eps_per_s = trend;
        input.low_since_ms = Some(now - 4 * MIN_MS);
        input.last_split_ms = Some(now - 4 * MIN_MS);
        decide(&config(), &input, view, now)
    };
    // 400 ev/s on 8 shards and a band 10% wide that stays there: one
    // shard holds its upper edge. Four merges now.
    let cold = [50.0; 8];
    let plan = shrink(&cold, 0.0, &crest(flat(400.0)));
    assert_eq!(merge_count(&plan), 4, "{:?}", plan.reasons);
    assert!(
        plan.reasons.iter().any(|r| r.contains("foresees the low")),
        "{:?}",
        plan.reasons
    );
    // A band whose upper edge needs two shards' capacity: the full wait.
    let wide = crest(forecast(400.0, 1100.0, 1100.0));
    assert_eq!(merge_count(&shrink(&cold, 0.0, &wide)), 0);
    // Measured above the band: the forecast does not track the stream.
    assert_eq!(merge_count(&shrink(&cold, 0.0, &crest(flat(200.0)))), 0);
    // 1,200 ev/s on 8 shards (2 would do) and still falling 15/s: 45 s on,
    // one shard would. Once the fall is over, it shrinks.
    let settling = crest(flat(1200.0));
    let falling = shrink(&[150.0; 8], -15.0, &settling);
    assert_eq!(merge_count(&falling), 0, "{:?}", falling.reasons);
    assert_eq!(merge_count(&shrink(&[150.0; 8], -1.0, &settling)), 4);
    // A surplus of less than half: 1,200 ev/s on 3 shards.
    assert_eq!(merge_count(&shrink(&[400.0; 3], 0.0, &settling)), 0);
    // A forecast that still carries an ended burst counts by its shape: a
    // flat one foresees the low, a rising one does not.
    assert_eq!(merge_count(&shrink(&cold, 0.0, &crest(flat(20_000.0)))), 4);
    let stale_rising = crest(rising(20_000.0, 60_000.0));
    assert_eq!(merge_count(&shrink(&cold, 0.0, &stale_rising)), 0);
}

#[test]
fn the_rounds_of_a_descent_follow_its_first_at_once() {
    let now = 100 * MIN_MS;
    // Low for a minute, a round of this low period a tick ago: the next
    // round goes on, though neither wait has passed.
    let mut input = state(&[50.0; 8]);
    input.low_since_ms = Some(now - MIN_MS);
    input.last_split_ms = Some(now - 2 * MIN_MS);
    input.changes_ms = vec![now - 10_000];
    let plan = decide(&config(), &input, &flat(400.0), now);
    assert_eq!(merge_count(&plan), 4, "{:?}", plan.reasons);
    // Without a round in this low period, it waits.
    input.changes_ms.clear();
    assert_eq!(
        merge_count(&decide(&config(), &input, &flat(400.0), now)),
        0
    );
}

struct ShrinkCase {
    loads: Vec<f64>,
    view: ForecastView,
    low_since: Option<u64>,
    last_split: Option<u64>,
    merges: usize,
    low_set: bool,
}

#[test]
fn shrink_table() {
    let cold = || vec![100.0, 100.0, 100.0, 100.0];
    let case = |loads, view, low_since, last_split, merges, low_set| ShrinkCase {
        loads,
        view,
        low_since,
        last_split,
        merges,
        low_set,
    };
    let now = 100 * MIN_MS;
    let cases = [
        // Low for the first time: start the clock, merge nothing.
        case(cold(), forecast(400.0, 450.0, 500.0), None, None, 0, true),
        // Low for 6 minutes: two disjoint merges towards one shard.
        case(
            cold(),
            forecast(400.0, 450.0, 500.0),
            Some(94 * MIN_MS),
            None,
            2,
            true,
        ),
        // The forecast's mean rises over the sizing horizon: no merge
        // though measured is low.
        case(
            cold(),
            ForecastView {
                peak_long: Some(Peak {
                    mean_eps: 3000.0,
                    upper_eps: 3300.0,
                }),
                ..forecast(400.0, 450.0, 500.0)
            },
            Some(50 * MIN_MS),
            None,
            0,
            false,
        ),
        // A split 2 minutes ago: cooldown, even for a low the forecast
        // foresees.
        case(
            cold(),
            forecast(400.0, 450.0, 500.0),
            Some(90 * MIN_MS),
            Some(98 * MIN_MS),
            0,
            true,
        ),
        // Measured high, forecast low: never merge on a forecast alone.
        case(
            vec![700.0, 700.0, 700.0],
            forecast(300.0, 2200.0, 400.0),
            Some(50 * MIN_MS),
            None,
            0,
            false,
        ),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut input = state(&case.loads);
        input.low_since_ms = case.low_since;
        input.last_split_ms = case.last_split;
        let plan = decide(&config(), &input, &case.view, now);
        assert_eq!(
            merge_count(&plan),
            case.merges,
            "case {i}: {:?}",
            plan.reasons
        );
        assert_eq!(
            plan.low_since_ms.is_some(),
            case.low_set,
            "case {i}: {:?}",
            plan.reasons
        );
        assert_eq!(
            plan.target_shards as usize,
            case.loads.len() - case.merges,
            "case {i}"
        );
    }
}

#[test]
fn merges_pick_disjoint_cold_neighbours() {
    let mut input = state(&[50.0, 60.0, 700.0, 40.0, 30.0]);
    input.low_since_ms = Some(0);
    let plan = decide(
        &config(),
        &input,
        &forecast(880.0, 900.0, 900.0),
        60 * MIN_MS,
    );
    assert_eq!(
        plan.actions,
        vec![
            ActionKind::Merge { left: 4, right: 5 },
            ActionKind::Merge { left: 1, right: 2 },
        ]
    );
}

#[test]
fn merges_stay_inside_one_routing_group() {
    // (group of each shard, in the order the engine sorts them, expected
    // merges): cold shards everywhere, so only the group boundaries
    // decide.
    type Merged = Vec<(u32, u32)>;
    let cases: Vec<(Vec<&str>, Merged)> = vec![
        (vec!["", ""], vec![(1, 2)]),
        (vec!["", "click"], vec![]),
        (vec!["", "", "click", "click"], vec![(1, 2), (3, 4)]),
        // The only cold neighbours within a group are 2 and 3.
        (vec!["", "click", "click", "view"], vec![(2, 3)]),
        (vec!["", "click", "view", ""], vec![]),
    ];
    for (groups, expected) in cases {
        let mut input = state(&vec![10.0; groups.len()]);
        for (shard, group) in input.shards.iter_mut().zip(&groups) {
            shard.group = (*group).to_string();
        }
        input.low_since_ms = Some(0);
        let plan = decide(&config(), &input, &forecast(40.0, 50.0, 50.0), 60 * MIN_MS);
        let mut merged: Vec<(u32, u32)> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                ActionKind::Merge { left, right } => Some((*left, *right)),
                _ => None,
            })
            .collect();
        merged.sort_unstable();
        assert_eq!(merged, expected, "groups {groups:?}: {:?}", plan.reasons);
    }
}

#[test]
fn merged_pairs_must_fit_one_shard_unless_load_is_fluid() {
    // 6 shards of 400 ev/s: low (below 450 each), 2400 ev/s needs 4 at
    // 600, but any merged pair carries 800.
    let mut input = state(&[400.0; 6]);
    input.low_since_ms = Some(0);
    let view = forecast(2400.0, 2500.0, 2500.0);
    assert!(decide(&config(), &input, &view, 60 * MIN_MS)
        .actions
        .is_empty());
    let mut fluid = config();
    fluid.merge_pairs_must_fit = false;
    let plan = decide(&fluid, &input, &view, 60 * MIN_MS);
    assert_eq!(merge_count(&plan), 2, "{:?}", plan.reasons);
}

#[test]
fn moves_only_with_several_directories() {
    let mut input = state(&[800.0, 800.0, 800.0, 100.0]);
    let view = forecast(2500.0, 2600.0, 2600.0);
    assert!(decide(&config(), &input, &view, 0).actions.is_empty());
    let mut two_dirs = config();
    two_dirs.dirs = 2;
    input.shards[3].dir = 1;
    let plan = decide(&two_dirs, &input, &view, 0);
    assert!(
        matches!(plan.actions.as_slice(), [ActionKind::Move { dir: 1, .. }]),
        "{:?}",
        plan
    );
}

#[test]
fn the_watch_grows_only_for_measured_overload() {
    let config = config();
    // Two shards are sized for 1,667 ev/s at 1,000 per shard and 20%
    // headroom.
    assert!(!overloaded(&config, 2, 1_600.0));
    assert!(overloaded(&config, 2, 1_700.0));
    // Below that, nothing between ticks, even where the forecast (which the
    // tick follows) would grow or the measurement would allow a merge.
    assert_eq!(
        watch(
            &config,
            &state(&[800.0, 800.0]),
            &rising(1_600.0, 5_000.0),
            0
        ),
        None
    );
    assert_eq!(watch(&config, &state(&[10.0, 10.0]), &flat(20.0), 0), None);
    let plan = watch(&config, &state(&[1_500.0, 1_500.0]), &flat(1_000.0), 0)
        .expect("3,000 ev/s on two shards grows");
    assert_eq!(plan.target_shards, 4);
    assert!(
        plan.reasons[0].contains("between ticks"),
        "{:?}",
        plan.reasons
    );
    assert!(!plan.spends_budget);
    // At the shard limit there is nothing to do.
    let capped = PolicyConfig {
        max_shards: 2,
        ..config
    };
    assert_eq!(
        watch(&capped, &state(&[1_500.0, 1_500.0]), &flat(1_000.0), 0),
        None
    );
}
