//! The topics an outbox serves, and for each partition a signal that it advanced: readers
//! waiting for records subscribe to it, the writer raises it after each commit (and on
//! PostgreSQL so does the listener, for appends of other processes).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::BusError;

pub(crate) struct Topics {
    /// Per topic, one signal per partition; the value only counts raises.
    signals: HashMap<Arc<str>, Vec<watch::Sender<u64>>>,
}

impl Topics {
    pub fn new(topics: &[&str], partitions: u32) -> Self {
        let signals = topics.iter().map(|topic| (Arc::from(*topic), (0..partitions).map(|_| watch::Sender::new(0)).collect())).collect();
        Topics { signals }
    }

    /// The shared name of `topic`, so queued appends need not copy it.
    pub fn name(&self, topic: &str) -> Result<Arc<str>, BusError> {
        self.signals.get_key_value(topic).map(|(name, _)| Arc::clone(name)).ok_or_else(|| unknown(topic))
    }

    pub fn partitions(&self, topic: &str) -> Result<u32, BusError> {
        self.partition_signals(topic).map(|signals| signals.len() as u32)
    }

    /// A receiver that sees every raise of the partition's signal from now on. A partition the
    /// topic does not have is refused as an unknown topic (displayed as "unknown topic
    /// `status-events` partition `9`").
    pub fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>, BusError> {
        self.partition_signals(topic)?
            .get(partition as usize)
            .map(watch::Sender::subscribe)
            .ok_or_else(|| BusError::UnknownTopic(format!("{topic}` partition `{partition}")))
    }

    /// Wakes the readers of one partition; a topic or partition this outbox does not serve is
    /// ignored (another process may serve more).
    pub fn raise(&self, topic: &str, partition: u32) {
        if let Some(signal) = self.signals.get(topic).and_then(|signals| signals.get(partition as usize)) {
            signal.send_modify(|raises| *raises = raises.wrapping_add(1));
        }
    }

    /// Wakes every reader: they read again and, finding nothing new, wait again.
    pub fn raise_all(&self) {
        for signal in self.signals.values().flatten() {
            signal.send_modify(|raises| *raises = raises.wrapping_add(1));
        }
    }

    fn partition_signals(&self, topic: &str) -> Result<&[watch::Sender<u64>], BusError> {
        self.signals.get(topic).map(Vec::as_slice).ok_or_else(|| unknown(topic))
    }
}

fn unknown(topic: &str) -> BusError {
    BusError::UnknownTopic(topic.to_owned())
}
