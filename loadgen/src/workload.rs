//! What one event looks like: value size (fixed, uniform or normal), key
//! (none, or drawn from a key space uniformly or by zipf), event type, and
//! the `sent-us` header that carries the intended send time to consumers.
//! `EventFactory` turns those settings into `Event`s; values are slices of
//! one random buffer, so making an event never copies a payload.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use surge_client::Event;

use crate::error::LoadgenError;

/// Header carrying the intended send time, µs since the Unix epoch, as 8
/// big-endian bytes. Consumers subtract it from their clock.
pub const SENT_US_HEADER: &str = "sent-us";
/// Largest event value (each producer holds one random buffer this big);
/// the broker's batch limit is smaller anyway.
pub const EVENT_BYTES_MAX: u64 = 4 << 20;
pub const KEYS_MAX: u64 = 1 << 40;
/// The sent-us value (8 bytes) and the longest key ("k" and 13 digits).
const SMALL_FIELDS_BYTES: usize = 8 + 1 + 13;
/// The small fields of this many bytes' worth of events share one
/// allocation, freed when the last of them is dropped.
const SMALL_ARENA_BYTES: usize = 4096;
const _: () = assert!(KEYS_MAX < 10_u64.pow(13));
pub const TYPES_MAX: u32 = 10_000;

/// The event settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadConfig {
    pub event_size: SizeDist,
    /// Distinct keys; 0 sends keyless events (spread round-robin).
    pub keys: u64,
    pub key_dist: KeyDist,
    /// Distinct values of the `type` header; 0 sends no type.
    pub types: u32,
    /// Seed of every random choice (sizes, keys, types), per producer
    /// offset by its index.
    pub seed: u64,
}

impl WorkloadConfig {
    pub fn validate(&self) -> Result<(), LoadgenError> {
        self.event_size.validate()?;
        if self.keys > KEYS_MAX {
            return Err(LoadgenError::invalid(
                "--keys",
                &self.keys.to_string(),
                "at most 2^40",
            ));
        }
        if self.types > TYPES_MAX {
            let value = self.types.to_string();
            return Err(LoadgenError::invalid("--types", &value, "at most 10000"));
        }
        if let KeyDist::Zipf { exponent } = self.key_dist {
            if !(exponent.is_finite() && exponent > 0.0 && exponent <= 10.0) {
                let value = exponent.to_string();
                return Err(LoadgenError::invalid(
                    "--key-dist",
                    &value,
                    "zipf exponent in (0, 10]",
                ));
            }
        }
        Ok(())
    }
}

/// Size of an event's value in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SizeDist {
    Fixed {
        bytes: u64,
    },
    /// Uniform over `min..=max`.
    Uniform {
        min: u64,
        max: u64,
    },
    /// Normal, clamped to `0..=mean + 3 stddev`.
    Normal {
        mean: u64,
        stddev: u64,
    },
}

impl SizeDist {
    fn validate(self) -> Result<(), LoadgenError> {
        let ok = match self {
            SizeDist::Fixed { bytes } => bytes <= EVENT_BYTES_MAX,
            SizeDist::Uniform { min, max } => min <= max && max <= EVENT_BYTES_MAX,
            SizeDist::Normal { .. } => self.max_bytes() <= EVENT_BYTES_MAX,
        };
        if !ok {
            let value = self.to_string();
            return Err(LoadgenError::invalid(
                "--event-size",
                &value,
                "at most 4 MiB, min <= max",
            ));
        }
        Ok(())
    }

    /// The largest size this distribution can draw.
    pub fn max_bytes(self) -> u64 {
        match self {
            SizeDist::Fixed { bytes } => bytes,
            SizeDist::Uniform { max, .. } => max,
            SizeDist::Normal { mean, stddev } => mean.saturating_add(stddev.saturating_mul(3)),
        }
    }

    pub fn mean_bytes(self) -> f64 {
        match self {
            SizeDist::Fixed { bytes } => bytes as f64,
            SizeDist::Uniform { min, max } => (min + max) as f64 / 2.0,
            SizeDist::Normal { mean, .. } => mean as f64,
        }
    }

