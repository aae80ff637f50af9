//! Record batches as a producer may send them. The input first builds a
//! valid batch (records with keys, values and headers, as the client's
//! builder makes them), then flips bytes of it and may cut it short; the
//! length field and checksum are then made right, so the fuzzer explores
//! the record framing rather than the CRC. A batch `validate` accepts must
//! give up its records and routing values without a panic; anything else
//! is an error.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use surge_protocol::batch::{
    self, Batch, BatchBuilder, BATCH_HEADER_BYTES, BATCH_PREFIX_BYTES, CRC_START, MAX_BATCH_BYTES,
};

/// Reads the fuzzer's bytes front to back; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

const HEADER_NAMES: [&str; 4] = ["type", "sent_us", "é", ""];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut builder = BatchBuilder::new(input.u32(), u64::from(input.u32()), 0);
    for record in 0..1 + input.byte() % 8 {
        let key = match input.byte() % 17 {
            16 => None,
            len => Some(input.take(usize::from(len))),
        };
        let value_len = usize::from(input.byte() % 64);
        let value = input.take(value_len);
        let headers: Vec<(&str, &[u8])> = (0..input.byte() % 4)
            .map(|_| {
                let name = HEADER_NAMES[usize::from(input.byte() % 4)];
                let value_len = usize::from(input.byte() % 8);
                (name, input.take(value_len))
            })
            .collect();
        builder.push(i64::from(record) * 3, key, value, &headers);
    }
    let mut bytes = builder.finish().to_vec();
    for _ in 0..input.byte() % 8 {
        let at = input.u32() as usize % bytes.len();
        bytes[at] ^= input.byte();
    }
    let keep = bytes.len() - usize::from(input.byte()) % 8;
    bytes.truncate(keep.max(BATCH_HEADER_BYTES));
    let length = (bytes.len() - BATCH_PREFIX_BYTES) as u32;
    bytes[8..12].copy_from_slice(&length.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());

    let bytes = Bytes::from(bytes);
    if let Ok(batch) = Batch::parse(&bytes, MAX_BATCH_BYTES) {
        let records = batch.records();
        assert_eq!(records.len(), batch.header.record_count as usize);
        for routing_header in ["", "type"] {
            let values = batch::routing_values(batch.bytes(), routing_header).count();
            assert_eq!(values, records.len());
        }
    }
    let _ = batch::split_batches(&bytes, MAX_BATCH_BYTES);
});
