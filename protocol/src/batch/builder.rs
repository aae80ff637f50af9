//! The producer side of the batch format (see the parent module): records
//! appended into one buffer, the header and checksum filled in at the end.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    BATCH_HEADER_BYTES, BATCH_MAGIC, BATCH_PREFIX_BYTES, BATCH_VERSION, CRC_START, FLAG_FORWARDED,
    MAX_BATCH_BYTES, MAX_HEADERS_PER_RECORD, NO_KEY,
};

/// Builds a batch on the producer side.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    record_count: u32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
    flags: u8,
}

impl BatchBuilder {
    /// A batch for shard `origin_shard` of a stream; `producer_id` 0 means
    /// not idempotent.
    pub fn new(origin_shard: u32, producer_id: u64, base_sequence: u64) -> BatchBuilder {
        BatchBuilder::with_capacity(origin_shard, producer_id, base_sequence, 4096)
    }

    /// `new` with room for `capacity` bytes, so a producer that knows how
    /// big the batch will be never grows (and copies) the buffer.
    pub fn with_capacity(
        origin_shard: u32,
        producer_id: u64,
        base_sequence: u64,
        capacity: usize,
    ) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity.clamp(BATCH_HEADER_BYTES, MAX_BATCH_BYTES));
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        buf[40..48].copy_from_slice(&producer_id.to_le_bytes());
        buf[48..56].copy_from_slice(&base_sequence.to_le_bytes());
        buf[56..60].copy_from_slice(&origin_shard.to_le_bytes());
        BatchBuilder {
            buf,
            record_count: 0,
            first_timestamp_ms: 0,
            max_timestamp_ms: i64::MIN,
            flags: 0,
        }
    }

    /// Marks the batch as a forwarded piece (`FLAG_FORWARDED`): for the
    /// broker only, which refuses it from a producer.
    pub fn forwarded(mut self) -> BatchBuilder {
        self.flags |= FLAG_FORWARDED;
        self
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes one record will take in the batch.
    pub fn record_size(key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) -> usize {
        4 + 4
            + 4
            + 4
            + key.map_or(0, <[u8]>::len)
            + 4
            + value.len()
            + 2
            + headers
                .iter()
                .map(|(name, value)| 2 + name.len() + 4 + value.len())
                .sum::<usize>()
    }

    /// Appends one record. Panics on inputs the format cannot hold (more than
    /// `MAX_HEADERS_PER_RECORD` headers, a header name over 64 KiB, a
    /// timestamp more than 24 days from the first); callers check limits.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) {
        assert!(headers.len() <= MAX_HEADERS_PER_RECORD, "too many headers");
        if self.record_count == 0 {
            self.first_timestamp_ms = timestamp_ms;
        }
        let delta = i32::try_from(timestamp_ms - self.first_timestamp_ms)
            .expect("timestamps in one batch lie within 24 days");
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let size = Self::record_size(key, value, headers);
        self.buf.reserve(size);
        self.buf.put_u32_le((size - 4) as u32);
        self.buf.put_u32_le(self.record_count);
        self.buf.put_i32_le(delta);
        match key {
            Some(key) => {
                self.buf.put_u32_le(key.len() as u32);
                self.buf.put_slice(key);
            }
            None => self.buf.put_u32_le(NO_KEY),
        }
        self.buf.put_u32_le(value.len() as u32);
        self.buf.put_slice(value);
        self.buf.put_u16_le(headers.len() as u16);
        for (name, value) in headers {
            let name_len = u16::try_from(name.len()).expect("header name fits u16");
            self.buf.put_u16_le(name_len);
            self.buf.put_slice(name.as_bytes());
            self.buf.put_u32_le(value.len() as u32);
            self.buf.put_slice(value);
        }
        self.record_count += 1;
    }

    /// Seals the batch: fills the header and computes the CRC.
    pub fn finish(mut self) -> Bytes {
        assert!(self.record_count > 0, "a batch needs at least one record");
        let len = (self.buf.len() - BATCH_PREFIX_BYTES) as u32;
        self.buf[8..12].copy_from_slice(&len.to_le_bytes());
        self.buf[16..18].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        self.buf[18] = BATCH_VERSION;
        self.buf[19] = self.flags;
        self.buf[20..24].copy_from_slice(&self.record_count.to_le_bytes());
        self.buf[24..32].copy_from_slice(&self.first_timestamp_ms.to_le_bytes());
        self.buf[32..40].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf[CRC_START..]);
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        self.buf.freeze()
    }
}
