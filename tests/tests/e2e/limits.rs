//! Connection limits and deadlines: a connection over `max_connections` is
//! answered with `TooManyConnections` and closed; a client that never
//! handshakes, or goes idle, is disconnected.

use std::time::{Duration, Instant};

use surge_protocol::ErrorCode;
use surge_tests::raw::RawConn;
use surge_tests::BrokerProcess;

#[test]
fn connections_over_the_limit_are_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &["--set", "max_connections=2"]);
    let first = RawConn::ready(&broker.addr);
    let _second = RawConn::ready(&broker.addr);
    let mut third = RawConn::connect(&broker.addr);
    let (header, _) = third.read_response().expect("an error frame before close");
    assert_eq!(header.error, ErrorCode::TooManyConnections);
    assert!(third.is_closed());
    drop(first);
    // The slot frees once the broker sees the close; until then a new
    // connection is refused the same way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = RawConn::connect(&broker.addr);
        let handshake = surge_protocol::handshake::HandshakeRequest {
            client_id: "again".into(),
            min_protocol: 1,
            max_protocol: 1,
        };
        let body = surge_protocol::Wire::to_bytes(&handshake);
        again.send_frame(0, 0, &body);
        match again.read_response() {
            Some((header, _)) if header.error.is_ok() => break,
            Some((header, _)) => assert_eq!(header.error, ErrorCode::TooManyConnections),
            None => {}
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn silent_connections_are_closed_at_the_handshake_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &["--set", "handshake_timeout_ms=300"]);
    // Timed from before the connect: the broker's deadline starts at its
    // accept, which cannot precede our connect.
    let started = Instant::now();
    let mut silent = RawConn::connect(&broker.addr);
    assert!(silent.is_closed(), "the broker must hang up");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the deadline"
    );
}

#[test]
fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &["--set", "idle_timeout_ms=300"]);
    let mut idle = RawConn::ready(&broker.addr);
    assert!(
        idle.is_closed(),
        "the broker must hang up on an idle client"
    );
}
