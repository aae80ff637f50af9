//! The topology journal of one stream: the commit point of every change,
//! as one record written in place and made durable with one fdatasync.
//!
//! `stream.meta` holds the topology as of its epoch; the journal holds the
//! changes after it, each a record naming the sealed shards' ends, the
//! successors (with the pool slot each was taken from, see
//! `streams::pool`) and the producer state they inherit. Loading a stream
//! applies the records that continue the metadata's epoch, one after
//! another, and stops at the first that does not: zeros, a torn record, or
//! one left from before the last compaction (its epoch is not the next).
//! Compaction writes the metadata at the current epoch (crash-safely, as
//! ever) and starts writing records at position 0 again.
//!
//! The file is zero-filled when created, so a record overwrites allocated
//! blocks: its fdatasync flushes data only, no file-system metadata, which
//! is the cheapest durable write there is. A record past the zeroed part
//! extends the file, and its fdatasync covers the new size.
//!
//! ```text
//! record (little-endian), back to back from position 0:
//! +0  [u8; 4] magic      "SGTJ"
//! +4  u16     version    1
//! +6  u16     reserved   0
//! +8  u32     body_len   <= MAX_RECORD_BYTES
//! +12 u32     crc32c     over bytes 0..12, then the body
//! +16 body:   u32 json_len, JSON {epoch, sealed: [[id, end]], created:
//!             [{shard: ShardMeta, slot}]}, then the inherited producer
//!             state (`ProducerState::encode`)
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::change::{apply, check_coverage, Plan};
use super::meta::{ShardMeta, StreamMeta};
use crate::error::BrokerError;
use crate::storage::ProducerState;

pub const JOURNAL_FILE: &str = "topology.journal";
const RECORD_MAGIC: [u8; 4] = *b"SGTJ";
const RECORD_VERSION: u16 = 1;
const RECORD_HEADER_BYTES: usize = 16;
const RECORD_CRC_AT: usize = 12;
/// Zeroed when the journal is created; dozens of typical records fit.
pub const JOURNAL_ZEROED_BYTES: u64 = 64 << 10;
/// Past this position a settled journal is compacted after a change.
const COMPACT_AT_BYTES: u64 = JOURNAL_ZEROED_BYTES / 2;
/// Bounds what decoding trusts: 4,096 successors and 10,000 producers fit.
const MAX_RECORD_BYTES: usize = 8 << 20;
/// Bounds what loading reads; a change that would pass it is refused.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

const _: () = assert!(RECORD_HEADER_BYTES == 4 + 2 + 2 + 4 + 4);
const _: () = assert!(RECORD_HEADER_BYTES == RECORD_CRC_AT + 4);
const _: () = assert!(COMPACT_AT_BYTES < JOURNAL_ZEROED_BYTES);
const _: () = assert!((MAX_RECORD_BYTES as u64) < MAX_JOURNAL_BYTES);

/// A successor and where its directory came from: `Some(slot)` if it was
/// taken from the pool of its data directory (and may still be there after
/// a crash: the move out of the pool is not synced before the commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub shard: ShardMeta,
    #[serde(default)]
    pub slot: Option<String>,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The epoch the change published: the metadata's epoch plus one.
    pub epoch: u64,
    /// Each sealed shard and its end offset.
    pub sealed: Vec<(u32, u64)>,
    pub created: Vec<Claim>,
    /// What every successor inherits (`ProducerState::inherited`).
    pub producers: ProducerState,
}

#[derive(Serialize, Deserialize)]
struct RecordJson {
    epoch: u64,
    sealed: Vec<(u32, u64)>,
    created: Vec<Claim>,
}

