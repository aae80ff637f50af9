//! The record batch: the unit a producer sends, the broker stores verbatim in
//! a segment and a consumer fetches. The broker only patches `base_offset`,
//! which is why the checksum starts after it. This module reads and checks
//! batches; `builder` makes them.
//!
//! ```text
//! batch header (64 bytes, little-endian)
//! +0  u64 base_offset        assigned by the broker; not under the CRC
//! +8  u32 length             bytes after this field (batch size - 12)
//! +12 u32 crc32c             over bytes 16..end (Castagnoli)
//! +16 u16 magic              0x5347 ("GS" on disk)
//! +18 u8  version            1
//! +19 u8  flags              bit 0 (`FLAG_FORWARDED`): the broker made
//!                            this batch from part of one sent to
//!                            origin_shard after it was sealed; others 0
//! +20 u32 record_count       >= 1
//! +24 i64 first_timestamp_ms
//! +32 i64 max_timestamp_ms
//! +40 u64 producer_id        0: not idempotent
//! +48 u64 base_sequence      producer's sequence of the first record
//! +56 u32 origin_shard       the shard the producer addressed; sequences
//!                            are per (producer_id, origin_shard), so a batch
//!                            the broker forwards to a successor keeps it
//! +60 u32 reserved           0
//! +64 records
//!
//! record
//! +0  u32 record_len         bytes after this field
//! +4  u32 offset_delta       index of the record in the batch (dense)
//! +8  i32 timestamp_delta_ms from first_timestamp_ms
//! +12 u32 key_len            0xFFFF_FFFF: no key
//!     key bytes
//!     u32 value_len, value bytes
//!     u16 header_count, then per header: u16 name_len, UTF-8 name,
//!         u32 value_len, value bytes
//! ```

use bytes::Bytes;

use crate::error::DecodeError;

mod builder;

pub use builder::BatchBuilder;

pub const BATCH_HEADER_BYTES: usize = 64;
pub const BATCH_MAGIC: u16 = 0x5347;
pub const BATCH_VERSION: u8 = 1;
/// Set only by the broker, on the pieces of a batch it forwards from a
/// sealed shard: their sequences skip the records a sibling took.
pub const FLAG_FORWARDED: u8 = 1;
/// Bytes before the CRC-covered region: base offset, length, crc.
pub const BATCH_PREFIX_BYTES: usize = 12;
/// The checksum covers the batch from here (magic onwards) to its end.
pub const CRC_START: usize = 16;
pub const RECORD_OVERHEAD_BYTES: usize = 4 + 4 + 4 + 4 + 4 + 2;
/// Hard ceiling on one batch; brokers configure a lower `max_batch_bytes`.
pub const MAX_BATCH_BYTES: usize = 32 << 20;
pub const MAX_RECORDS_PER_BATCH: usize = 1 << 21;
pub const MAX_HEADERS_PER_RECORD: usize = 64;
const NO_KEY: u32 = u32::MAX;

const _: () = assert!(BATCH_HEADER_BYTES == 64);
const _: () = assert!(MAX_BATCH_BYTES < crate::frame::MAX_FRAME_BYTES);
// The byte limit binds before the record-count limit can.
const _: () = assert!(MAX_RECORDS_PER_BATCH * RECORD_OVERHEAD_BYTES > MAX_BATCH_BYTES);

/// The fixed header of a batch, read from bytes that passed `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Whole batch size in bytes, header included.
    pub size: usize,
    pub crc: u32,
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub producer_id: u64,
    pub base_sequence: u64,
    pub origin_shard: u32,
    /// `FLAG_FORWARDED` is set.
    pub forwarded: bool,
}

impl BatchHeader {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count) - 1
    }

    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    pub fn last_sequence(&self) -> u64 {
        self.base_sequence + u64::from(self.record_count) - 1
    }
}

fn le_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(buf[at..at + 2].try_into().expect("2 bytes"))
}
fn le_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
fn le_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The size of the batch at the front of `buf`, from its length field, if
/// the prefix is there. Bounded by `max_batch_bytes`.
pub fn peek_size(buf: &[u8], max_batch_bytes: usize) -> Result<Option<usize>, DecodeError> {
    if buf.len() < BATCH_PREFIX_BYTES {
        return Ok(None);
    }
    let size = le_u32(buf, 8) as usize + BATCH_PREFIX_BYTES;
    if size > max_batch_bytes {
        return Err(DecodeError::LengthTooLarge {
            len: size,
            max: max_batch_bytes,
        });
    }
    if size < BATCH_HEADER_BYTES {
        return Err(DecodeError::InvalidValue {
            field: "batch length",
            value: size as u64,
        });
    }
    Ok(Some(size))
}

