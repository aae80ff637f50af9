//! Every request and response body the wire carries, decoded from any
//! bytes: an error or a message, never a panic. Also the frame check and
//! split a connection runs before them.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use surge_protocol::frame::{self, FrameCheck};

fuzz_target!(|data: &[u8]| {
    surge_protocol::decode_as_every_message(&Bytes::copy_from_slice(data));
    if let Ok(FrameCheck::Complete(total)) = frame::check(data, 8, frame::MAX_FRAME_BYTES) {
        let _ = frame::split_request(&mut BytesMut::from(data), total);
    }
});