/// What decoding found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A whole record and its length in bytes.
    Record(Record, usize),
    /// No record: zeros, a torn write, or bytes of an overwritten one.
    End,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let json = RecordJson {
            epoch: self.epoch,
            sealed: self.sealed.clone(),
            created: self.created.clone(),
        };
        let json = serde_json::to_vec(&json).expect("a journal record serializes");
        let mut body = Vec::with_capacity(4 + json.len() + 4);
        body.extend_from_slice(&(json.len() as u32).to_le_bytes());
        body.extend_from_slice(&json);
        self.producers.encode(&mut body);
        assert!(body.len() <= MAX_RECORD_BYTES, "a record is bounded");
        let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes the record at the start of `bytes`. `Err` for a record whose
    /// checksum holds but whose version or body this build cannot read.
    pub fn decode(bytes: &[u8]) -> Result<Found, String> {
        let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
            return Ok(Found::End);
        };
        if header[..4] != RECORD_MAGIC {
            return Ok(Found::End);
        }
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4"));
        let body_len = u32_at(8) as usize;
        if body_len > MAX_RECORD_BYTES || bytes.len() - RECORD_HEADER_BYTES < body_len {
            return Ok(Found::End);
        }
        let body = &bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + body_len];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..RECORD_CRC_AT]), body);
        if crc != u32_at(RECORD_CRC_AT) {
            return Ok(Found::End);
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != RECORD_VERSION {
            return Err(format!("unsupported journal record version {version}"));
        }
        let json_len = body
            .get(..4)
            .map(|len| u32::from_le_bytes(len.try_into().expect("4")) as usize)
            .ok_or("a record body without its JSON length")?;
        let json = body
            .get(4..4 + json_len)
            .ok_or("a record's JSON length exceeds its body")?;
        let json: RecordJson = serde_json::from_slice(json).map_err(|err| err.to_string())?;
        let producers = ProducerState::decode(&body[4 + json_len..])?;
        let record = Record {
            epoch: json.epoch,
            sealed: json.sealed,
            created: json.created,
            producers,
        };
        Ok(Found::Record(record, RECORD_HEADER_BYTES + body_len))
    }

    /// The metadata after this record, which must continue `meta`.
    pub fn apply(&self, meta: &StreamMeta) -> Result<StreamMeta, String> {
        if self.epoch != meta.epoch + 1 {
            return Err(format!(
                "record of epoch {} after metadata of epoch {}",
                self.epoch, meta.epoch
            ));
        }
        for (id, _) in &self.sealed {
            let open = meta
                .shards
                .iter()
                .any(|shard| shard.id == *id && shard.sealed_at.is_none());
            if !open {
                return Err(format!("record seals shard {id}, which is not open"));
            }
        }
        for (at, claim) in self.created.iter().enumerate() {
            if u64::from(claim.shard.id) != u64::from(meta.next_shard_id) + at as u64 {
                return Err(format!(
                    "record creates shard {} out of order",
                    claim.shard.id
                ));
            }
        }
        let plan = Plan {
            sealed: self.sealed.iter().map(|(id, _)| *id).collect(),
            created: self
                .created
                .iter()
                .map(|claim| claim.shard.clone())
                .collect(),
        };
        let next = apply(meta, &plan, &self.sealed);
        check_coverage(&next).map(|()| next)
    }
}

/// Why `Journal::append` failed.
#[derive(Debug)]
pub enum AppendError {
    /// The record is certainly not in force: the change can be undone.
    NotWritten(String),
    /// The record may or may not survive a crash: keep the parents sealed.
    Unknown(String),
}

/// The open journal of one stream; used under the stream's change lock.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    position: u64,
    /// The length of the record appended last, while it may be retracted.
    last_len: u64,
    /// Every record since the last compaction was settled (its successors'
    /// state made durable outside the journal), so compaction may drop them.
    settled: bool,
}