/// Checks the batch at the front of `buf`: bounds, magic, version, CRC and
/// every record's framing. Returns its header; the batch is `header.size`
/// bytes and anything after it is not looked at.
pub fn validate(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, DecodeError> {
    let size = match peek_size(buf, max_batch_bytes)? {
        Some(size) => size,
        None => {
            return Err(DecodeError::UnexpectedEof {
                offset: 0,
                need: BATCH_PREFIX_BYTES,
                have: buf.len(),
            })
        }
    };
    if buf.len() < size {
        return Err(DecodeError::UnexpectedEof {
            offset: 0,
            need: size,
            have: buf.len(),
        });
    }
    let batch = &buf[..size];
    verify_checksum(batch, size)?;
    if batch[19] & !FLAG_FORWARDED != 0 {
        return Err(DecodeError::InvalidValue {
            field: "batch flags",
            value: u64::from(batch[19]),
        });
    }
    let reserved = le_u32(batch, 60);
    if reserved != 0 {
        return Err(DecodeError::InvalidValue {
            field: "batch reserved",
            value: u64::from(reserved),
        });
    }
    let header = read_header(batch);
    if header.record_count == 0 || header.record_count as usize > MAX_RECORDS_PER_BATCH {
        return Err(DecodeError::InvalidValue {
            field: "record_count",
            value: u64::from(header.record_count),
        });
    }
    let mut walked = 0u32;
    let mut pos = BATCH_HEADER_BYTES;
    while pos < size {
        let record = parse_record(batch, pos, header.first_timestamp_ms)?;
        if record.offset_delta != walked {
            return Err(DecodeError::InvalidValue {
                field: "offset_delta",
                value: u64::from(record.offset_delta),
            });
        }
        walked += 1;
        pos = record.end;
    }
    if walked != header.record_count {
        return Err(DecodeError::InvalidValue {
            field: "record_count",
            value: u64::from(header.record_count),
        });
    }
    Ok(header)
}

/// One whole batch that `validate` accepted, with its header: what the
/// broker's storage appends. A batch is checked (CRC and every record)
/// once, where it enters the broker, and carries the proof with it.
#[derive(Debug, Clone)]
pub struct Checked {
    bytes: Bytes,
    header: BatchHeader,
}

impl Checked {
    /// Validates `bytes` as exactly one batch: bytes after it are an error.
    pub fn new(bytes: Bytes, max_batch_bytes: usize) -> Result<Checked, DecodeError> {
        let header = validate(&bytes, max_batch_bytes)?;
        if header.size != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - header.size,
            });
        }
        Ok(Checked { bytes, header })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The header as sent (its `base_offset` is the producer's, not the
    /// log's).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

/// The cheap check for bytes read back from storage: magic, version and
/// checksum of the whole batch at the front of `batch` (`size` bytes), without
/// walking its records (they were walked when the batch was accepted).
pub fn verify_checksum(batch: &[u8], size: usize) -> Result<(), DecodeError> {
    if batch.len() < size || size < BATCH_HEADER_BYTES {
        return Err(DecodeError::UnexpectedEof {
            offset: 0,
            need: size.max(BATCH_HEADER_BYTES),
            have: batch.len(),
        });
    }
    let magic = le_u16(batch, 16);
    if magic != BATCH_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    if batch[18] != BATCH_VERSION {
        return Err(DecodeError::UnsupportedBatchVersion { found: batch[18] });
    }
    let stored = le_u32(batch, 12);
    let computed = crc32c::crc32c(&batch[CRC_START..size]);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

/// Reads the header fields of a batch without checking anything: only for
/// bytes that already passed `validate` (or the first 64 bytes of one).
pub fn read_header(batch: &[u8]) -> BatchHeader {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "batch header truncated");
    BatchHeader {
        base_offset: le_u64(batch, 0),
        size: le_u32(batch, 8) as usize + BATCH_PREFIX_BYTES,
        crc: le_u32(batch, 12),
        record_count: le_u32(batch, 20),
        first_timestamp_ms: le_u64(batch, 24) as i64,
        max_timestamp_ms: le_u64(batch, 32) as i64,
        producer_id: le_u64(batch, 40),
        base_sequence: le_u64(batch, 48),
        origin_shard: le_u32(batch, 56),
        forwarded: batch[19] & FLAG_FORWARDED != 0,
    }
}

/// A batch's first bytes: the broker-assigned base offset, outside the CRC.
pub const BASE_OFFSET_BYTES: usize = 8;

/// The first `BASE_OFFSET_BYTES` of a batch stored at `base_offset`.
pub fn base_offset_bytes(base_offset: u64) -> [u8; BASE_OFFSET_BYTES] {
    base_offset.to_le_bytes()
}

/// Writes the broker-assigned base offset into a batch.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[..BASE_OFFSET_BYTES].copy_from_slice(&base_offset_bytes(base_offset));
}