    pub fn sample(self, rng: &mut fastrand::Rng) -> u64 {
        match self {
            SizeDist::Fixed { bytes } => bytes,
            SizeDist::Uniform { min, max } => rng.u64(min..=max),
            SizeDist::Normal { mean, stddev } => {
                // Box-Muller; the clamp keeps every draw within max_bytes.
                let u1 = rng.f64().max(f64::MIN_POSITIVE);
                let u2 = rng.f64();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let drawn = mean as f64 + z * stddev as f64;
                (drawn.round().max(0.0) as u64).min(self.max_bytes())
            }
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed { bytes } => write!(f, "{bytes} B"),
            SizeDist::Uniform { min, max } => write!(f, "uniform {min}..={max} B"),
            SizeDist::Normal { mean, stddev } => write!(f, "normal mean {mean} B sd {stddev} B"),
        }
    }
}

/// `1024`, `1KiB`, `100..2000` (uniform), `normal:1024,128`.
impl FromStr for SizeDist {
    type Err = LoadgenError;

    fn from_str(text: &str) -> Result<SizeDist, LoadgenError> {
        let bad = || {
            LoadgenError::invalid(
                "--event-size",
                text,
                "expected 1024, 1KiB, 100..2000 or normal:1024,128",
            )
        };
        if let Some(rest) = text.strip_prefix("normal:") {
            let (mean, stddev) = rest.split_once(',').ok_or_else(bad)?;
            let mean = parse_bytes(mean).ok_or_else(bad)?;
            let stddev = parse_bytes(stddev).ok_or_else(bad)?;
            return Ok(SizeDist::Normal { mean, stddev });
        }
        let range = text.strip_prefix("uniform:").unwrap_or(text);
        if let Some((min, max)) = range.split_once("..") {
            let min = parse_bytes(min).ok_or_else(bad)?;
            let max = parse_bytes(max.trim_start_matches('=')).ok_or_else(bad)?;
            return Ok(SizeDist::Uniform { min, max });
        }
        let bytes = parse_bytes(text).ok_or_else(bad)?;
        Ok(SizeDist::Fixed { bytes })
    }
}

/// `1024`, `1k`/`1KiB` (1024), `1m`/`1MiB`.
fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyDist {
    Uniform,
    /// Rank k drawn with probability proportional to 1 / k^exponent.
    Zipf {
        exponent: f64,
    },
}

/// `uniform` or `zipf:1.1` (`zipf` alone is exponent 1).
impl FromStr for KeyDist {
    type Err = LoadgenError;

    fn from_str(text: &str) -> Result<KeyDist, LoadgenError> {
        match text {
            "uniform" => Ok(KeyDist::Uniform),
            "zipf" => Ok(KeyDist::Zipf { exponent: 1.0 }),
            _ => {
                let exponent = text
                    .strip_prefix("zipf:")
                    .and_then(|exponent| exponent.parse().ok())
                    .ok_or_else(|| {
                        LoadgenError::invalid("--key-dist", text, "expected uniform or zipf:1.1")
                    })?;
                Ok(KeyDist::Zipf { exponent })
            }
        }
    }
}

