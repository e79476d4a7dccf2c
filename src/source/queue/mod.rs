//! The `queue` source: the messages waiting in a queue (NATS JetStream,
//! pgmq), each an item keyed by its message id.

pub(crate) mod broker;
mod nats;
mod pgmq;
