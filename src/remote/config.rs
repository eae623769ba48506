//! The settings of one edge: which server, which stream and group, and the
//! bounds (batch, stream length, idle time before a claim, deliveries
//! before the dead-letter stream, reconnect deadline). Every setter refuses
//! a value that cannot work with a [`ConfigError`] naming it.

use std::time::Duration;

use super::codec::Codec;
use crate::error::ConfigError;

/// Entries per XADD pipeline or XREADGROUP unless set.
pub const DEFAULT_BATCH: usize = 1000;
/// The stream length a producer waits below unless set.
pub const DEFAULT_MAX_LEN: usize = 100_000;
/// How long an entry stays pending on a consumer before others claim it.
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(30);
/// The longest `claim_idle` allowed: 365 days. Redis takes it in
/// milliseconds as a signed 64-bit integer (a longer one is refused by the
/// server in every claim, and the consumer reads nothing); a year is far
/// past any real use and far inside that.
pub const MAX_CLAIM_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Deliveries of one entry before it goes to the dead-letter stream.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// How long a client keeps reconnecting before the run fails.
pub const DEFAULT_RECONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// How long one XREADGROUP waits for new entries.
pub const DEFAULT_BLOCK: Duration = Duration::from_millis(100);
/// How long a sink stage's partial batch waits on a quiet input.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);
/// The longest linger allowed.
pub const MAX_LINGER: Duration = Duration::from_secs(60);

/// One edge of a distributed pipeline: a stream on a Redis server, read by
/// one consumer group.
///
/// The same settings serve both ends: the producer's
/// [`StreamSink`](super::StreamSink) uses `batch`, `max_len`, `codec`,
/// `linger` (as a stage) and the reconnect deadline; the consumer's
/// [`StreamSource`](super::StreamSource) uses all of them but `max_len`
/// and `linger`.
///
/// Besides the stream, the edge uses four keys beside it:
/// `<stream>:dead` (the dead-letter stream), `<stream>:end` (the set of
/// producers that have finished), `<stream>:draining` (consumers that have read
/// everything) and `<stream>:errors` (the last error of each entry that
/// failed and waits for its next delivery).
///
/// ```
/// use std::time::Duration;
/// use paipa::remote::{Codec, EdgeConfig};
///
/// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "products", "loaders")
///     .consumer("loader-1")
///     .batch(500)?
///     .max_len(50_000)?
///     .claim_idle(Duration::from_secs(10))?
///     .max_deliveries(3)?
///     .linger(Duration::from_millis(5))?
///     .codec(Codec::Binary);
/// assert_eq!(edge.dead_letter_stream(), "products:dead");
/// assert!(EdgeConfig::new("redis://x/", "s", "g").batch(0).is_err());
/// # Ok::<(), paipa::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct EdgeConfig {
    pub(crate) url: String,
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) batch: usize,
    pub(crate) max_len: usize,
    pub(crate) claim_idle: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) reconnect_deadline: Duration,
    pub(crate) block: Duration,
    pub(crate) linger: Duration,
    pub(crate) codec: Codec,
    pub(crate) producers: u64,
}

impl EdgeConfig {
    /// The stream `stream` on the server at `url` (`redis://host:port/db`),
    /// read by the consumer group `group`. The consumer is named after the
    /// host and process id unless [`consumer`](Self::consumer) names it.
    pub fn new(url: impl Into<String>, stream: impl Into<String>, group: impl Into<String>) -> Self {
        EdgeConfig {
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: default_consumer(),
            batch: DEFAULT_BATCH,
            max_len: DEFAULT_MAX_LEN,
            claim_idle: DEFAULT_CLAIM_IDLE,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            reconnect_deadline: DEFAULT_RECONNECT_DEADLINE,
            block: DEFAULT_BLOCK,
            linger: DEFAULT_LINGER,
            codec: Codec::Json,
            producers: 1,
        }
    }

    /// Names this process's consumer in the group (unique per process: two
    /// live processes with one name would share a pending-entries list).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// Entries per round trip: per XADD pipeline on the producer, per
    /// XREADGROUP on the consumer (1 to 1,000,000; 1000 unless set).
    pub fn batch(mut self, batch: usize) -> Result<Self, ConfigError> {
        if batch == 0 || batch > 1_000_000 {
            return Err(ConfigError::new("batch", batch, "must be from 1 to 1000000"));
        }
        self.batch = batch;
        Ok(self)
    }

    /// The producer adds a batch only while the stream holds fewer than
    /// `max_len` entries, after trimming what every group has acked; so the
    /// stream never holds more than `max_len + batch - 1` (100,000 unless
    /// set; at least 1).
    pub fn max_len(mut self, max_len: usize) -> Result<Self, ConfigError> {
        if max_len == 0 {
            return Err(ConfigError::new("max_len", 0, "must be at least 1"));
        }
        self.max_len = max_len;
        Ok(self)
    }

