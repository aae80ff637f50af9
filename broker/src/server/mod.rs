//! The TCP server: accepts connections up to a limit, runs one task per
//! connection, and shuts down gracefully: stop accepting, let in-flight
//! requests finish, then sync and close every shard.

mod admin;
mod connection;
mod dispatch;
mod fetch;
mod forward;
mod produce;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::error::BrokerError;

/// How long shutdown waits for connections to finish in-flight work.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often expired group members are removed.
const GROUP_EXPIRY_INTERVAL: Duration = Duration::from_millis(500);

/// Binds the configured address. Separate from `serve` so callers (and
/// tests) learn the bound port before serving.
pub async fn bind(broker: &Broker) -> Result<TcpListener, BrokerError> {
    let addr = broker.config.listen.clone();
    TcpListener::bind(&addr)
        .await
        .map_err(|source| BrokerError::Listen { addr, source })
}

/// Serves until `shutdown` is cancelled, then drains and closes the broker.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(broker.config.max_connections));
    tracker.spawn(expire_groups(broker.clone(), shutdown.clone()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        socket.set_nodelay(true).ok();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracker.spawn(connection::refuse(socket));
            continue;
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            broker.metrics.connection_opened();
            connection::run(socket, peer, broker.clone(), shutdown).await;
            broker.metrics.connection_closed();
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing shards anyway");
    }
    broker.streams.close_all().await;
    tracing::info!("shutdown complete");
}

async fn expire_groups(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(GROUP_EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => broker.groups.expire(crate::clock::now_ms() as u64),
        }
    }
}