struct RawRecord {
    offset_delta: u32,
    timestamp_ms: i64,
    key: Option<(usize, usize)>,
    value: (usize, usize),
    headers_at: usize,
    header_count: u16,
    end: usize,
}

fn need(batch: &[u8], pos: usize, len: usize, end: usize) -> Result<(), DecodeError> {
    if pos.checked_add(len).is_none_or(|stop| stop > end) {
        return Err(DecodeError::UnexpectedEof {
            offset: pos,
            need: len,
            have: end.saturating_sub(pos).min(batch.len()),
        });
    }
    Ok(())
}

fn parse_record(batch: &[u8], start: usize, first_ts: i64) -> Result<RawRecord, DecodeError> {
    need(batch, start, 4, batch.len())?;
    let record_len = le_u32(batch, start) as usize;
    let end = start + 4 + record_len;
    need(batch, start, 4 + record_len, batch.len())?;
    let mut pos = start + 4;
    need(batch, pos, 12, end)?;
    let offset_delta = le_u32(batch, pos);
    let timestamp_ms = first_ts.wrapping_add(i64::from(le_u32(batch, pos + 4) as i32));
    let key_len = le_u32(batch, pos + 8);
    pos += 12;
    let key = if key_len == NO_KEY {
        None
    } else {
        need(batch, pos, key_len as usize, end)?;
        let key = (pos, key_len as usize);
        pos += key_len as usize;
        Some(key)
    };
    need(batch, pos, 4, end)?;
    let value_len = le_u32(batch, pos) as usize;
    pos += 4;
    need(batch, pos, value_len, end)?;
    let value = (pos, value_len);
    pos += value_len;
    need(batch, pos, 2, end)?;
    let header_count = le_u16(batch, pos);
    pos += 2;
    if usize::from(header_count) > MAX_HEADERS_PER_RECORD {
        return Err(DecodeError::TooManyElements {
            count: usize::from(header_count),
            max: MAX_HEADERS_PER_RECORD,
        });
    }
    let headers_at = pos;
    for _ in 0..header_count {
        need(batch, pos, 2, end)?;
        let name_len = usize::from(le_u16(batch, pos));
        pos += 2;
        need(batch, pos, name_len, end)?;
        if std::str::from_utf8(&batch[pos..pos + name_len]).is_err() {
            return Err(DecodeError::InvalidUtf8);
        }
        pos += name_len;
        need(batch, pos, 4, end)?;
        let value_len = le_u32(batch, pos) as usize;
        pos += 4;
        need(batch, pos, value_len, end)?;
        pos += value_len;
    }
    if pos != end {
        return Err(DecodeError::TrailingBytes { extra: end - pos });
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_ms,
        key,
        value,
        headers_at,
        header_count,
        end,
    })
}

/// What each record of a validated batch is routed by (its key, or the
/// value of `routing_header` when that is not empty), in order, without
/// building the records: routing statistics sample them on the produce path.
pub fn routing_values<'a>(
    batch: &'a [u8],
    routing_header: &'a str,
) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
    let header = read_header(batch);
    let mut pos = BATCH_HEADER_BYTES;
    std::iter::from_fn(move || {
        if pos >= header.size.min(batch.len()) {
            return None;
        }
        let raw = parse_record(batch, pos, header.first_timestamp_ms).ok()?;
        pos = raw.end;
        let key = raw.key.map(|(at, len)| &batch[at..at + len]);
        Some(crate::stream::routing_value(routing_header, key, |name| {
            header_value(batch, &raw, name)
        }))
    })
}

