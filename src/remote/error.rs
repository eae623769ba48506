//! What can go wrong on a Redis edge: a server that stays unreachable past
//! the reconnect deadline, a command the server refuses, an entry that does
//! not decode.

use std::time::Duration;

/// Why an edge on Redis Streams failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The server could not be reached (or kept dropping the connection)
    /// for longer than the reconnect deadline.
    #[error("redis at {addr} unreachable for {waited:?} (reconnect deadline {deadline:?}); last error: {last}")]
    Unreachable {
        /// The server's address, as configured.
        addr: String,
        /// How long the client tried.
        waited: Duration,
        /// The configured deadline.
        deadline: Duration,
        /// The last connection error, as the `redis` crate reported it.
        last: String,
    },
    /// The server answered a command with an error.
    #[error("redis at {addr}: {command} failed: {source}")]
    Command {
        /// The server's address.
        addr: String,
        /// The command, such as `"XADD"`.
        command: &'static str,
        /// The server's error.
        #[source]
        source: redis::RedisError,
    },
    /// The server sent a reply paipa did not expect (a protocol mismatch or
    /// a key of another type).
    #[error("redis at {addr}: unexpected reply to {command}: {reply}")]
    Reply {
        /// The server's address.
        addr: String,
        /// The command.
        command: &'static str,
        /// The reply, abbreviated.
        reply: String,
    },
    /// A value could not be serialized for the stream.
    #[error("cannot encode an entry for stream {stream:?}: {message}")]
    Encode {
        /// The stream.
        stream: String,
        /// The codec's error.
        message: String,
    },
    /// The URL does not name a Redis server.
    #[error("invalid redis url {url:?}: {source}")]
    Url {
        /// The URL as given, its password (if any) replaced by `***`.
        url: String,
        /// Why the `redis` crate refused it.
        #[source]
        source: redis::RedisError,
    },
    /// The run stopped while a sink stage waited for room in its stream
    /// (the stream at its `max_len`): nothing of the batch was sent.
    #[error("stopped while waiting for room in stream {stream:?}")]
    Stopped {
        /// The stream.
        stream: String,
    },
    /// The acknowledging thread of a source could not start or panicked.
    #[error("the acker thread of stream {stream:?} {what}")]
    Acker {
        /// The stream.
        stream: String,
        /// What happened to it.
        what: String,
    },
}
