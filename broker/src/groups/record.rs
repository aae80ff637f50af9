//! The byte layout of one `offsets.log` record. Pure: encoding and checked
//! decoding, no I/O. The store appends records and replays them in order.
//!
//! ```text
//! record header (12 bytes, little-endian)
//! +0  u32 body_len     bytes after the header, <= RECORD_BODY_BYTES_MAX
//! +4  u32 crc32c       over bytes 8..end (magic, version, kind, body)
//! +8  u16 magic        0x4f53 ("SO" on disk)
//! +10 u8  version      1
//! +11 u8  kind         1 = commit, 2 = delete stream
//! +12 body
//!
//! commit body
//!     u8 group_len, group bytes (a valid name)
//!     u8 stream_len, stream bytes (a valid name)
//!     u32 count (<= ENTRIES_PER_RECORD_MAX), then count entries:
//!     u32 shard_id, u64 offset (the next offset to read)
//!
//! delete-stream body
//!     u8 stream_len, stream bytes
//! ```
//!
//! A reader rejects an unknown magic, version or kind, a length over the
//! bound, a checksum mismatch, and a body that does not parse exactly.

use surge_protocol::DecodeError;

pub(crate) const RECORD_HEADER_BYTES: usize = 12;
pub(crate) const RECORD_MAGIC: u16 = 0x4f53;
pub(crate) const RECORD_VERSION: u8 = 1;
const KIND_COMMIT: u8 = 1;
const KIND_DELETE_STREAM: u8 = 2;
/// Bytes of `(u32 shard_id, u64 offset)`.
pub(crate) const ENTRY_BYTES: usize = 12;
/// Offsets in one record; a larger snapshot is split over several records.
pub(crate) const ENTRIES_PER_RECORD_MAX: usize = 65_536;
const NAME_BYTES_MAX: usize = 255;
pub(crate) const RECORD_BODY_BYTES_MAX: usize =
    2 * (1 + NAME_BYTES_MAX) + 4 + ENTRIES_PER_RECORD_MAX * ENTRY_BYTES;

const _: () = assert!(RECORD_HEADER_BYTES == 4 + 4 + 2 + 1 + 1);
const _: () = assert!(ENTRY_BYTES == 4 + 8);
const _: () = assert!(RECORD_BODY_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(ENTRIES_PER_RECORD_MAX >= surge_protocol::codec::MAX_ARRAY_LEN);

/// One logical change to the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Commit {
        group: String,
        stream: String,
        offsets: Vec<(u32, u64)>,
    },
    DeleteStream {
        stream: String,
    },
}

/// The parsed fixed header, before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) body_len: usize,
    crc: u32,
}