    /// Entries pending on a consumer for longer than this are claimed by the
    /// others (XCLAIM): a consumer that died leaves them there. A consumer
    /// never claims back what it still holds, but the others do: keep it
    /// well above the time one entry takes to be finished, or live
    /// consumers' entries are claimed and processed twice (30 s unless set;
    /// from 1 ms to [`MAX_CLAIM_IDLE`], 365 days).
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::remote::EdgeConfig;
    ///
    /// let err = EdgeConfig::new("redis://127.0.0.1:6379/", "s", "g")
    ///     .claim_idle(Duration::from_secs(400 * 24 * 3600))
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "invalid claim_idle: 34560000s (must be from 1ms to 365 days)");
    /// ```
    pub fn claim_idle(mut self, idle: Duration) -> Result<Self, ConfigError> {
        if idle < Duration::from_millis(1) || idle > MAX_CLAIM_IDLE {
            return Err(ConfigError::new(
                "claim_idle",
                format!("{idle:?}"),
                "must be from 1ms to 365 days",
            ));
        }
        self.claim_idle = idle;
        Ok(self)
    }

    /// An entry delivered this many times without being finished goes to
    /// the dead-letter stream `<stream>:dead` (5 unless set; at least 1).
    pub fn max_deliveries(mut self, n: u32) -> Result<Self, ConfigError> {
        if n == 0 {
            return Err(ConfigError::new("max_deliveries", 0, "must be at least 1"));
        }
        self.max_deliveries = n;
        Ok(self)
    }

    /// How long a client retries (reconnecting with exponential backoff)
    /// before the run fails with
    /// [`RemoteError::Unreachable`](super::RemoteError::Unreachable)
    /// (30 s unless set). Any duration is taken: `Duration::MAX` retries
    /// for ever.
    pub fn reconnect_deadline(mut self, deadline: Duration) -> Self {
        self.reconnect_deadline = deadline;
        self
    }

    /// How long one XREADGROUP waits for new entries before the consumer
    /// looks at its stop flag, idle entries and the end of input (100 ms
    /// unless set; from 1 ms to 10 s).
    pub fn block(mut self, block: Duration) -> Result<Self, ConfigError> {
        if block < Duration::from_millis(1) || block > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "block",
                format!("{block:?}"),
                "must be from 1ms to 10s",
            ));
        }
        self.block = block;
        Ok(self)
    }

    /// How long a sink stage ([`StreamSink::stage`](super::StreamSink::stage))
    /// keeps a partial batch while its input is quiet: once the input is
    /// empty and the batch's oldest item has waited `linger`, the batch is
    /// sent (and its items finished upstream). On a quiet input an item so
    /// waits from `linger` to twice `linger`; a busy input fills batches
    /// instead. Zero sends the partial batch whenever the input is empty
    /// (the lowest latency, the smallest batches). 20 ms unless set; at
    /// most 60 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use paipa::remote::EdgeConfig;
    ///
    /// let edge = EdgeConfig::new("redis://127.0.0.1:6379/", "s", "g");
    /// assert!(edge.clone().linger(Duration::ZERO).is_ok());
    /// let err = edge.linger(Duration::from_secs(61)).unwrap_err();
    /// assert_eq!(err.field(), "linger");
    /// ```
    pub fn linger(mut self, linger: Duration) -> Result<Self, ConfigError> {
        if linger > MAX_LINGER {
            return Err(ConfigError::new("linger", format!("{linger:?}"), "must be at most 60s"));
        }
        self.linger = linger;
        Ok(self)
    }

    /// The serialization of entries (JSON unless set).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// How many producers write the stream: a consumer's input ends once
    /// that many have called [`StreamSink::finish`](super::StreamSink::finish)
    /// and every entry is finished (1 unless set; at least 1).
    pub fn producers(mut self, n: u64) -> Result<Self, ConfigError> {
        if n == 0 {
            return Err(ConfigError::new("producers", 0, "must be at least 1"));
        }
        self.producers = n;
        Ok(self)
    }

    /// The stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// This process's consumer name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The dead-letter stream: `<stream>:dead`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }

    /// The set of finished producers: `<stream>:end`.
    pub fn end_key(&self) -> String {
        format!("{}:end", self.stream)
    }

    /// The set of consumers that have read everything and are ending:
    /// `<stream>:draining`.
    pub fn draining_key(&self) -> String {
        format!("{}:draining", self.stream)
    }

    /// The hash of the last error of entries waiting for redelivery.
    pub fn errors_key(&self) -> String {
        format!("{}:errors", self.stream)
    }
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("url", &redact(&self.url))
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("batch", &self.batch)
            .field("max_len", &self.max_len)
            .field("claim_idle", &self.claim_idle)
            .field("max_deliveries", &self.max_deliveries)
            .field("reconnect_deadline", &self.reconnect_deadline)
            .field("block", &self.block)
            .field("linger", &self.linger)
            .field("codec", &self.codec)
            .field("producers", &self.producers)
            .finish()
    }
}

/// `url` with its password (`redis://user:secret@host/`) replaced by `***`,
/// for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::{redact, EdgeConfig};

    #[test]
    fn passwords_stay_out_of_debug_output() {
        assert_eq!(redact("redis://:s3cret@db:6379/0"), "redis://:***@db:6379/0");
        assert_eq!(redact("redis://me:s3cret@db/"), "redis://me:***@db/");
        assert_eq!(redact("redis://db:6379/"), "redis://db:6379/");
        let shown = format!("{:?}", EdgeConfig::new("redis://me:s3cret@db/", "s", "g"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