impl Journal {
    /// Creates the zeroed journal of a new stream in `dir`. The caller
    /// fsyncs `dir` before anything relies on the journal's entry.
    pub fn create(dir: &Path) -> Result<Journal, BrokerError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |source| BrokerError::Io {
            op: "create topology journal",
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err)?;
        file.write_all_at(&vec![0; JOURNAL_ZEROED_BYTES as usize], 0)
            .and_then(|()| file.sync_all())
            .map_err(io_err)?;
        Ok(Journal {
            file,
            path,
            position: 0,
            last_len: 0,
            settled: true,
        })
    }

    /// Opens the journal in `dir` and applies its records to `meta`:
    /// returns the journal (positioned after them), the records applied
    /// and the metadata they lead to.
    pub fn open(
        dir: &Path,
        meta: StreamMeta,
    ) -> Result<(Journal, Vec<Record>, StreamMeta), BrokerError> {
        let path = dir.join(JOURNAL_FILE);
        let corrupt = |reason: String| BrokerError::CorruptMetadata {
            path: path.clone(),
            reason,
        };
        let io_err = |source| BrokerError::Io {
            op: "open topology journal",
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let len_bytes = file.metadata().map_err(io_err)?.len();
        if len_bytes > MAX_JOURNAL_BYTES {
            return Err(corrupt(format!(
                "{len_bytes} bytes exceed {MAX_JOURNAL_BYTES}"
            )));
        }
        let mut bytes = vec![0; len_bytes as usize];
        file.read_exact_at(&mut bytes, 0).map_err(io_err)?;
        let (mut meta, mut records, mut position) = (meta, Vec::new(), 0usize);
        while let Found::Record(record, len) =
            Record::decode(&bytes[position..]).map_err(corrupt)?
        {
            if record.epoch != meta.epoch + 1 {
                break;
            }
            meta = record.apply(&meta).map_err(corrupt)?;
            records.push(record);
            position += len;
        }
        let journal = Journal {
            file,
            path,
            position: position as u64,
            last_len: 0,
            settled: records.is_empty(),
        };
        Ok((journal, records, meta))
    }

    /// Writes `record` at the end and fdatasyncs it: the commit point of a
    /// change. On a failure the record is overwritten with zeros, so that
    /// no crash can bring it back, if that can be done.
    pub fn append(&mut self, record: &Record) -> Result<(), AppendError> {
        let bytes = record.encode();
        let end = self.position + bytes.len() as u64;
        if end > MAX_JOURNAL_BYTES {
            return Err(AppendError::NotWritten(format!(
                "the topology journal {} is full until a restart compacts it",
                self.path.display()
            )));
        }
        let written = self
            .file
            .write_all_at(&bytes, self.position)
            .and_then(|()| self.file.sync_data());
        if let Err(err) = written {
            let zeros = vec![0; bytes.len()];
            let retracted = self
                .file
                .write_all_at(&zeros, self.position)
                .and_then(|()| self.file.sync_data());
            let reason = format!("writing {}: {err}", self.path.display());
            return Err(match retracted {
                Ok(()) => AppendError::NotWritten(reason),
                Err(_) => AppendError::Unknown(reason),
            });
        }
        self.last_len = bytes.len() as u64;
        self.position = end;
        self.settled = false;
        Ok(())
    }

    /// Takes back the record just appended, whose change could not be put
    /// in force after all: overwrites it with zeros and fdatasyncs. On an
    /// error the record may survive a crash.
    pub fn retract_last(&mut self) -> Result<(), String> {
        assert!(self.last_len > 0, "a record to retract was appended");
        let at = self.position - self.last_len;
        let zeros = vec![0; self.last_len as usize];
        self.file
            .write_all_at(&zeros, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|err| format!("retracting from {}: {err}", self.path.display()))?;
        self.position = at;
        self.last_len = 0;
        Ok(())
    }

    /// Every record so far is settled, or (`false`) one failed to settle.
    pub fn settled(&mut self, settled: bool) {
        self.settled = settled;
    }

    /// Whether the caller should compact now: settled and past half.
    pub fn wants_compaction(&self) -> bool {
        self.settled && self.position > COMPACT_AT_BYTES
    }

    /// The metadata now holds every record: write the next at 0.
    pub fn compacted(&mut self) {
        assert!(self.settled, "only settled records are compacted away");
        self.position = 0;
        self.last_len = 0;
    }

    pub fn position(&self) -> u64 {
        self.position
    }
}

#[cfg(test)]
mod tests;
