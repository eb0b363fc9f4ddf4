//! Where the feed's events meet the streams: one broadcast channel per project (a stream wakes
//! only for its own project's events), and the feed's position on every partition of
//! `order-updates`, which each event carries as its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ksa_schemas::Timestamp;
use ksa_schemas::row::OrderRow;
use tokio::sync::broadcast;

/// The feed's position: per partition of `order-updates`, the last offset read (−1: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub offsets: Vec<i64>,
    /// When the event at this position happened (appended, or an SLA crossing's instant): a
    /// client resuming from it is owed the crossings since.
    pub at: Timestamp,
}

impl Position {
    /// The id of an SSE event: `o0,o1,…@micros`.
    pub fn id(&self) -> String {
        let offsets: Vec<String> = self.offsets.iter().map(i64::to_string).collect();
        format!("{}@{}", offsets.join(","), self.at.as_micros())
    }

    /// A `Last-Event-ID` this server wrote for a topic of `partitions` partitions.
    pub fn parse(text: &str, partitions: usize) -> Option<Position> {
        let (offsets, at) = text.trim().split_once('@')?;
        let offsets: Vec<i64> = offsets.split(',').map(|o| o.parse().ok().filter(|o| *o >= -1)).collect::<Option<_>>()?;
        (offsets.len() == partitions).then_some(Position { offsets, at: Timestamp::from_micros(at.parse().ok()?) })
    }
}

/// What one stream event says.
#[derive(Clone, Debug)]
pub enum Kind {
    /// An order's row changed; the row as the feed carried it (as of its latest event).
    OrderUpdated(Arc<OrderRow>),
    /// An order crossed near or over because time passed.
    SlaChanged,
    Invalidate,
    Recompute,
}

/// One event for a project's streams, written once for all of them.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub kind: Kind,
    /// The SSE `event:` name.
    pub name: &'static str,
    /// The SSE `data:` (JSON).
    pub data: Arc<str>,
    pub position: Arc<Position>,
    /// The partition and offset of the record it came from (`None` for derived events).
    pub record: Option<(u32, i64)>,
}

/// Every project's channel and the feed's position.
pub struct Hub {
    channels: Mutex<HashMap<i64, broadcast::Sender<Arc<Delivery>>>>,
    position: Mutex<Position>,
    /// Events a stream may fall behind by before it is closed with `invalidate`.
    buffer: usize,
    /// True once the feed knows where it starts.
    started: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    pub fn new(partitions: usize, buffer: usize) -> Self {
        Hub {
            channels: Mutex::new(HashMap::new()),
            position: Mutex::new(Position { offsets: vec![-1; partitions], at: Timestamp::from_micros(0) }),
            buffer: buffer.max(1),
            started: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The feed's position now.
    pub fn position(&self) -> Position {
        self.position.lock().map(|p| p.clone()).unwrap_or(Position { offsets: Vec::new(), at: Timestamp::from_micros(0) })
    }

    /// Sets where the feed starts (before any event).
    pub fn start_at(&self, offsets: Vec<i64>) {
        if let Ok(mut position) = self.position.lock() {
            position.offsets = offsets;
        }
        self.started.send_replace(true);
    }

    /// Waits up to `wait` for the feed to know where it starts; false if it does not yet.
    pub async fn started(&self, wait: std::time::Duration) -> bool {
        let mut started = self.started.subscribe();
        tokio::time::timeout(wait, started.wait_for(|s| *s)).await.is_ok_and(|r| r.is_ok())
    }

    /// Subscribes to a project's events, with the position they start after (taken under the
    /// same lock events are sent under, so nothing falls between).
    pub fn subscribe(&self, project_id: i64) -> (broadcast::Receiver<Arc<Delivery>>, Position) {
        let position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        // Room for the feed's bursts (a read of records is handed over at once): falling
        // behind is judged by each client's own buffer, not by this ring.
        let capacity = self.buffer + 2 * super::feed::BATCH;
        let receiver = channels.entry(project_id).or_insert_with(|| broadcast::channel(capacity).0).subscribe();
        (receiver, position.clone())
    }

    /// Streams subscribed to a project now.
    pub fn subscribers(&self, project_id: i64) -> usize {
        self.channels.lock().ok().and_then(|c| c.get(&project_id).map(broadcast::Sender::receiver_count)).unwrap_or(0)
    }

    /// Moves the feed's position past a record and sends its event (if any) to the project's
    /// streams.
    pub fn record(&self, partition: u32, offset: i64, at: Timestamp, event: Option<(i64, Kind, &'static str, Arc<str>)>) {
        let mut position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = position.offsets.get_mut(partition as usize) {
            *slot = (*slot).max(offset);
        }
        position.at = position.at.max(at);
        if let Some((project_id, kind, name, data)) = event {
            let delivery = Delivery { kind, name, data, position: Arc::new(position.clone()), record: Some((partition, offset)) };
            self.send(project_id, delivery);
        }
    }

    /// Sends an event derived here (not from a record) at the current position.
    pub fn derived(&self, project_id: i64, kind: Kind, name: &'static str, data: Arc<str>, at: Timestamp) {
        let position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        let mut here = position.clone();
        here.at = here.at.max(at);
        self.send(project_id, Delivery { kind, name, data, position: Arc::new(here), record: None });
    }

    /// Sends to every project with streams.
    pub fn everyone(&self, kind: Kind, name: &'static str, data: Arc<str>) {
        let projects: Vec<i64> = self.channels.lock().map(|c| c.keys().copied().collect()).unwrap_or_default();
        let at = self.position().at;
        for project_id in projects {
            self.derived(project_id, kind.clone(), name, data.clone(), at);
        }
    }

    fn send(&self, project_id: i64, delivery: Delivery) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(&project_id) {
            if sender.receiver_count() == 0 {
                channels.remove(&project_id);
            } else {
                let _ = sender.send(Arc::new(delivery));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ones_are_refused() {
        let position = Position { offsets: vec![12, -1, 0, 7], at: Timestamp::from_micros(1_700_000_000_000_000) };
        assert_eq!(Position::parse(&position.id(), 4), Some(position.clone()));
        assert_eq!(Position::parse(&position.id(), 3), None, "another partition count");
        for text in ["", "abc", "1,2,3,4", "1,2,x,4@5", "1,2,-5,4@5", "1,2,3,4@"] {
            assert_eq!(Position::parse(text, 4), None, "{text:?}");
        }
    }
}
