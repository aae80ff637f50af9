//! `Consumer`: reads one stream, either every shard or, in a group, the
//! shards assigned to it. Owns the read position (next offset) per shard,
//! the long-poll fetch covering all of them, skipping records below the
//! requested offset, and commits. Group membership lives in `group`.
//!
//! Across splits and merges the consumer follows the lineage rule: a shard
//! is read only once every parent is drained (sealed, and read to its
//! end), so each key's events come out in order. Without a group the
//! consumer tracks the whole shard graph itself: it refreshes metadata when
//! a shard drains (and every `LINEAGE_REFRESH_INTERVAL`), starts children at
//! their earliest offset, and stops fetching drained shards. In a group the
//! broker assigns only readable shards; the consumer always commits a
//! drained shard's end on the next poll, with or without `auto_commit`,
//! because that commit is what lets the broker hand out its children.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use surge_protocol::batch::{split_batches, Record, MAX_BATCH_BYTES};
use surge_protocol::fetch::{FetchPart, FetchPartResponse, FetchRequest};
use surge_protocol::group::Assignment;
use surge_protocol::offsets::{ListOffsetsPart, ListOffsetsRequest, OffsetSpec};
use surge_protocol::ErrorCode;
use tokio::time::Instant;

use crate::client::Client;
use crate::config::{wire_ms, ConsumerConfig, StartFrom};
use crate::error::ClientError;
use crate::group::Membership;
use crate::lineage::Lineage;

/// Without a group: the longest a consumer goes without re-reading the
/// stream's shard graph (new children, shards sealed or removed).
const LINEAGE_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

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
    /// In a group: drained shards whose end this member has committed (the
    /// baseline in `committed` may equal the end without a commit).
    ends_committed: BTreeSet<u32>,
    membership: Option<Membership>,
    /// The shard graph as last seen.
    lineage: Lineage,
    /// A shard drained since the last metadata refresh: refresh now.
    refresh_due: bool,
    last_refresh: Instant,
}