/// Zipf over ranks `1..=n` by rejection-inversion (Hörmann and Derflinger,
/// 1996): O(1) memory and expected O(1) time for any key space, unlike a
/// CDF table.
#[derive(Debug, Clone, Copy)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    pub fn new(n: u64, exponent: f64) -> Zipf {
        assert!(n >= 1, "zipf needs at least one rank");
        assert!(exponent > 0.0, "zipf exponent must be positive");
        let n = n as f64;
        let mut zipf = Zipf {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n + 0.5);
        zipf.s = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// A rank in `1..=n`; rank 1 is the most frequent.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        // The loop accepts with probability well above one half per try;
        // the bound only guards against a broken float environment.
        for _ in 0..1_000 {
            let u = self.h_integral_n + rng.f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
        1
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, stable near zero.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(exp(x) - 1) / x`, stable near zero.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// Makes the events of one producer, deterministically from its seed.
#[derive(Debug)]
pub struct EventFactory {
    config: WorkloadConfig,
    rng: fastrand::Rng,
    zipf: Option<Zipf>,
    payload: Bytes,
    type_names: Vec<String>,
    /// Room for the next events' small fields (see `SMALL_ARENA_BYTES`).
    small: BytesMut,
}

impl EventFactory {
    pub fn new(config: &WorkloadConfig, producer_index: u32) -> EventFactory {
        let mut rng = fastrand::Rng::with_seed(config.seed.wrapping_add(u64::from(producer_index)));
        let max = usize::try_from(config.event_size.max_bytes()).expect("validated at most 4 MiB");
        // Random bytes: a compressing path cannot flatter the numbers.
        let payload: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(max).collect();
        let zipf = match config.key_dist {
            KeyDist::Zipf { exponent } if config.keys > 0 => Some(Zipf::new(config.keys, exponent)),
            _ => None,
        };
        let type_names = (0..config.types)
            .map(|index| format!("type-{index}"))
            .collect();
        EventFactory {
            config: config.clone(),
            rng,
            zipf,
            payload: Bytes::from(payload),
            type_names,
            small: BytesMut::new(),
        }
    }

    /// The next event, stamped with its intended send time.
    pub fn next_event(&mut self, intended_epoch_us: u64) -> Event {
        let size = self.config.event_size.sample(&mut self.rng) as usize;
        // The sent-us value and the key are cut from a shared arena: one
        // allocation per many events, not one per event.
        if self.small.capacity() - self.small.len() < SMALL_FIELDS_BYTES {
            self.small = BytesMut::with_capacity(SMALL_ARENA_BYTES);
        }
        self.small.put_u64(intended_epoch_us);
        let key = self.next_key().map(|key| {
            write!(self.small, "k{key}").expect("writing to a BytesMut cannot fail");
        });
        let small = self.small.split().freeze();
        let mut event =
            Event::new(self.payload.slice(..size)).with_header(SENT_US_HEADER, small.slice(..8));
        if key.is_some() {
            event = event.with_key(small.slice(8..));
        }
        if !self.type_names.is_empty() {
            let index = self.rng.usize(..self.type_names.len());
            event = event.with_type(&self.type_names[index]);
        }
        event
    }

    /// A key index in `0..keys`, or `None` for keyless events.
    pub fn next_key(&mut self) -> Option<u64> {
        if self.config.keys == 0 {
            return None;
        }
        Some(match &self.zipf {
            Some(zipf) => zipf.sample(&mut self.rng) - 1,
            None => self.rng.u64(..self.config.keys),
        })
    }
}

/// The intended send time a producer put in an event, if present.
pub fn sent_us<N: AsRef<str>>(headers: &[(N, Bytes)]) -> Option<u64> {
    let (_, value) = headers
        .iter()
        .find(|(name, _)| name.as_ref() == SENT_US_HEADER)?;
    let bytes: [u8; 8] = value.as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "1024".parse::<SizeDist>().unwrap(),
            SizeDist::Fixed { bytes: 1024 }
        );
        assert_eq!(
            "1KiB".parse::<SizeDist>().unwrap(),
            SizeDist::Fixed { bytes: 1024 }
        );
        assert_eq!(
            "100..2000".parse::<SizeDist>().unwrap(),
            SizeDist::Uniform {
                min: 100,
                max: 2000
            }
        );
        assert_eq!(
            "normal:1k,128".parse::<SizeDist>().unwrap(),
            SizeDist::Normal {
                mean: 1024,
                stddev: 128
            }
        );
        assert!("lots".parse::<SizeDist>().is_err());
    }

    #[test]
    fn normal_sizes_stay_in_bounds() {
        let dist = SizeDist::Normal {
            mean: 100,
            stddev: 50,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            assert!(dist.sample(&mut rng) <= dist.max_bytes());
        }
    }

    #[test]
    fn sent_us_round_trips_through_the_header() {
        let config = WorkloadConfig {
            event_size: SizeDist::Fixed { bytes: 64 },
            keys: 10,
            key_dist: KeyDist::Uniform,
            types: 3,
            seed: 1,
        };
        // Many events, all held at once: their small fields share arenas,
        // and none may see another's.
        let mut factory = EventFactory::new(&config, 0);
        let events: Vec<Event> = (0..1_000)
            .map(|i| factory.next_event(1_234_567 + i))
            .collect();
        for (i, event) in (0..).zip(&events) {
            assert_eq!(event.value.len(), 64);
            assert_eq!(sent_us(&event.headers), Some(1_234_567 + i));
            let key = event.key.as_ref().expect("keyed workload");
            let index: u64 = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
            assert!(key.starts_with(b"k") && index < 10, "{key:?}");
        }
    }

    #[test]
    fn the_largest_key_fits_the_small_fields() {
        let config = WorkloadConfig {
            event_size: SizeDist::Fixed { bytes: 1 },
            keys: KEYS_MAX,
            key_dist: KeyDist::Zipf { exponent: 0.01 },
            types: 0,
            seed: 3,
        };
        let mut factory = EventFactory::new(&config, 0);
        for _ in 0..1_000 {
            let event = factory.next_event(u64::MAX);
            assert_eq!(sent_us(&event.headers), Some(u64::MAX));
            assert!(event.key.unwrap().len() <= SMALL_FIELDS_BYTES - 8);
        }
    }
}
