//! Primitive encoding shared by every message: a bounds-checked `Reader` over
//! a frame's `Bytes` (slices out of it are zero-copy) and the `Writer` that
//! builds outgoing frames, able to splice in shared `Bytes` (mmap'd records)
//! without copying them.
//!
//! All integers are little-endian. Strings are `u16` length + UTF-8; byte
//! blobs are `u32` length + bytes; arrays are `u32` count + elements. Every
//! length read is checked against what is left and against a limit before
//! anything is allocated.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Upper bound on the elements of any array in a message. A frame is at most
/// `MAX_FRAME_BYTES`, and every element takes at least one byte, so this only
/// stops absurd counts from reserving memory before the bytes arrive.
pub const MAX_ARRAY_LEN: usize = 1 << 16;
/// Upper bound on any string (stream, group, member and client names).
pub const MAX_STRING_BYTES: usize = 1024;

/// Reads primitives from a frame body, never past its end.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, need: usize) -> Result<&[u8], DecodeError> {
        let have = self.remaining();
        if need > have {
            return Err(DecodeError::UnexpectedEof {
                offset: self.pos,
                need,
                have,
            });
        }
        let start = self.pos;
        self.pos += need;
        Ok(&self.buf[start..self.pos])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take_array()?))
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidValue {
                field: "bool",
                value: u64::from(other),
            }),
        }
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        if len > MAX_STRING_BYTES {
            return Err(DecodeError::LengthTooLarge {
                len,
                max: MAX_STRING_BYTES,
            });
        }
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A `u32`-length blob, returned as a zero-copy slice of the frame.
    pub fn bytes(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::LengthTooLarge { len, max });
        }
        let start = self.pos;
        self.take(len)?;
        Ok(self.buf.slice(start..start + len))
    }

    /// An array count, bounded by `MAX_ARRAY_LEN` and by the bytes left
    /// (each element needs at least `min_element_bytes`).
    pub fn array_len(&mut self, min_element_bytes: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > MAX_ARRAY_LEN {
            return Err(DecodeError::TooManyElements {
                count,
                max: MAX_ARRAY_LEN,
            });
        }
        let need = count.saturating_mul(min_element_bytes.max(1));
        if need > self.remaining() {
            return Err(DecodeError::UnexpectedEof {
                offset: self.pos,
                need,
                have: self.remaining(),
            });
        }
        Ok(count)
    }

    pub fn array<T>(
        &mut self,
        min_element_bytes: usize,
        mut element: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.array_len(min_element_bytes)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(element(self)?);
        }
        Ok(out)
    }

    /// Fails unless every byte was consumed: a message with trailing bytes
    /// was built by a peer that disagrees with us about its layout.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

/// Builds an outgoing frame as a list of chunks: encoded fields go into a
/// `BytesMut`, shared payloads (records straight from a segment map) are
/// appended as their own chunk so they reach the socket uncopied.
#[derive(Debug, Default)]
pub struct Writer {
    current: BytesMut,
    chunks: Vec<Bytes>,
    len: usize,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Total bytes written so far, shared chunks included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn u8(&mut self, value: u8) {
        self.current.put_u8(value);
        self.len += 1;
    }

    pub fn u16(&mut self, value: u16) {
        self.current.put_u16_le(value);
        self.len += 2;
    }

    pub fn u32(&mut self, value: u32) {
        self.current.put_u32_le(value);
        self.len += 4;
    }

    pub fn u64(&mut self, value: u64) {
        self.current.put_u64_le(value);
        self.len += 8;
    }

    pub fn i64(&mut self, value: i64) {
        self.current.put_i64_le(value);
        self.len += 8;
    }

    pub fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// Strings longer than `MAX_STRING_BYTES` are a programmer error: every
    /// name is validated before it reaches an encoder.
    pub fn string(&mut self, value: &str) {
        assert!(
            value.len() <= MAX_STRING_BYTES,
            "string of {} bytes exceeds MAX_STRING_BYTES",
            value.len()
        );
        self.u16(value.len() as u16);
        self.current.put_slice(value.as_bytes());
        self.len += value.len();
    }

    /// A `u32`-length blob; the payload is spliced in without a copy.
    pub fn bytes(&mut self, value: &Bytes) {
        let len = u32::try_from(value.len()).expect("blob length fits u32: frames are bounded");
        self.u32(len);
        if value.len() < 256 {
            self.current.put_slice(value);
        } else {
            self.flush_current();
            self.chunks.push(value.clone());
        }
        self.len += value.len();
    }

    pub fn array_len(&mut self, count: usize) {
        assert!(
            count <= MAX_ARRAY_LEN,
            "array of {count} exceeds MAX_ARRAY_LEN"
        );
        self.u32(count as u32);
    }

    fn flush_current(&mut self) {
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
    }

    /// The frame as chunks, ready for a vectored write.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.flush_current();
        self.chunks
    }

    /// The frame as one contiguous buffer (copies shared chunks).
    pub fn into_bytes(self) -> Bytes {
        let chunks = self.into_chunks();
        if chunks.len() == 1 {
            return chunks.into_iter().next().expect("one chunk");
        }
        let total = chunks.iter().map(Bytes::len).sum();
        let mut out = BytesMut::with_capacity(total);
        for chunk in chunks {
            out.put_slice(&chunk);
        }
        out.freeze()
    }
}

