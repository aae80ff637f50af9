//! `Consumer`: reads one stream, either every shard or, in a group, the
//! shards assigned to it. Owns the read position (next offset) per shard,
//! the long-poll fetch covering all of them, skipping records below the
//! requested offset, and commits. Group membership lives in `group`.

use std::collections::BTreeMap;

use surge_protocol::batch::{split_batches, Record, MAX_BATCH_BYTES};
use surge_protocol::fetch::{FetchPart, FetchPartResponse, FetchRequest};
use surge_protocol::group::Assignment;
use surge_protocol::offsets::{ListOffsetsPart, ListOffsetsRequest, OffsetSpec};
use surge_protocol::ErrorCode;

use crate::client::Client;
use crate::config::{wire_ms, ConsumerConfig, StartFrom};
use crate::error::ClientError;
use crate::group::Membership;

/// One record and the shard it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub shard_id: u32,
    pub record: Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    next_offset: u64,
    /// A sealed shard read to its end: nothing more will come.
    drained: bool,
}

#[derive(Debug)]
pub struct Consumer {
    client: Client,
    stream: String,
    config: ConsumerConfig,
    shards: BTreeMap<u32, Cursor>,
    /// Positions last committed (or started at), to skip commits that
    /// change nothing.
    committed: BTreeMap<u32, u64>,
    membership: Option<Membership>,
}

