//! Placement of shards across data directories (later: nodes), solved as a
//! small mixed-integer program with good_lp's pure-Rust microlp backend:
//! minimise the busiest directory's load, plus a small cost per move so an
//! equally good placement that moves less wins, with a cap on moves per
//! tick. Problems too large for a quick exact solve are left unchanged.

use good_lp::solvers::WithTimeLimit;
use good_lp::{microlp, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};

/// Binary variables (shards x directories) above this are not solved.
pub const VARIABLES_MAX: usize = 512;
/// Wall-clock bound on one solve.
const SOLVE_SECONDS_MAX: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardLoad {
    pub shard: u32,
    pub dir: u32,
    pub events_per_s: f64,
}

/// A move of one shard to another directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub shard: u32,
    pub dir: u32,
}

/// The busiest directory's load.
pub fn peak_load(shards: &[ShardLoad], dirs: u32) -> f64 {
    let mut loads = vec![0.0; dirs as usize];
    for shard in shards {
        if let Some(load) = loads.get_mut(shard.dir as usize) {
            *load += shard.events_per_s;
        }
    }
    loads.into_iter().fold(0.0, f64::max)
}

/// Moves (at most `moves_max`) that lower the busiest directory's load by at
/// least `gain_min` (a fraction); empty when no such placement exists.
pub fn rebalance(shards: &[ShardLoad], dirs: u32, moves_max: u32, gain_min: f64) -> Vec<Move> {
    if dirs < 2 || shards.len() < 2 || moves_max == 0 {
        return Vec::new();
    }
    if shards.len() * dirs as usize > VARIABLES_MAX {
        return Vec::new();
    }
    // The solver needs bounds that can hold: loads that are not finite
    // rates (or whose sum is not) say nothing a move could act on.
    let total: f64 = shards.iter().map(|s| s.events_per_s).sum();
    if !total.is_finite() || shards.iter().any(|s| s.events_per_s < 0.0) {
        return Vec::new();
    }
    let before = peak_load(shards, dirs);
    if before <= 0.0 {
        return Vec::new();
    }
    let Some(moves) = solve(shards, dirs, moves_max) else {
        return Vec::new();
    };
    let after: Vec<ShardLoad> = shards
        .iter()
        .map(
            |shard| match moves.iter().find(|m| m.shard == shard.shard) {
                Some(target) => ShardLoad {
                    dir: target.dir,
                    ..*shard
                },
                None => *shard,
            },
        )
        .collect();
    if peak_load(&after, dirs) <= before * (1.0 - gain_min) {
        moves
    } else {
        Vec::new()
    }
}

fn solve(shards: &[ShardLoad], dirs: u32, moves_max: u32) -> Option<Vec<Move>> {
    let total: f64 = shards.iter().map(|s| s.events_per_s).sum();
    let mut vars = ProblemVariables::new();
    let peak = vars.add(variable().min(0.0).max(total));
    let assign: Vec<Vec<Variable>> = shards
        .iter()
        .map(|_| (0..dirs).map(|_| vars.add(variable().binary())).collect())
        .collect();
    // Staying put is free; each move costs a sliver of the total load.
    let move_cost = total.max(1.0) * 1e-3;
    let moved = |row: &Vec<Variable>, shard: &ShardLoad| -> Expression {
        let stay = row[shard.dir.min(dirs - 1) as usize];
        Expression::from(1.0) - stay
    };
    let moves_total: Expression = shards
        .iter()
        .zip(&assign)
        .map(|(shard, row)| moved(row, shard))
        .sum();
    let objective = Expression::from(peak) + move_cost * moves_total.clone();
    let mut model = vars
        .minimise(objective)
        .using(microlp)
        .with_time_limit(SOLVE_SECONDS_MAX);
    for row in &assign {
        model = model.with(row.iter().copied().sum::<Expression>().eq(1.0));
    }
    for dir in 0..dirs as usize {
        let load: Expression = shards
            .iter()
            .zip(&assign)
            .map(|(shard, row)| shard.events_per_s * row[dir])
            .sum();
        model = model.with(load.leq(peak));
    }
    model = model.with(moves_total.leq(f64::from(moves_max)));
    let solution = model.solve().ok()?;
    let moves = shards
        .iter()
        .zip(&assign)
        .filter_map(|(shard, row)| {
            let dir = (0..dirs).find(|&d| solution.value(row[d as usize]) > 0.5)?;
            (dir != shard.dir).then_some(Move {
                shard: shard.shard,
                dir,
            })
        })
        .collect();
    Some(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(shard: u32, dir: u32, events_per_s: f64) -> ShardLoad {
        ShardLoad {
            shard,
            dir,
            events_per_s,
        }
    }

    #[test]
    fn moves_a_hot_shard_off_a_crowded_directory() {
        let shards = [
            load(1, 0, 400.0),
            load(2, 0, 400.0),
            load(3, 0, 200.0),
            load(4, 1, 0.0),
        ];
        let moves = rebalance(&shards, 2, 1, 0.1);
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0].dir, 1);
        assert!(moves[0].shard == 1 || moves[0].shard == 2, "{moves:?}");
    }

    #[test]
    fn loads_that_are_not_rates_move_nothing() {
        // The solver panicked on these (bounds that cannot hold).
        for bad in [f64::INFINITY, f64::NAN, -1.0, 1e308] {
            let shards = [load(1, 1, bad), load(2, 0, 900.0), load(3, 0, 800.0)];
            assert!(rebalance(&shards, 2, 1, 0.1).is_empty(), "{bad}");
        }
    }

    #[test]
    fn balanced_or_single_directory_placements_stay() {
        let balanced = [load(1, 0, 500.0), load(2, 1, 500.0)];
        assert!(rebalance(&balanced, 2, 2, 0.1).is_empty());
        let single = [load(1, 0, 900.0), load(2, 0, 100.0)];
        assert!(rebalance(&single, 1, 2, 0.1).is_empty());
    }

    #[test]
    fn respects_the_move_cap_and_minimum_gain() {
        let shards: Vec<ShardLoad> = (0..6).map(|i| load(i, 0, 100.0)).collect();
        let moves = rebalance(&shards, 3, 2, 0.1);
        assert_eq!(moves.len(), 2, "{moves:?}");
        // 5% better is below a 10% minimum gain.
        let nearly = [load(1, 0, 500.0), load(2, 0, 50.0), load(3, 1, 500.0)];
        assert!(rebalance(&nearly, 2, 1, 0.2).is_empty());
    }
}
