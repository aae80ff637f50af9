//! A blocking, byte-level client for tests that must send what no real
//! client would: truncated frames, unknown APIs, corrupt batches.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use surge_protocol::frame::{self, FrameCheck, RequestHeader, ResponseHeader};
use surge_protocol::handshake::{HandshakeRequest, PROTOCOL_VERSION};
use surge_protocol::{ErrorCode, Request, Wire, Writer};

#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    next_correlation: u32,
}

/// A frame-level error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameFailure {
    pub code: ErrorCode,
    pub message: String,
}

impl RawConn {
    pub fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("set timeout");
        RawConn {
            stream,
            buf: BytesMut::new(),
            next_correlation: 1,
        }
    }

    /// Connects and completes the handshake.
    pub fn ready(addr: &str) -> RawConn {
        let mut conn = RawConn::connect(addr);
        let response = conn
            .request(&HandshakeRequest {
                client_id: "raw".into(),
                min_protocol: PROTOCOL_VERSION,
                max_protocol: PROTOCOL_VERSION,
            })
            .expect("handshake");
        assert!(
            response.error.is_ok(),
            "handshake failed: {:?}",
            response.error
        );
        conn
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a frame with an arbitrary header and body; returns its
    /// correlation id.
    pub fn send_frame(&mut self, api_key: u16, api_version: u16, body: &[u8]) -> u32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let mut writer = Writer::new();
        for byte in body {
            writer.u8(*byte);
        }
        let header = RequestHeader {
            api_key,
            api_version,
            correlation_id,
        };
        for chunk in frame::encode_request(header, writer) {
            self.send_bytes(&chunk);
        }
        correlation_id
    }

    /// The next response frame, or `None` when the broker closed the
    /// connection.
    pub fn read_response(&mut self) -> Option<(ResponseHeader, Bytes)> {
        loop {
            match frame::check(
                &self.buf,
                frame::RESPONSE_HEADER_BYTES,
                frame::MAX_FRAME_BYTES,
            ) {
                Ok(FrameCheck::Complete(total)) => {
                    return Some(frame::split_response(&mut self.buf, total));
                }
                Ok(FrameCheck::Incomplete(_)) => {}
                Err(err) => panic!("broker sent a bad frame: {err}"),
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.buf.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// Whether the broker has closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        self.read_response().is_none()
    }

    /// Sends a typed request and decodes its typed response, or returns the
    /// frame-level error.
    pub fn request<R: Request>(&mut self, request: &R) -> Result<R::Response, FrameFailure> {
        let body = request.to_bytes();
        let correlation = self.send_frame(R::API_KEY as u16, R::API_KEY.versions().1, &body);
        let (header, body) = self.read_response().expect("a response before close");
        assert_eq!(
            header.correlation_id, correlation,
            "correlation id mismatch"
        );
        if !header.error.is_ok() {
            return Err(FrameFailure {
                code: header.error,
                message: frame::decode_error_message(body).expect("error message"),
            });
        }
        Ok(R::Response::decode_all(body).expect("decodable response"))
    }
}
