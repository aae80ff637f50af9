//! `Event`, what a producer sends: key, value, headers and timestamp, held
//! as shared `Bytes` so queueing and retrying never copy a payload.

use std::borrow::Cow;

use bytes::Bytes;
use smallvec::SmallVec;
use surge_protocol::batch::BatchBuilder;

/// Header that names the event's type (routing by type, type metrics).
pub const TYPE_HEADER: &str = "type";

/// An event's headers, name and value. Up to two are held inline and a
/// name known when compiling is borrowed, so the headers most events
/// carry cost no allocation per event (a producer sends hundreds of
/// thousands a second).
pub type Headers = SmallVec<[(Cow<'static, str>, Bytes); 2]>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Routing key; events with the same key keep their order.
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Headers,
    /// Milliseconds since the epoch; `None` stamps the time of `send`.
    pub timestamp_ms: Option<i64>,
}

impl Event {
    pub fn new(value: impl Into<Bytes>) -> Event {
        Event {
            value: value.into(),
            ..Event::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Event {
        self.key = Some(key.into());
        self
    }

    /// Sets (or replaces) the `type` header.
    pub fn with_type(mut self, event_type: &str) -> Event {
        self.headers
            .retain(|(name, _)| name.as_ref() != TYPE_HEADER);
        self.headers.push((
            Cow::Borrowed(TYPE_HEADER),
            Bytes::copy_from_slice(event_type.as_bytes()),
        ));
        self
    }

    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Event {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Event {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes this event takes as a record in a batch.
    pub fn record_bytes(&self) -> usize {
        // The protocol's formula a header at a time, so `send` builds no
        // list of header refs (perf: a few % of a producer's CPU).
        let bare = BatchBuilder::record_size(None, &[], &[]);
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| BatchBuilder::record_size(None, &[], &[(name, value)]) - bare)
            .sum();
        BatchBuilder::record_size(self.key.as_deref(), &self.value, &[]) + headers
    }

    /// Borrowed headers in the builder's form; inline (no allocation) for
    /// the few headers an event usually has.
    pub(crate) fn header_refs(&self) -> SmallVec<[(&str, &[u8]); 4]> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_ref(), &value[..]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use surge_protocol::batch::BATCH_HEADER_BYTES;

    use super::*;

    #[test]
    fn with_type_replaces_the_type_header() {
        let event = Event::new("v")
            .with_type("a")
            .with_type("b")
            .with_header("x", "1");
        assert_eq!(event.headers.len(), 2);
        assert_eq!(event.headers[0], ("type".into(), Bytes::from("b")));
    }

    #[test]
    fn record_bytes_matches_the_builder() {
        let event = Event::new("value")
            .with_key("k")
            .with_type("t")
            .with_header("sent-us", vec![0u8; 8]);
        let mut builder = BatchBuilder::new(0, 1, 0);
        let before = builder.size();
        builder.push(0, Some(b"k"), b"value", &event.header_refs());
        assert_eq!(event.record_bytes(), builder.size() - before);
        let bare = Event::new("");
        let mut builder = BatchBuilder::new(0, 1, 0);
        builder.push(0, None, b"", &[]);
        assert_eq!(bare.record_bytes(), builder.size() - BATCH_HEADER_BYTES);
    }
}