/// The value of the first header called `name` in a parsed record.
fn header_value<'a>(batch: &'a [u8], raw: &RawRecord, name: &str) -> Option<&'a [u8]> {
    let mut pos = raw.headers_at;
    for _ in 0..raw.header_count {
        let name_len = usize::from(le_u16(batch, pos));
        let this = &batch[pos + 2..pos + 2 + name_len];
        pos += 2 + name_len;
        let value_len = le_u32(batch, pos) as usize;
        let value = &batch[pos + 4..pos + 4 + value_len];
        if this == name.as_bytes() {
            return Some(value);
        }
        pos += 4 + value_len;
    }
    None
}

/// One event as read back from a batch; all fields are zero-copy slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value)
    }
}

/// A validated batch and its records.
#[derive(Debug, Clone)]
pub struct Batch {
    pub header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Validates the batch at the front of `bytes`; the rest is ignored.
    pub fn parse(bytes: &Bytes, max_batch_bytes: usize) -> Result<Batch, DecodeError> {
        let header = validate(bytes, max_batch_bytes)?;
        Ok(Batch {
            header,
            bytes: bytes.slice(..header.size),
        })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.header.record_count as usize);
        let mut pos = BATCH_HEADER_BYTES;
        while pos < self.bytes.len() {
            let raw = parse_record(&self.bytes, pos, self.header.first_timestamp_ms)
                .expect("records of a validated batch parse");
            out.push(self.materialize(&raw));
            pos = raw.end;
        }
        out
    }

    fn materialize(&self, raw: &RawRecord) -> Record {
        let slice = |(at, len): (usize, usize)| self.bytes.slice(at..at + len);
        let mut headers = Vec::with_capacity(usize::from(raw.header_count));
        let mut pos = raw.headers_at;
        for _ in 0..raw.header_count {
            let name_len = usize::from(le_u16(&self.bytes, pos));
            let name = std::str::from_utf8(&self.bytes[pos + 2..pos + 2 + name_len])
                .expect("validated UTF-8")
                .to_owned();
            pos += 2 + name_len;
            let value_len = le_u32(&self.bytes, pos) as usize;
            headers.push((name, slice((pos + 4, value_len))));
            pos += 4 + value_len;
        }
        Record {
            offset: self.header.base_offset + u64::from(raw.offset_delta),
            timestamp_ms: raw.timestamp_ms,
            key: raw.key.map(slice),
            value: slice(raw.value),
            headers,
        }
    }
}

