//! Connection behaviour: handshake, pipelining with out-of-order answers,
//! frame-level errors, and disconnects.

mod support;

use std::time::Duration;

use support::FakeBroker;
use surge_client::{Client, ClientConfig, ClientError};
use surge_protocol::{ApiKey, ErrorCode};

#[tokio::test]
async fn handshake_remembers_producer_id_and_limits() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    assert_eq!(client.producer_id(), 101);
    assert_eq!(client.max_batch_bytes(), support::MAX_BATCH as usize);
    let meta = client.metadata(support::STREAM).await.unwrap();
    assert_eq!(meta.shards.len(), 2);
}

#[tokio::test]
async fn pipelined_responses_in_reverse_order_reach_their_requests() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    const REQUESTS: usize = 32;
    fake.state.lock().reverse_window = REQUESTS;
    let mut tasks = Vec::new();
    for index in 0..REQUESTS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("stream-{index}");
            let resp = client.describe_stream(&name).await.unwrap();
            assert_eq!(resp.name, name);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let order = fake.state.lock().written_order.clone();
    // Handshake first, then the window answered newest first.
    assert_eq!(order.len(), REQUESTS + 1);
    assert!(
        order[1..].windows(2).all(|pair| pair[0] > pair[1]),
        "fake did not answer in reverse: {order:?}"
    );
}

#[tokio::test]
async fn frame_level_error_becomes_broker_error() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    fake.state.lock().frame_error_api = Some(ApiKey::ListStreams);
    match client.list_streams().await {
        Err(ClientError::Broker { code, message }) => {
            assert_eq!(code, ErrorCode::InvalidRequest);
            assert_eq!(message, "nope");
        }
        other => panic!("expected a broker error, got {other:?}"),
    }
}

#[tokio::test]
async fn disconnect_fails_pending_requests_and_next_request_reconnects() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    const PENDING: usize = 5;
    fake.state.lock().hold_then_drop = Some((ApiKey::ListStreams, PENDING));
    let mut tasks = Vec::new();
    for _ in 0..PENDING {
        let client = client.clone();
        tasks.push(tokio::spawn(async move { client.list_streams().await }));
    }
    for task in tasks {
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(ClientError::Disconnected)),
            "expected Disconnected, got {result:?}"
        );
    }
    fake.state.lock().hold_then_drop = None;
    assert!(client.list_streams().await.is_ok());
    assert_eq!(
        client.producer_id(),
        101,
        "producer id survives a reconnect"
    );
}

#[tokio::test]
async fn closed_client_refuses_requests() {
    let fake = FakeBroker::start().await;
    let client = Client::connect(fake.config()).await.unwrap();
    client.close().await;
    assert!(matches!(
        client.list_streams().await,
        Err(ClientError::Closed)
    ));
}

/// Regression: a request that started a reconnect and was then left
/// unpolled (a producer task busy awaiting something else) held the
/// reconnect lock, and every other request of the client waited on it
/// forever. The reconnect now runs on its own.
#[tokio::test]
async fn a_reconnect_left_unpolled_holds_up_no_other_request() {
    let fake = FakeBroker::start().await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..fake.config()
    };
    let client = Client::connect(config).await.unwrap();
    fake.state.lock().hold_then_drop = Some((ApiKey::ListStreams, 1));
    assert!(client.list_streams().await.is_err());
    fake.state.lock().hold_then_drop = None;
    // The next handshake goes unanswered: the reconnect below waits in it.
    fake.state.lock().hold_next = Some((ApiKey::Handshake, 1));
    let mut stalled = Box::pin(client.list_streams());
    let polled = tokio::time::timeout(Duration::from_millis(100), &mut stalled).await;
    assert!(polled.is_err(), "the reconnect should wait: {polled:?}");
    assert_eq!(fake.state.lock().hold_next, Some((ApiKey::Handshake, 0)));
    let other = tokio::time::timeout(Duration::from_secs(5), client.list_streams()).await;
    let other = other.expect("a request waited on an unpolled reconnect");
    assert!(other.is_ok(), "{other:?}");
    drop(stalled);
}
