//! Every request and response body the wire carries, decoded from any
//! bytes: an error or a message, never a panic.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use surge_protocol::fetch::{FetchRequest, FetchResponse};
use surge_protocol::frame::{self, FrameCheck};
use surge_protocol::group::{
    Assignment, CommitOffsetsRequest, FetchOffsetsResponse, HeartbeatRequest, JoinGroupRequest,
};
use surge_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use surge_protocol::offsets::{ListOffsetsRequest, ListOffsetsResponse};
use surge_protocol::produce::{ProduceRequest, ProduceResponse};
use surge_protocol::stream::{
    CreateStreamRequest, DescribeStreamResponse, MetadataRequest, MetadataResponse,
};
use surge_protocol::Wire;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    macro_rules! decode_all {
        ($($ty:ty),*) => {$(
            let _ = <$ty>::decode_all(bytes.clone());
        )*};
    }
    decode_all!(
        HandshakeRequest,
        HandshakeResponse,
        CreateStreamRequest,
        DescribeStreamResponse,
        MetadataRequest,
        MetadataResponse,
        ProduceRequest,
        ProduceResponse,
        FetchRequest,
        FetchResponse,
        ListOffsetsRequest,
        ListOffsetsResponse,
        JoinGroupRequest,
        Assignment,
        HeartbeatRequest,
        CommitOffsetsRequest,
        FetchOffsetsResponse
    );
    let _ = frame::decode_error_message(bytes.clone());
    if let Ok(FrameCheck::Complete(total)) = frame::check(data, 8, frame::MAX_FRAME_BYTES) {
        let mut buf = bytes::BytesMut::from(data);
        let _ = frame::split_request(&mut buf, total);
    }
});
