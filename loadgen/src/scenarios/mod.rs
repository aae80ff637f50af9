//! One file per scenario: how senders are fed. Open loop and trace replay
//! pace events to a `RateSchedule`; max throughput keeps a window full.

pub mod max_throughput;
pub mod open_loop;
pub mod trace_replay;
