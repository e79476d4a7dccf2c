//! The flags of `batchproc queue`: which queue to drain and how, and how
//! they become a [`Pipeline`].

use batchproc::Pipeline;
use clap::Args;

use super::args::{parse_duration, processor_help, Invocation, RunArgs};

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The queue server: nats://HOST:PORT (JetStream) or postgres://… (a pgmq queue's database).
    #[arg(
        long,
        value_name = "URL",
        env = "BATCHPROC_FROM",
        hide_env_values = true
    )]
    pub from: String,

    /// The JetStream stream, or the pgmq queue (its table is pgmq.q_NAME).
    #[arg(
        long = "queue",
        value_name = "NAME",
        env = "BATCHPROC_QUEUE",
        hide_env_values = true
    )]
    pub queue: String,

    /// The durable pull consumer a JetStream stream is read through (created when missing);
    /// consumers of one name share the messages.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "batchproc",
        env = "BATCHPROC_CONSUMER",
        hide_env_values = true
    )]
    pub consumer: String,

    /// The run ends once no message came for DURATION (the queue is drained).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, env = "BATCHPROC_IDLE", hide_env_values = true)]
    pub idle: std::time::Duration,

    /// The run ends after N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), env = "BATCHPROC_MAX_MESSAGES", hide_env_values = true)]
    pub max_messages: Option<u64>,

    /// Keep consuming when the queue is drained, until SIGINT/SIGTERM (as a service).
    #[arg(long, env = "BATCHPROC_FOLLOW", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub follow: bool,

    /// How long a fetched message stays leased to this process (the consumer's ack wait; pgmq's
    /// visibility timeout); extended while its item is still being worked on.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "BATCHPROC_LEASE", hide_env_values = true)]
    pub lease: std::time::Duration,

    /// A message delivered more than N times is recorded with an error and terminated (NATS)
    /// or archived (pgmq), never tried again.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), env = "BATCHPROC_MAX_DELIVERIES", hide_env_values = true)]
    pub max_deliveries: u32,

    /// pgmq: archive each message into pgmq.a_NAME once done, instead of deleting it.
    #[arg(long, env = "BATCHPROC_ARCHIVE", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub archive: bool,

    /// Row processors on each message, repeatable or comma-separated: NAME:COLUMN for a
    /// content processor (e.g. sha256:payload, json:payload), exec:/http: on the whole message
    /// ({} the id, {COLUMN} a column's value).
    #[arg(short = 'p', long = "processor", value_name = "SPEC", long_help = processor_help(
        "Row processors on each message, repeatable or comma-separated: NAME:COLUMN for a \
         content processor (sha256:payload), exec:/http: on the whole message ({} the id, \
         {COLUMN} a column's value; the columns are id, subject (NATS), payload, published, \
         deliveries):"),
        env = "BATCHPROC_PROCESSOR", hide_env_values = true)]
    pub processors: Vec<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

impl QueueArgs {
    pub fn pipeline(self) -> Invocation {
        let mut p = Pipeline::queue_of(self.from, self.queue)
            .consumer(self.consumer)
            .idle(self.idle)
            .follow_queue(self.follow)
            .lease(self.lease)
            .max_deliveries(self.max_deliveries)
            .archive(self.archive);
        if let Some(n) = self.max_messages {
            p = p.max_messages(n);
        }
        self.run.apply(p, self.processors, None)
    }
}
