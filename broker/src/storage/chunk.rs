//! `Chunk`: the batches of one group commit bound for one segment, and the
//! buffers of the gather write that stores them.

use std::io::IoSlice;

use bytes::Bytes;
use surge_protocol::batch::{self, BatchHeader, BASE_OFFSET_BYTES};

/// Batches accepted for one segment, written as they arrived except for
/// their first bytes, the base offset, which the log assigns.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    base_offsets: Vec<[u8; BASE_OFFSET_BYTES]>,
    batches: Vec<Bytes>,
    pub(crate) headers: Vec<BatchHeader>,
    pub(crate) len: usize,
}

impl Chunk {
    pub(crate) fn with_capacity(batches: usize) -> Chunk {
        Chunk {
            base_offsets: Vec::with_capacity(batches),
            batches: Vec::with_capacity(batches),
            headers: Vec::with_capacity(batches),
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &Bytes, header: BatchHeader) {
        self.base_offsets
            .push(batch::base_offset_bytes(header.base_offset));
        self.batches.push(bytes.clone());
        self.headers.push(header);
        self.len += bytes.len();
    }

    /// The buffers of one gather write: each batch's offset, then the rest
    /// of the batch.
    pub(crate) fn buffers(&self) -> Vec<IoSlice<'_>> {
        self.base_offsets
            .iter()
            .zip(&self.batches)
            .flat_map(|(offset, batch)| {
                [
                    IoSlice::new(offset),
                    IoSlice::new(&batch[BASE_OFFSET_BYTES..]),
                ]
            })
            .collect()
    }
}