/// Appends the encoded record to `out`.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    out.push(RECORD_VERSION);
    match record {
        Record::Commit {
            group,
            stream,
            offsets,
        } => {
            assert!(offsets.len() <= ENTRIES_PER_RECORD_MAX, "commit too large");
            out.push(KIND_COMMIT);
            put_name(out, group);
            put_name(out, stream);
            let count = u32::try_from(offsets.len()).expect("bounded above");
            out.extend_from_slice(&count.to_le_bytes());
            for (shard_id, offset) in offsets {
                out.extend_from_slice(&shard_id.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
        Record::DeleteStream { stream } => {
            out.push(KIND_DELETE_STREAM);
            put_name(out, stream);
        }
    }
    let body_len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(body_len <= RECORD_BODY_BYTES_MAX, "body within its bound");
    let body_len = u32::try_from(body_len).expect("bounded above");
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let len = u8::try_from(name.len()).expect("names are at most 255 bytes");
    out.push(len);
    out.extend_from_slice(name.as_bytes());
}

/// Parses the length and checksum and bounds the length before the caller
/// allocates for the body.
pub(crate) fn decode_header(bytes: &[u8; RECORD_HEADER_BYTES]) -> Result<Header, DecodeError> {
    let body_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if body_len > RECORD_BODY_BYTES_MAX {
        return Err(DecodeError::LengthTooLarge {
            len: body_len,
            max: RECORD_BODY_BYTES_MAX,
        });
    }
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Ok(Header { body_len, crc })
}

/// Verifies and decodes a record from its header bytes and its body.
pub(crate) fn decode(
    header_bytes: &[u8; RECORD_HEADER_BYTES],
    header: Header,
    body: &[u8],
) -> Result<Record, DecodeError> {
    assert_eq!(body.len(), header.body_len, "caller reads exactly body_len");
    let computed = crc32c::crc32c_append(crc32c::crc32c(&header_bytes[8..]), body);
    if computed != header.crc {
        return Err(DecodeError::ChecksumMismatch {
            stored: header.crc,
            computed,
        });
    }
    let magic = u16::from_le_bytes([header_bytes[8], header_bytes[9]]);
    if magic != RECORD_MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    if header_bytes[10] != RECORD_VERSION {
        return Err(DecodeError::UnsupportedBatchVersion {
            found: header_bytes[10],
        });
    }
    let mut cursor = Cursor { body, at: 0 };
    let record = match header_bytes[11] {
        KIND_COMMIT => decode_commit(&mut cursor)?,
        KIND_DELETE_STREAM => Record::DeleteStream {
            stream: cursor.name()?,
        },
        kind => {
            return Err(DecodeError::InvalidValue {
                field: "record kind",
                value: u64::from(kind),
            })
        }
    };
    if cursor.at != body.len() {
        return Err(DecodeError::TrailingBytes {
            extra: body.len() - cursor.at,
        });
    }
    Ok(record)
}

fn decode_commit(cursor: &mut Cursor<'_>) -> Result<Record, DecodeError> {
    let group = cursor.name()?;
    let stream = cursor.name()?;
    let count = cursor.u32()? as usize;
    if count > ENTRIES_PER_RECORD_MAX {
        return Err(DecodeError::TooManyElements {
            count,
            max: ENTRIES_PER_RECORD_MAX,
        });
    }
    // Check the bytes are there before allocating for them.
    cursor.need(count * ENTRY_BYTES)?;
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        let shard_id = cursor.u32()?;
        let offset = u64::from_le_bytes(cursor.take(8)?.try_into().expect("8 bytes"));
        offsets.push((shard_id, offset));
    }
    Ok(Record::Commit {
        group,
        stream,
        offsets,
    })
}

/// A bounded reader over a record body.
struct Cursor<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn need(&self, count: usize) -> Result<(), DecodeError> {
        let have = self.body.len() - self.at;
        if have < count {
            return Err(DecodeError::UnexpectedEof {
                offset: self.at,
                need: count,
                have,
            });
        }
        Ok(())
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        self.need(count)?;
        let bytes = &self.body[self.at..self.at + count];
        self.at += count;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn name(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.take(1)?[0]);
        let bytes = self.take(len)?;
        let name = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        if !surge_protocol::valid_name(name) {
            return Err(DecodeError::InvalidValue {
                field: "name length",
                value: len as u64,
            });
        }
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> ([u8; RECORD_HEADER_BYTES], &[u8]) {
        let header: [u8; RECORD_HEADER_BYTES] =
            bytes[..RECORD_HEADER_BYTES].try_into().expect("header");
        (header, &bytes[RECORD_HEADER_BYTES..])
    }

    fn roundtrip(bytes: &[u8]) -> Result<Record, DecodeError> {
        let (header_bytes, body) = split(bytes);
        let header = decode_header(&header_bytes)?;
        decode(&header_bytes, header, body)
    }

    #[test]
    fn golden_bytes_commit() {
        let record = Record::Commit {
            group: "g".into(),
            stream: "s".into(),
            offsets: vec![(7, 0x0102)],
        };
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        let body: [u8; 20] = [
            1, b'g', 1, b's', 1, 0, 0, 0, 7, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0,
        ];
        let crc = crc32c::crc32c(&[&[0x53, 0x4f, 1, 1][..], &body].concat());
        let mut expected = vec![20, 0, 0, 0];
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0x53, 0x4f, 1, 1]);
        expected.extend_from_slice(&body);
        assert_eq!(bytes, expected);
        assert_eq!(roundtrip(&bytes), Ok(record));
    }

    #[test]
    fn golden_bytes_delete_stream() {
        let record = Record::DeleteStream {
            stream: "ab".into(),
        };
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        assert_eq!(&bytes[..4], &[3, 0, 0, 0]);
        assert_eq!(&bytes[8..], &[0x53, 0x4f, 1, 2, 2, b'a', b'b']);
        assert_eq!(roundtrip(&bytes), Ok(record));
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let record = Record::Commit {
            group: "group".into(),
            stream: "stream".into(),
            offsets: vec![(1, 10), (2, 20)],
        };
        let mut bytes = Vec::new();
        encode(&record, &mut bytes);
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0x10;
            let (header_bytes, body) = split(&flipped);
            let result = decode_header(&header_bytes).and_then(|header| {
                if header.body_len != body.len() {
                    return Err(DecodeError::LengthTooLarge { len: 0, max: 0 });
                }
                decode(&header_bytes, header, body)
            });
            assert!(result.is_err(), "flip at byte {index} accepted");
        }
    }

    #[test]
    fn length_over_the_bound_is_rejected_before_reading() {
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_header(&header),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }
}
