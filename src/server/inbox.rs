//! Cross-shard commands: what one shard asks of another, and the bounded inbox that carries
//! it. The HTTP bytes never cross shards; a parsed, typed [`Command`] does, and the [`Reply`]
//! comes back on a one-shot channel.
//!
//! An inbox holds at most `http.inbox_capacity` envelopes; a full inbox is refused at once
//! (the request is answered 429), never queued without bound. The channel wakes the owning
//! shard's monoio runtime from any thread.

use futures_channel::oneshot;

use crate::namespace::NamespaceRecord;

/// A request for the owning shard.
#[derive(Debug)]
pub enum Command {
    /// Create a namespace record (on the namespace's owner shard).
    CreateNamespace {
        name: String,
        created_at_ms: u64,
    },
    /// The namespace records this shard owns.
    ListNamespaces,
    /// A KV request.
    Kv(crate::kv::exec::KvCmd),
    Queue(crate::queue::exec::QueueCmd),
    Stream(crate::stream::exec::StreamCmd),
    Ts(crate::ts::exec::TsCmd),
    /// Stop: close the listener, let in-flight requests finish.
    Stop,
}

/// The owning shard's answer.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// `true` when created, `false` when it existed.
    NamespaceCreated(bool),
    /// The command failed (the state refused it, the log refused or failed it, ...).
    Failed(crate::machine::Error),
    /// The namespace records this shard owns, and per namespace the visible KV keys, queues
    /// and streams it holds.
    Namespaces {
        records: Vec<NamespaceRecord>,
        kv_keys: Vec<(String, u64)>,
        queues: Vec<(String, u64)>,
        streams: Vec<(String, u64)>,
        /// (namespace, measurement) of the series this shard holds.
        measurements: Vec<(String, String)>,
    },
    Kv(crate::kv::exec::KvReply),
    Queue(crate::queue::exec::QueueReply),
    Stream(crate::stream::exec::StreamReply),
    Ts(crate::ts::exec::TsReply),
    Stopping,
}

/// A command with the channel its reply goes back on (none for fire-and-forget).
#[derive(Debug)]
pub struct Envelope {
    pub command: Command,
    pub reply: Option<oneshot::Sender<Reply>>,
}

/// Why a command could not be handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// The inbox is at capacity: overload.
    Full,
    /// The shard has stopped.
    Closed,
}

/// The sending side of a shard's inbox.
#[derive(Debug, Clone)]
pub struct Inbox {
    tx: async_channel::Sender<Envelope>,
}

/// Creates an inbox with room for `capacity` envelopes.
pub fn inbox(capacity: usize) -> (Inbox, async_channel::Receiver<Envelope>) {
    assert!(capacity > 0);
    let (tx, rx) = async_channel::bounded(capacity);
    (Inbox { tx }, rx)
}

impl Inbox {
    /// Hands `command` to the shard; the receiver yields its reply.
    pub fn forward(&self, command: Command) -> Result<oneshot::Receiver<Reply>, ForwardError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Envelope {
                command,
                reply: Some(reply),
            })
            .map_err(|e| match e {
                async_channel::TrySendError::Full(_) => ForwardError::Full,
                async_channel::TrySendError::Closed(_) => ForwardError::Closed,
            })?;
        Ok(rx)
    }

    /// Sends without a reply, waiting while the inbox is full (for messages that must arrive,
    /// such as a multi-part write's commit or abort).
    pub async fn send(&self, command: Command) -> Result<(), ForwardError> {
        self.tx
            .send(Envelope { command, reply: None })
            .await
            .map_err(|_| ForwardError::Closed)
    }

    /// Sends without waiting for room or a reply, from a thread outside the runtimes (the
    /// signal thread). Blocks while the inbox is full.
    pub fn send_blocking(&self, command: Command) -> Result<(), ForwardError> {
        self.tx
            .send_blocking(Envelope { command, reply: None })
            .map_err(|_| ForwardError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_inbox_refuses_instead_of_queueing() {
        let (inbox, rx) = inbox(2);
        let _a = inbox.forward(Command::ListNamespaces).unwrap();
        let _b = inbox.forward(Command::ListNamespaces).unwrap();
        assert_eq!(inbox.forward(Command::ListNamespaces).unwrap_err(), ForwardError::Full);
        let env = rx.try_recv().unwrap();
        env.reply
            .unwrap()
            .send(Reply::Namespaces {
                records: vec![],
                kv_keys: vec![],
                queues: vec![],
                streams: vec![],
                measurements: vec![],
            })
            .unwrap();
        assert!(inbox.forward(Command::ListNamespaces).is_ok());
        drop(rx);
        assert_eq!(
            inbox.forward(Command::ListNamespaces).unwrap_err(),
            ForwardError::Closed
        );
    }
}