impl Consumer {
    /// Without a group, starts every readable shard of the stream at
    /// `config.start` (with `StartFrom::Latest`, sealed shards count as
    /// already drained); shards that become readable later start at their
    /// earliest offset. With a group, joins and starts the assigned shards
    /// at their committed offsets, else at the earliest offset for a shard
    /// with parents, else at `config.start`.
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
            ends_committed: BTreeSet::new(),
            membership: None,
            lineage: Lineage::default(),
            refresh_due: false,
            last_refresh: Instant::now(),
        };
        match consumer.config.group.clone() {
            None => {
                let meta = client.metadata(stream).await?;
                consumer.lineage.update(&meta);
                consumer.follow_lineage(true).await?;
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
    /// `max_wait`. In a group, first commits the end of every drained sealed
    /// shard (always: the group's children wait on it) and, with
    /// `auto_commit`, everything returned before.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if self.membership.is_some() {
            if self.config.auto_commit {
                self.commit_positions().await?;
            } else {
                self.commit_drained().await?;
            }
            let change = self.membership.as_mut().and_then(Membership::changed);
            if let Some(assignment) = change {
                self.apply(assignment).await?;
            }
        } else if self.refresh_due || self.last_refresh.elapsed() >= LINEAGE_REFRESH_INTERVAL {
            self.refresh_lineage().await;
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
                self.ends_committed.remove(&shard_id);
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
        if part.sealed && cursor.next_offset >= part.high_watermark && !cursor.drained {
            cursor.drained = true;
            self.refresh_due = true;
        }
        Ok(())
    }

    /// Without a group: re-reads the shard graph and starts what became
    /// readable. A failure is logged and retried on the next poll.
    async fn refresh_lineage(&mut self) {
        let result = match self.client.metadata(&self.stream).await {
            Ok(meta) => {
                self.lineage.update(&meta);
                self.follow_lineage(false).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                self.refresh_due = false;
                self.last_refresh = Instant::now();
            }
            Err(error) => {
                tracing::warn!(stream = %self.stream, %error, "shard graph refresh failed");
            }
        }
    }

    /// Without a group: forgets shards the metadata no longer lists, starts
    /// every known shard whose parents are drained, and keeps the rest
    /// waiting. `initial` applies `config.start`; later shards start at
    /// their earliest offset.
    async fn follow_lineage(&mut self, initial: bool) -> Result<(), ClientError> {
        let lineage = &self.lineage;
        self.shards
            .retain(|shard_id, _| lineage.get(*shard_id).is_some());
        self.committed
            .retain(|shard_id, _| lineage.get(*shard_id).is_some());
        if initial && self.config.start == StartFrom::Latest {
            let sealed: Vec<(u32, u64)> = self
                .lineage
                .shard_ids()
                .filter_map(|id| self.lineage.get(id).map(|node| (id, node)))
                .filter(|(_, node)| node.sealed)
                .map(|(id, node)| (id, node.high_watermark))
                .collect();
            for (shard_id, end) in sealed {
                let cursor = Cursor {
                    next_offset: end,
                    drained: true,
                };
                self.shards.insert(shard_id, cursor);
                self.committed.insert(shard_id, end);
            }
        }
        let unstarted: Vec<u32> = self
            .lineage
            .shard_ids()
            .filter(|shard_id| !self.shards.contains_key(shard_id))
            .collect();
        // The rest wait: they are looked at again on the next refresh.
        let readable: Vec<u32> = unstarted
            .into_iter()
            .filter(|&shard_id| self.readable(shard_id))
            .collect();
        let start = if initial {
            self.config.start
        } else {
            StartFrom::Earliest
        };
        let starts = self.resolve_start(&readable, start).await?;
        self.insert_cursors(starts);
        Ok(())
    }

    /// Whether every parent is drained; parents the metadata no longer
    /// lists (removed by retention) count as drained.
    fn readable(&self, shard_id: u32) -> bool {
        self.lineage.parents(shard_id).iter().all(|parent| {
            self.lineage.get(*parent).is_none()
                || self.shards.get(parent).is_some_and(|cursor| cursor.drained)
        })
    }

    fn insert_cursors(&mut self, starts: BTreeMap<u32, u64>) {
        for (shard_id, next_offset) in starts {
            let cursor = Cursor {
                next_offset,
                drained: false,
            };
            self.shards.insert(shard_id, cursor);
            // Nothing returned yet: the start is the baseline, not a commit.
            self.committed.insert(shard_id, next_offset);
        }
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
            self.ends_committed.remove(shard_id);
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

    /// Starts assigned shards at their committed offset, else at the
    /// earliest offset for a successor (its parents were read to their end,
    /// so all of it is new), else at `config.start`.
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
        if fresh
            .iter()
            .any(|shard_id| self.lineage.get(*shard_id).is_none())
        {
            let meta = self.client.metadata(&self.stream).await?;
            self.lineage.update(&meta);
        }
        let (successors, roots): (Vec<u32>, Vec<u32>) = fresh
            .into_iter()
            .partition(|shard_id| !self.lineage.parents(*shard_id).is_empty());
        let mut starts = self.resolve_start(&roots, self.config.start).await?;
        starts.extend(self.resolve_start(&successors, StartFrom::Earliest).await?);
        for shard_id in shard_ids {
            if let Some(&offset) = committed.get(shard_id) {
                starts.insert(*shard_id, offset);
            }
        }
        self.insert_cursors(starts);
        Ok(())
    }

    async fn resolve_start(
        &self,
        shard_ids: &[u32],
        start: StartFrom,
    ) -> Result<BTreeMap<u32, u64>, ClientError> {
        if shard_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (spec, timestamp_ms) = match start {
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
        self.commit_where(|_| true).await
    }

    /// Commits the end of every drained sealed shard not yet committed.
    async fn commit_drained(&mut self) -> Result<(), ClientError> {
        self.commit_where(|cursor| cursor.drained).await
    }

    async fn commit_where(&mut self, which: impl Fn(&Cursor) -> bool) -> Result<(), ClientError> {
        let Some(membership) = &self.membership else {
            return Ok(());
        };
        let changed: BTreeMap<u32, u64> = self
            .shards
            .iter()
            .filter(|(_, cursor)| which(cursor))
            .filter(|(shard_id, cursor)| {
                self.committed.get(shard_id) != Some(&cursor.next_offset)
                    || (cursor.drained && !self.ends_committed.contains(shard_id))
            })
            .map(|(&shard_id, cursor)| (shard_id, cursor.next_offset))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        membership.commit(&changed).await?;
        for shard_id in changed.keys() {
            if self
                .shards
                .get(shard_id)
                .is_some_and(|cursor| cursor.drained)
            {
                self.ends_committed.insert(*shard_id);
            }
        }
        self.committed.extend(changed);
        Ok(())
    }
}