/// A value with a wire form: primitives, arrays, and every message body.
/// `MIN_BYTES` is the least a value can take, used to bound array counts
/// by the bytes actually present.
pub trait Wire: Sized {
    const MIN_BYTES: usize;
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Decodes a whole body, rejecting trailing bytes.
    fn decode_all(body: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let value = Self::decode(&mut r)?;
        r.finish()?;
        Ok(value)
    }

    fn to_bytes(&self) -> Bytes {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

macro_rules! wire_primitive {
    ($($ty:ty => $method:ident, $bytes:expr;)*) => {$(
        impl Wire for $ty {
            const MIN_BYTES: usize = $bytes;
            fn encode(&self, w: &mut Writer) {
                w.$method(*self);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                r.$method()
            }
        }
    )*};
}

wire_primitive! {
    u8 => u8, 1;
    u16 => u16, 2;
    u32 => u32, 4;
    u64 => u64, 8;
    i64 => i64, 8;
    bool => bool, 1;
}

impl Wire for String {
    const MIN_BYTES: usize = 2;
    fn encode(&self, w: &mut Writer) {
        w.string(self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string()
    }
}

impl Wire for Bytes {
    const MIN_BYTES: usize = 4;
    fn encode(&self, w: &mut Writer) {
        w.bytes(self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.bytes(crate::frame::MAX_FRAME_BYTES)
    }
}

impl<T: Wire> Wire for Vec<T> {
    const MIN_BYTES: usize = 4;
    fn encode(&self, w: &mut Writer) {
        w.array_len(self.len());
        for item in self {
            item.encode(w);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.array(T::MIN_BYTES, T::decode)
    }
}

impl<T: Wire> Wire for Option<T> {
    const MIN_BYTES: usize = 1;
    fn encode(&self, w: &mut Writer) {
        match self {
            Some(value) => {
                w.u8(1);
                value.encode(w);
            }
            None => w.u8(0),
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        if r.bool()? {
            Ok(Some(T::decode(r)?))
        } else {
            Ok(None)
        }
    }
}

impl Wire for crate::error::ErrorCode {
    const MIN_BYTES: usize = 2;
    fn encode(&self, w: &mut Writer) {
        w.u16(*self as u16);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(crate::error::ErrorCode::from_u16(r.u16()?))
    }
}

/// Declares a message struct whose wire form is its fields in order.
#[macro_export]
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty),*
        }

        impl $crate::codec::Wire for $name {
            const MIN_BYTES: usize = 0 $(+ <$ty as $crate::codec::Wire>::MIN_BYTES)*;
            #[allow(unused_variables)]
            fn encode(&self, w: &mut $crate::codec::Writer) {
                $($crate::codec::Wire::encode(&self.$field, w);)*
            }
            #[allow(unused_variables)]
            fn decode(
                r: &mut $crate::codec::Reader,
            ) -> Result<Self, $crate::error::DecodeError> {
                Ok($name {
                    $($field: <$ty as $crate::codec::Wire>::decode(r)?),*
                })
            }
        }
    };
}

/// Declares a fieldless enum carried as a `u8`; unknown values are errors.
#[macro_export]
macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident = $value:expr),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $value),*
        }

        impl $crate::codec::Wire for $name {
            const MIN_BYTES: usize = 1;
            fn encode(&self, w: &mut $crate::codec::Writer) {
                w.u8(*self as u8);
            }
            fn decode(
                r: &mut $crate::codec::Reader,
            ) -> Result<Self, $crate::error::DecodeError> {
                match r.u8()? {
                    $(value if value == $value => Ok($name::$variant),)*
                    other => Err($crate::error::DecodeError::InvalidValue {
                        field: stringify!($name),
                        value: u64::from(other),
                    }),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_lengths_past_the_end() {
        let mut w = Writer::new();
        w.u32(1000);
        let mut r = Reader::new(w.into_bytes());
        assert_eq!(
            r.bytes(4096),
            Err(DecodeError::UnexpectedEof {
                offset: 4,
                need: 1000,
                have: 0
            })
        );
    }

    #[test]
    fn reader_rejects_lengths_over_the_limit() {
        let mut w = Writer::new();
        w.u32(5000);
        let mut r = Reader::new(w.into_bytes());
        assert_eq!(
            r.bytes(4096),
            Err(DecodeError::LengthTooLarge {
                len: 5000,
                max: 4096
            })
        );
    }

    #[test]
    fn array_count_is_bounded_by_remaining_bytes() {
        let mut w = Writer::new();
        w.u32(10);
        w.u64(0);
        let mut r = Reader::new(w.into_bytes());
        assert!(matches!(
            r.array_len(4),
            Err(DecodeError::UnexpectedEof { need: 40, .. })
        ));
    }

    #[test]
    fn large_blobs_are_spliced_not_copied() {
        let payload = Bytes::from(vec![7u8; 4096]);
        let mut w = Writer::new();
        w.u16(1);
        w.bytes(&payload);
        w.u8(9);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), payload.as_ptr());
    }
}
