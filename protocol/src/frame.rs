//! Frames: the length-prefixed envelope around every request and response,
//! and the check-then-parse step that tells a connection whether a whole
//! frame has arrived, without buffering past the size limit.
//!
//! ```text
//! request frame                       response frame
//! +0  u32 length (bytes after it)     +0  u32 length (bytes after it)
//! +4  u16 api key                     +4  u32 correlation id
//! +6  u16 api version                 +8  u16 error code (frame level)
//! +8  u32 correlation id              +10 body: the API's response when the
//! +12 body                                 code is 0, else a u16-length
//!                                          UTF-8 message
//! ```
//!
//! A frame-level error (unknown API, unsupported version, malformed body)
//! answers with an empty body and a message; per-shard errors travel inside
//! the API's own response.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, ErrorCode};

pub const LENGTH_PREFIX_BYTES: usize = 4;
pub const REQUEST_HEADER_BYTES: usize = 8;
pub const RESPONSE_HEADER_BYTES: usize = 6;
/// Default upper bound on a frame; brokers and clients may configure lower.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    pub error: ErrorCode,
}

/// What `check` found at the front of a read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame of this many bytes (length prefix included) is there.
    Complete(usize),
    /// More bytes are needed; the argument is the total frame size if known.
    Incomplete(Option<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than its header ({min})")]
    TooShort { len: usize, min: usize },
}

/// Looks at the front of `buf` without consuming it. The declared length is
/// checked against `max_frame_bytes` before the caller buffers the body.
pub fn check(
    buf: &[u8],
    min_body: usize,
    max_frame_bytes: usize,
) -> Result<FrameCheck, FrameError> {
    if buf.len() < LENGTH_PREFIX_BYTES {
        return Ok(FrameCheck::Incomplete(None));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    if len < min_body {
        return Err(FrameError::TooShort { len, min: min_body });
    }
    let total = LENGTH_PREFIX_BYTES + len;
    if buf.len() < total {
        return Ok(FrameCheck::Incomplete(Some(total)));
    }
    Ok(FrameCheck::Complete(total))
}

/// Splits a complete request frame (as sized by `check`) off the buffer.
pub fn split_request(buf: &mut BytesMut, total: usize) -> (RequestHeader, Bytes) {
    let mut frame = buf.split_to(total).freeze();
    frame.advance(LENGTH_PREFIX_BYTES);
    let header = RequestHeader {
        api_key: frame.get_u16_le(),
        api_version: frame.get_u16_le(),
        correlation_id: frame.get_u32_le(),
    };
    (header, frame)
}

/// Splits a complete response frame (as sized by `check`) off the buffer.
pub fn split_response(buf: &mut BytesMut, total: usize) -> (ResponseHeader, Bytes) {
    let mut frame = buf.split_to(total).freeze();
    frame.advance(LENGTH_PREFIX_BYTES);
    let header = ResponseHeader {
        correlation_id: frame.get_u32_le(),
        error: ErrorCode::from_u16(frame.get_u16_le()),
    };
    (header, frame)
}

fn prefix(w: &mut Writer, body_len: usize, header_len: usize) {
    let len = u32::try_from(header_len + body_len).expect("frame length fits u32");
    w.u32(len);
}

/// Encodes a request frame around an already encoded body.
pub fn encode_request(header: RequestHeader, body: Writer) -> Vec<Bytes> {
    let mut w = Writer::new();
    prefix(&mut w, body.len(), REQUEST_HEADER_BYTES);
    w.u16(header.api_key);
    w.u16(header.api_version);
    w.u32(header.correlation_id);
    let mut chunks = w.into_chunks();
    chunks.extend(body.into_chunks());
    chunks
}

/// Encodes a response frame around an already encoded body.
pub fn encode_response(correlation_id: u32, body: Writer) -> Vec<Bytes> {
    let mut w = Writer::new();
    prefix(&mut w, body.len(), RESPONSE_HEADER_BYTES);
    w.u32(correlation_id);
    w.u16(ErrorCode::None as u16);
    let mut chunks = w.into_chunks();
    chunks.extend(body.into_chunks());
    chunks
}

/// Encodes a frame-level error response with a human-readable message.
pub fn encode_error(correlation_id: u32, error: ErrorCode, message: &str) -> Vec<Bytes> {
    let message = truncate_utf8(message, crate::codec::MAX_STRING_BYTES);
    let mut body = Writer::new();
    body.string(message);
    let mut w = Writer::new();
    prefix(&mut w, body.len(), RESPONSE_HEADER_BYTES);
    w.u32(correlation_id);
    w.u16(error as u16);
    let mut chunks = w.into_chunks();
    chunks.extend(body.into_chunks());
    chunks
}

/// Reads the message of a frame-level error body.
pub fn decode_error_message(body: Bytes) -> Result<String, DecodeError> {
    let mut r = Reader::new(body);
    let message = r.string()?;
    r.finish()?;
    Ok(message)
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(chunks: Vec<Bytes>) -> BytesMut {
        let mut out = BytesMut::new();
        for chunk in chunks {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn request_golden_bytes() {
        let mut body = Writer::new();
        body.u8(0xAB);
        let header = RequestHeader {
            api_key: 6,
            api_version: 0,
            correlation_id: 0x01020304,
        };
        let bytes = concat(encode_request(header, body));
        assert_eq!(&bytes[..], &[9, 0, 0, 0, 6, 0, 0, 0, 4, 3, 2, 1, 0xAB][..]);
    }

    #[test]
    fn check_then_split_round_trip() {
        let mut body = Writer::new();
        body.u32(42);
        let header = RequestHeader {
            api_key: 7,
            api_version: 1,
            correlation_id: 99,
        };
        let mut buf = concat(encode_request(header, body));
        let whole = buf.len();
        assert_eq!(
            check(&buf[..whole - 1], REQUEST_HEADER_BYTES, 1024),
            Ok(FrameCheck::Incomplete(Some(whole)))
        );
        assert_eq!(
            check(&buf, REQUEST_HEADER_BYTES, 1024),
            Ok(FrameCheck::Complete(whole))
        );
        let (decoded, body) = split_request(&mut buf, whole);
        assert_eq!(decoded, header);
        assert_eq!(&body[..], &42u32.to_le_bytes());
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let buf = 2_000u32.to_le_bytes();
        assert_eq!(
            check(&buf, REQUEST_HEADER_BYTES, 1024),
            Err(FrameError::TooLarge {
                len: 2000,
                max: 1024
            })
        );
    }

    #[test]
    fn frame_shorter_than_header_is_rejected() {
        let buf = 3u32.to_le_bytes();
        assert_eq!(
            check(&buf, REQUEST_HEADER_BYTES, 1024),
            Err(FrameError::TooShort { len: 3, min: 8 })
        );
    }

    #[test]
    fn error_frame_carries_code_and_message() {
        let mut buf = concat(encode_error(5, ErrorCode::UnknownApi, "api 77"));
        let total = match check(&buf, RESPONSE_HEADER_BYTES, 1024) {
            Ok(FrameCheck::Complete(total)) => total,
            other => panic!("unexpected {other:?}"),
        };
        let (header, body) = split_response(&mut buf, total);
        assert_eq!(header.correlation_id, 5);
        assert_eq!(header.error, ErrorCode::UnknownApi);
        assert_eq!(decode_error_message(body).unwrap(), "api 77");
    }
}