impl Consumer {
    /// Without a group, starts every shard of the stream at `config.start`;
    /// with one, joins and starts the assigned shards at their committed
    /// offsets (or `config.start` where none).
    pub async fn new(
        client: Client,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<Consumer, ClientError> {
        let mut consumer = Consumer {
            client: client.clone(),
            stream: stream.to_owned(),
            config,
            shards: BTreeMap::new(),
            committed: BTreeMap::new(),
            membership: None,
        };
        match consumer.config.group.clone() {
            None => {
                let meta = client.metadata(stream).await?;
                let all: Vec<u32> = meta.shards.iter().map(|shard| shard.shard_id).collect();
                consumer.start_shards(&all, &BTreeMap::new()).await?;
            }
            Some(group) => {
                let (membership, assignment) = Membership::join(
                    client,
                    &group,
                    stream,
                    consumer.config.session_timeout,
                    consumer.config.heartbeat_interval,
                )
                .await?;
                consumer.membership = Some(membership);
                consumer.apply(assignment).await?;
            }
        }
        Ok(consumer)
    }

    /// Long-polls all readable shards once; may return nothing after
    /// `max_wait`. With `auto_commit`, first commits what was returned before.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if self.membership.is_some() {
            if self.config.auto_commit {
                self.commit_positions().await?;
            }
            let change = self.membership.as_mut().and_then(Membership::changed);
            if let Some(assignment) = change {
                self.apply(assignment).await?;
            }
        }
        let parts = self.fetch_parts();
        if parts.is_empty() {
            self.idle().await;
            return Ok(Vec::new());
        }
        let req = FetchRequest {
            max_wait_ms: wire_ms(self.config.max_wait),
            min_bytes: 1,
            max_bytes: self.config.max_bytes,
            parts,
        };
        let timeout = self.config.max_wait + self.config.request_timeout;
        let resp = self.client.request_within(&req, timeout).await?;
        let mut out = Vec::new();
        for part in resp.parts {
            self.absorb(part, &mut out)?;
        }
        Ok(out)
    }

    /// Commits the positions of everything returned so far.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        if self.membership.is_none() {
            return Err(ClientError::NoGroup);
        }
        self.commit_positions().await
    }

    /// Moves a shard's position (the next offset to read, and what a commit
    /// records). For a caller that stopped part-way through a poll's records
    /// and wants the rest read again. Returns false for a shard this
    /// consumer does not read.
    pub fn seek(&mut self, shard_id: u32, offset: u64) -> bool {
        match self.shards.get_mut(&shard_id) {
            Some(cursor) => {
                cursor.next_offset = offset;
                cursor.drained = false;
                true
            }
            None => false,
        }
    }

    /// Next offset to read, per shard.
    pub fn positions(&self) -> Vec<(u32, u64)> {
        self.shards
            .iter()
            .map(|(&shard_id, cursor)| (shard_id, cursor.next_offset))
            .collect()
    }

    /// Shards this consumer reads.
    pub fn assignment(&self) -> Vec<u32> {
        self.shards.keys().copied().collect()
    }

    /// Commits (with `auto_commit`) and leaves the group.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = if self.config.auto_commit && self.membership.is_some() {
            self.commit_positions().await
        } else {
            Ok(())
        };
        if let Some(membership) = self.membership.take() {
            membership.leave().await?;
        }
        committed
    }

    fn fetch_parts(&self) -> Vec<FetchPart> {
        self.shards
            .iter()
            .filter(|(_, cursor)| !cursor.drained)
            .map(|(&shard_id, cursor)| FetchPart {
                stream: self.stream.clone(),
                shard_id,
                offset: cursor.next_offset,
                max_bytes: self.config.max_bytes_per_shard,
            })
            .collect()
    }

    /// Nothing to read: wait out `max_wait` (or an assignment change).
    async fn idle(&mut self) {
        match self.membership.as_mut() {
            Some(membership) => membership.wait_changed(self.config.max_wait).await,
            None => tokio::time::sleep(self.config.max_wait).await,
        }
    }

    /// Takes in one shard's fetch result, appending records at or past the
    /// shard's position.
    fn absorb(
        &mut self,
        part: FetchPartResponse,
        out: &mut Vec<ConsumedRecord>,
    ) -> Result<(), ClientError> {
        let Some(cursor) = self.shards.get_mut(&part.shard_id) else {
            return Ok(());
        };
        match part.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                cursor.next_offset = match self.config.start {
                    StartFrom::Latest => part.high_watermark,
                    StartFrom::Earliest | StartFrom::Timestamp(_) => part.log_start_offset,
                };
                return Ok(());
            }
            // Revoked under a rebalance; the next heartbeat brings the news.
            ErrorCode::NotAssigned => return Ok(()),
            code => {
                let message = format!("fetch {}/{}", part.stream, part.shard_id);
                return Err(ClientError::Broker { code, message });
            }
        }
        for batch in split_batches(&part.records, MAX_BATCH_BYTES)? {
            if batch.header.next_offset() <= cursor.next_offset {
                continue;
            }
            for record in batch.records() {
                if record.offset < cursor.next_offset {
                    continue;
                }
                cursor.next_offset = record.offset + 1;
                out.push(ConsumedRecord {
                    shard_id: part.shard_id,
                    record,
                });
            }
        }
        if part.sealed && cursor.next_offset >= part.high_watermark {
            cursor.drained = true;
        }
        Ok(())
    }

    /// Applies a group assignment: commits and drops revoked shards, starts
    /// new ones, then acknowledges the generation.
    async fn apply(&mut self, assignment: Assignment) -> Result<(), ClientError> {
        let revoked: Vec<u32> = self
            .shards
            .keys()
            .filter(|shard_id| !assignment.shards.contains(shard_id))
            .copied()
            .collect();
        if !revoked.is_empty() && self.config.auto_commit {
            if let Err(error) = self.commit_positions().await {
                tracing::warn!(%error, "commit of revoked shards failed");
            }
        }
        for shard_id in &revoked {
            self.shards.remove(shard_id);
            self.committed.remove(shard_id);
        }
        let added: Vec<u32> = assignment
            .shards
            .iter()
            .filter(|shard_id| !self.shards.contains_key(shard_id))
            .copied()
            .collect();
        if !added.is_empty() {
            let committed = match &self.membership {
                Some(membership) => membership.committed().await?,
                None => BTreeMap::new(),
            };
            self.start_shards(&added, &committed).await?;
        }
        if let Some(membership) = &self.membership {
            membership.applied(assignment.generation);
        }
        Ok(())
    }

    /// Starts shards at their committed offset, else at `config.start`.
    async fn start_shards(
        &mut self,
        shard_ids: &[u32],
        committed: &BTreeMap<u32, u64>,
    ) -> Result<(), ClientError> {
        let fresh: Vec<u32> = shard_ids
            .iter()
            .filter(|shard_id| !committed.contains_key(shard_id))
            .copied()
            .collect();
        let mut starts = self.resolve_start(&fresh).await?;
        for shard_id in shard_ids {
            if let Some(&offset) = committed.get(shard_id) {
                starts.insert(*shard_id, offset);
            }
        }
        for (shard_id, next_offset) in starts {
            let cursor = Cursor {
                next_offset,
                drained: false,
            };
            self.shards.insert(shard_id, cursor);
            // Nothing returned yet: the start is the baseline, not a commit.
            self.committed.insert(shard_id, next_offset);
        }
        Ok(())
    }

    async fn resolve_start(&self, shard_ids: &[u32]) -> Result<BTreeMap<u32, u64>, ClientError> {
        if shard_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (spec, timestamp_ms) = match self.config.start {
            StartFrom::Earliest => (OffsetSpec::Earliest, 0),
            StartFrom::Latest => (OffsetSpec::Latest, 0),
            StartFrom::Timestamp(at_ms) => (OffsetSpec::Timestamp, at_ms),
        };
        let parts = shard_ids
            .iter()
            .map(|&shard_id| ListOffsetsPart {
                stream: self.stream.clone(),
                shard_id,
                spec,
                timestamp_ms,
            })
            .collect();
        let resp = self.client.request(&ListOffsetsRequest { parts }).await?;
        let mut starts = BTreeMap::new();
        for part in resp.parts {
            let context = format!("list offsets of {}/{}", self.stream, part.shard_id);
            ClientError::check(part.error, context)?;
            starts.insert(part.shard_id, part.offset);
        }
        if let Some(missing) = shard_ids.iter().find(|id| !starts.contains_key(id)) {
            let message = format!("list offsets without shard {missing}");
            return Err(ClientError::Protocol(message));
        }
        Ok(starts)
    }

    async fn commit_positions(&mut self) -> Result<(), ClientError> {
        let Some(membership) = &self.membership else {
            return Ok(());
        };
        let changed: BTreeMap<u32, u64> = self
            .shards
            .iter()
            .filter(|(shard_id, cursor)| self.committed.get(shard_id) != Some(&cursor.next_offset))
            .map(|(&shard_id, cursor)| (shard_id, cursor.next_offset))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        membership.commit(&changed).await?;
        self.committed.extend(changed);
        Ok(())
    }
}
