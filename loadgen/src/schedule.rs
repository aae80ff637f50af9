//! `RateSchedule`: a piecewise-constant rate over the run, and the intended
//! send time of every event under it. Open loop is one segment; trace
//! replay is one segment per trace row. Event `n` is due when the integral
//! of the rate reaches `n`, so rate changes never drop or bunch events, and
//! splitting a schedule over `P` producers (each at `1/P` of the rate, phase
//! `j/P`) yields exactly the events of the whole, interleaved.

use serde::{Deserialize, Serialize};

/// From `start_us` until the next segment (or the end), `events_per_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateSegment {
    pub start_us: u64,
    pub events_per_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    /// Sorted by `start_us`, the first at 0.
    segments: Vec<RateSegment>,
    end_us: u64,
}

impl RateSchedule {
    pub fn constant(events_per_s: f64, end_us: u64) -> RateSchedule {
        RateSchedule::from_segments(
            vec![RateSegment {
                start_us: 0,
                events_per_s,
            }],
            end_us,
        )
    }

    /// Segments must start at 0, be sorted, and have finite rates >= 0.
    pub fn from_segments(segments: Vec<RateSegment>, end_us: u64) -> RateSchedule {
        assert!(!segments.is_empty(), "a schedule needs a segment");
        assert_eq!(segments[0].start_us, 0, "the first segment starts at 0");
        assert!(
            segments
                .windows(2)
                .all(|pair| pair[0].start_us <= pair[1].start_us),
            "segments are sorted"
        );
        assert!(
            segments
                .iter()
                .all(|segment| segment.events_per_s.is_finite() && segment.events_per_s >= 0.0),
            "rates are finite and non-negative"
        );
        RateSchedule { segments, end_us }
    }

    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    pub fn segments(&self) -> &[RateSegment] {
        &self.segments
    }

    /// The same shape at `factor` times the rate.
    pub fn scaled(&self, factor: f64) -> RateSchedule {
        let segments = self
            .segments
            .iter()
            .map(|segment| RateSegment {
                events_per_s: segment.events_per_s * factor,
                ..*segment
            })
            .collect();
        RateSchedule::from_segments(segments, self.end_us)
    }

    /// The share of producer `index` out of `producers`.
    pub fn share(&self, index: u32, producers: u32) -> ScheduleIter {
        assert!(
            index < producers,
            "producer index within the producer count"
        );
        let schedule = self.scaled(1.0 / f64::from(producers));
        ScheduleIter::new(schedule, f64::from(index) / f64::from(producers))
    }

    /// Events due before the end.
    pub fn expected_events(&self) -> f64 {
        (0..self.segments.len())
            .map(|index| self.segment_events(index))
            .sum()
    }

    /// The rate at a run offset.
    pub fn rate_at(&self, at_us: u64) -> f64 {
        let index = self
            .segments
            .partition_point(|segment| segment.start_us <= at_us);
        index
            .checked_sub(1)
            .map_or(0.0, |index| self.segments[index].events_per_s)
    }

    fn segment_end_us(&self, index: usize) -> u64 {
        self.segments
            .get(index + 1)
            .map_or(self.end_us, |next| next.start_us.min(self.end_us))
    }

    fn segment_events(&self, index: usize) -> f64 {
        let segment = self.segments[index];
        let end_us = self.segment_end_us(index);
        let span_us = end_us.saturating_sub(segment.start_us);
        segment.events_per_s * span_us as f64 / 1e6
    }
}

/// Intended send offsets (µs since the run start) of one schedule, in order.
#[derive(Debug, Clone)]
pub struct ScheduleIter {
    schedule: RateSchedule,
    /// Fraction of an event by which this share is shifted, in `[0, 1)`.
    phase: f64,
    next_event: u64,
    segment: usize,
    /// Integral of the rate up to the start of `segment`.
    events_before_segment: f64,
}

impl ScheduleIter {
    pub fn new(schedule: RateSchedule, phase: f64) -> ScheduleIter {
        assert!((0.0..1.0).contains(&phase), "phase in [0, 1)");
        ScheduleIter {
            schedule,
            phase,
            next_event: 0,
            segment: 0,
            events_before_segment: 0.0,
        }
    }
}

impl Iterator for ScheduleIter {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let target = self.next_event as f64 + self.phase;
        while self.segment < self.schedule.segments.len() {
            let in_segment = self.schedule.segment_events(self.segment);
            if self.events_before_segment + in_segment > target {
                let segment = self.schedule.segments[self.segment];
                let into_us = (target - self.events_before_segment) / segment.events_per_s * 1e6;
                self.next_event += 1;
                let at_us = segment.start_us + into_us.round() as u64;
                return Some(at_us.min(self.schedule.segment_end_us(self.segment)));
            }
            self.events_before_segment += in_segment;
            self.segment += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_spaces_events_evenly() {
        let times: Vec<u64> = RateSchedule::constant(1_000.0, 1_000_000)
            .share(0, 1)
            .collect();
        assert_eq!(times.len(), 1_000);
        for (index, at_us) in times.iter().enumerate() {
            assert_eq!(*at_us, index as u64 * 1_000);
        }
    }

    #[test]
    fn shares_interleave_into_the_whole() {
        let schedule = RateSchedule::constant(3_000.0, 10_000);
        let whole: Vec<u64> = schedule.share(0, 1).collect();
        let mut merged: Vec<u64> = (0..3).flat_map(|index| schedule.share(index, 3)).collect();
        merged.sort_unstable();
        assert_eq!(whole.len(), 30);
        assert_eq!(merged, whole);
    }

    #[test]
    fn rate_changes_between_segments() {
        let segments = vec![
            RateSegment {
                start_us: 0,
                events_per_s: 10.0,
            },
            RateSegment {
                start_us: 1_000_000,
                events_per_s: 0.0,
            },
            RateSegment {
                start_us: 2_000_000,
                events_per_s: 100.0,
            },
        ];
        let schedule = RateSchedule::from_segments(segments, 3_000_000);
        let times: Vec<u64> = schedule.share(0, 1).collect();
        assert_eq!(times.len(), 110);
        assert_eq!(schedule.expected_events(), 110.0);
        assert_eq!(times[9], 900_000);
        assert_eq!(times[10], 2_000_000);
        assert_eq!(times[11], 2_010_000);
        assert_eq!(schedule.rate_at(1_500_000), 0.0);
    }
}
