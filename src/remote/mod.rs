//! Stages across machines on Redis Streams (feature `redis`).
//!
//! A pipeline that outgrows one machine is split at a stream: one process
//! ends its pipeline with a [`StreamSink`] that adds every item to a Redis
//! stream; others start theirs with a [`StreamSource`] that reads the
//! stream in a consumer group. paipa builds no broker: Redis's consumer
//! groups, pending-entries lists and explicit acks carry the guarantees.
//!
//! - **Acks that mean done**: the source yields [`Tracked`] items, and an
//!   entry is acked only once everything made from it in this process is
//!   finished (see `tracked.rs` for the lineage protocol).
//! - **Backpressure without loss**: the sink waits while the stream holds
//!   `max_len` entries, and trims only below what every group has acked
//!   (see `sink.rs`).
//! - **Crash recovery**: entries pending on a dead consumer are claimed by
//!   the others after `claim_idle`; one delivered more than
//!   `max_deliveries` times goes to `<stream>:dead` with its error (see
//!   `source.rs`).
//! - **Redis faults**: every command reconnects with backoff until the
//!   reconnect deadline, then fails with [`RemoteError::Unreachable`] (see
//!   `link.rs`).
//! - **In each process's snapshot**: a source (on its first item) and a
//!   sink (a [`StreamSink::stage`] as it starts, one used by hand on its
//!   first flush) register their stream with the pipeline, whose
//!   [`Snapshot::edges`](crate::Snapshot::edges) then show its length and,
//!   per group, pending entries, lag and consumers: read by a thread of
//!   the edge's own before each report and at the end, never on the
//!   pipeline's threads; a failed reading shows as stale (see `info_probe.rs`).
//!   One used by hand outside any stage (a loop over an iterator
//!   pipeline, a `run_with` closure) is named on the debugger instead:
//!   [`Debugger::edge`](crate::Debugger::edge).
//! - **One view**: a [`Publisher`] (a reporter) writes its process's stages
//!   and edges under a key with a TTL; [`read_views`] and [`table`] print
//!   every process's rows and each stream's groups, with the bottleneck
//!   named across machines.
//! - **A quiet input**: a sink stage sends a partial batch once its input
//!   has been empty for the edge's [`linger`](EdgeConfig::linger) (see
//!   `sink_stage.rs`).
//! - **End of input**: each producer's [`StreamSink::finish`] counts it as
//!   done (and adds an end marker that wakes a waiting consumer); a
//!   consumer's input ends when every producer is done and no entry is
//!   pending on a consumer that is not ending too.
//!
//! `docs/GUARANTEES.md` says what is promised and which test proves it.
//!
//! ```no_run
//! use paipa::remote::{EdgeConfig, StreamSink, StreamSource, Tracked};
//! use paipa::threaded::{Pipeline, Stage};
//!
//! // The consumer: stream -> square -> next stream.
//! let input = EdgeConfig::new("redis://127.0.0.1:6379/", "numbers", "squarers");
//! let output = EdgeConfig::new("redis://127.0.0.1:6379/", "squares", "summers");
//! let (source, handle) = StreamSource::<u64>::open(input)?;
//! let summary = Pipeline::new()
//!     .source(source)
//!     .then(Stage::map("square", |t: Tracked<u64>| t.map(|n| n * n)).workers(4))?
//!     .then(StreamSink::stage("send", output))? // acks upstream once added downstream
//!     .run()?;
//! handle.finish()?;
//! // Both streams, as this process last read them.
//! for edge in &summary.snapshot.edges {
//!     println!("{} ({}): {:?} entries", edge.name, edge.role, edge.length);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod acker;
mod codec;
mod config;
mod error;
mod handle;
mod held;
mod info;
mod info_probe;
mod link;
mod sink;
mod sink_stage;
mod source;
mod stats;
mod tracked;
mod view;

pub use codec::Codec;
pub use config::{
    EdgeConfig, DEFAULT_BATCH, DEFAULT_BLOCK, DEFAULT_CLAIM_IDLE, DEFAULT_LINGER, DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_LEN, DEFAULT_RECONNECT_DEADLINE, MAX_CLAIM_IDLE, MAX_LINGER,
};
pub use error::RemoteError;
pub use handle::SourceHandle;
pub use info::{reset, stream_info};
pub use sink::StreamSink;
pub use source::StreamSource;
pub use stats::{EdgeStats, GroupInfo, StreamInfo};
pub use tracked::{Token, Tracked};
pub use view::{read_views, table, EdgeRow, EdgeWatch, ProcessView, Publisher, StageRow};