/// Splits a run of concatenated batches (a fetch response, a segment range)
/// into validated batches. Stops with an error at the first bad one.
pub fn split_batches(bytes: &Bytes, max_batch_bytes: usize) -> Result<Vec<Batch>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = bytes.slice(pos..);
        let batch = Batch::parse(&rest, max_batch_bytes)?;
        pos += batch.header.size;
        out.push(batch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bytes {
        let mut builder = BatchBuilder::new(3, 7, 100);
        builder.push(1_000, Some(b"k1"), b"hello", &[("type", b"click")]);
        builder.push(1_005, None, b"world", &[]);
        builder.finish()
    }

    #[test]
    fn capacity_does_not_change_the_bytes() {
        let build = |mut builder: BatchBuilder| {
            builder.push(1_000, Some(b"k1"), b"hello", &[("type", b"click")]);
            builder.push(1_005, None, &[9; 5000], &[]);
            builder.finish()
        };
        let sized = build(BatchBuilder::with_capacity(3, 7, 100, 1 << 20));
        assert_eq!(sized, build(BatchBuilder::new(3, 7, 100)));
        assert_eq!(sized, build(BatchBuilder::with_capacity(3, 7, 100, 0)));
    }

    #[test]
    fn golden_bytes() {
        let mut builder = BatchBuilder::new(5, 1, 2);
        builder.push(10, Some(b"k"), b"v", &[]);
        let bytes = builder.finish();
        let expected: Vec<u8> = [
            &0u64.to_le_bytes()[..],          // base offset
            &(64u32 + 24 - 12).to_le_bytes(), // length
            &[0; 4],                          // crc, patched below
            &[0x47, 0x53, 1, 0],              // magic, version, flags
            &1u32.to_le_bytes(),              // record count
            &10i64.to_le_bytes(),             // first timestamp
            &10i64.to_le_bytes(),             // max timestamp
            &1u64.to_le_bytes(),              // producer id
            &2u64.to_le_bytes(),              // base sequence
            &5u32.to_le_bytes(),              // origin shard
            &0u32.to_le_bytes(),              // reserved
            &20u32.to_le_bytes(),             // record length
            &0u32.to_le_bytes(),              // offset delta
            &0i32.to_le_bytes(),              // timestamp delta
            &1u32.to_le_bytes(),              // key length
            b"k",
            &1u32.to_le_bytes(), // value length
            b"v",
            &0u16.to_le_bytes(), // header count
        ]
        .concat();
        assert_eq!(bytes.len(), expected.len());
        assert_eq!(&bytes[..12], &expected[..12]);
        assert_eq!(&bytes[16..], &expected[16..]);
        let crc = crc32c::crc32c(&expected[16..]);
        assert_eq!(&bytes[12..16], &crc.to_le_bytes());
    }

    #[test]
    fn round_trip_records() {
        let bytes = sample();
        let batch = Batch::parse(&bytes, MAX_BATCH_BYTES).unwrap();
        assert_eq!(batch.header.record_count, 2);
        assert_eq!(batch.header.producer_id, 7);
        assert_eq!(batch.header.base_sequence, 100);
        assert_eq!(batch.header.origin_shard, 3);
        assert_eq!(batch.header.max_timestamp_ms, 1_005);
        let records = batch.records();
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            records[0].header("type").map(|v| &v[..]),
            Some(&b"click"[..])
        );
        assert_eq!(records[1].offset, 1);
        assert_eq!(records[1].timestamp_ms, 1_005);
        assert_eq!(records[1].key, None);
    }

    #[test]
    fn checked_is_one_whole_valid_batch() {
        let bytes = sample();
        let checked = Checked::new(bytes.clone(), MAX_BATCH_BYTES).unwrap();
        assert_eq!(checked.bytes(), &bytes);
        assert_eq!(
            *checked.header(),
            validate(&bytes, MAX_BATCH_BYTES).unwrap()
        );
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            Checked::new(Bytes::from(longer), MAX_BATCH_BYTES),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
        let mut corrupt = bytes.to_vec();
        corrupt[30] ^= 1;
        assert!(matches!(
            Checked::new(Bytes::from(corrupt), MAX_BATCH_BYTES),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            Checked::new(bytes.clone(), bytes.len() - 1),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn base_offset_is_outside_the_checksum() {
        let mut bytes = bytes::BytesMut::from(&sample()[..]);
        set_base_offset(&mut bytes, 12_345);
        let header = validate(&bytes, MAX_BATCH_BYTES).unwrap();
        assert_eq!(header.base_offset, 12_345);
        assert_eq!(header.last_offset(), 12_346);
    }

    #[test]
    fn every_flipped_byte_after_the_offset_is_rejected() {
        let bytes = sample();
        for at in 8..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[at] ^= 0x40;
            assert!(
                validate(&corrupt, MAX_BATCH_BYTES).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn only_the_forwarded_flag_is_known() {
        let plain = validate(&sample(), MAX_BATCH_BYTES).unwrap();
        assert!(!plain.forwarded);
        let mut builder = BatchBuilder::new(3, 7, 100).forwarded();
        builder.push(1_000, Some(b"k1"), b"hello", &[]);
        let forwarded = builder.finish();
        assert!(validate(&forwarded, MAX_BATCH_BYTES).unwrap().forwarded);
        let mut unknown = forwarded.to_vec();
        unknown[19] = FLAG_FORWARDED << 1;
        let crc = crc32c::crc32c(&unknown[CRC_START..]);
        unknown[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            validate(&unknown, MAX_BATCH_BYTES),
            Err(DecodeError::InvalidValue {
                field: "batch flags",
                value: 2
            })
        ));
    }

    #[test]
    fn truncated_batch_is_rejected() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(validate(&bytes[..len], MAX_BATCH_BYTES).is_err());
        }
    }

    #[test]
    fn routing_values_walk_keys_or_a_header_in_order() {
        let bytes = sample();
        let keys: Vec<Option<&[u8]>> = routing_values(&bytes, "").collect();
        assert_eq!(keys, vec![Some(&b"k1"[..]), None]);
        let types: Vec<Option<&[u8]>> = routing_values(&bytes, "type").collect();
        assert_eq!(types, vec![Some(&b"click"[..]), None]);
    }

    #[test]
    fn split_batches_walks_a_run() {
        let mut run = bytes::BytesMut::new();
        run.extend_from_slice(&sample());
        run.extend_from_slice(&sample());
        let batches = split_batches(&run.freeze(), MAX_BATCH_BYTES).unwrap();
        assert_eq!(batches.len(), 2);
    }
}
