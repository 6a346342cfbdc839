/// When appended bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` before an append returns; concurrent appenders share one `fsync`.
    EveryBatch,
    /// One `fsync` covers every append of the last `interval_ms`, or sooner once
    /// `max_bytes` are waiting. Run by the [`crate::Log`]'s flusher thread.
    GroupCommit { interval_ms: u64, max_bytes: u64 },
    /// The OS writes back when it likes; the engine syncs only on segment roll and close.
    Os,
}

impl Durability {
    /// Parses the `weft.durability` topic config: `batch`, `os`, `group` or
    /// `group:<ms>[:<bytes>]`.
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "batch" | "every-batch" => Some(Durability::EveryBatch),
            "os" => Some(Durability::Os),
            "group" => Some(Durability::GroupCommit {
                interval_ms: 10,
                max_bytes: 4 << 20,
            }),
            other => {
                let rest = other.strip_prefix("group:")?;
                let mut parts = rest.split(':');
                let interval_ms = parts.next()?.parse().ok()?;
                let max_bytes = match parts.next() {
                    Some(b) => b.parse().ok()?,
                    None => 4 << 20,
                };
                parts.next().is_none().then_some(Durability::GroupCommit {
                    interval_ms,
                    max_bytes,
                })
            }
        }
    }

    /// The inverse of [`Durability::parse`].
    pub fn render(&self) -> String {
        match self {
            Durability::EveryBatch => "batch".to_owned(),
            Durability::Os => "os".to_owned(),
            Durability::GroupCommit {
                interval_ms,
                max_bytes,
            } => {
                format!("group:{interval_ms}:{max_bytes}")
            }
        }
    }
}

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    /// Parses Kafka's spelling: `delete`, `compact`, `compact,delete` (either order).
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let mut compact = false;
        let mut delete = false;
        for part in s.split(',').map(str::trim) {
            match part {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }
    pub fn render(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-partition settings. Names follow Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`; `None` keeps forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`; `None` keeps any size.
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    pub durability: Durability,
    /// `index.interval.bytes`: one sparse index entry per this many log bytes.
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            // fsync per batch, shared by concurrent appenders: consumers see only durable
            // records, so group commit's interval would add to end-to-end latency.
            durability: Durability::EveryBatch,
            index_interval_bytes: 4096,
        }
    }
}
