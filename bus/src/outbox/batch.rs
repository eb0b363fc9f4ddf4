//! One group commit: the appends the writer took from its queue, and how they become rows —
//! which records are duplicates, how far each partition's head moves and which offset each
//! record gets. Pure, so both stores share it and it is tested without a database.

use std::sync::Arc;

use crate::{AppendOutcome, NewRecord};

/// A record with the partition its key chose.
#[derive(Debug)]
pub(crate) struct Routed {
    pub partition: u32,
    pub record: NewRecord,
}

/// One caller's append: records of one topic, in the caller's order.
#[derive(Debug)]
pub(crate) struct Appends {
    pub topic: Arc<str>,
    pub records: Vec<Routed>,
}

/// An idempotency key of a topic: `(topic, key)`.
pub(crate) type Claim<'a> = (&'a str, &'a str);

/// Appends written in one transaction, in queue order.
#[derive(Debug)]
pub(crate) struct Batch {
    pub appends: Vec<Appends>,
}

impl Batch {
    /// Every idempotency key of the batch once, sorted. Every writer claims keys in this order,
    /// so writers of several processes never wait on each other's keys in a cycle.
    pub fn claims(&self) -> Vec<Claim<'_>> {
        let mut claims: Vec<Claim<'_>> = self
            .appends
            .iter()
            .flat_map(|appends| {
                appends.records.iter().filter_map(|routed| routed.record.idempotency_key.as_deref().map(|key| (&*appends.topic, key)))
            })
            .collect();
        claims.sort_unstable();
        claims.dedup();
        claims
    }

    /// Decides which records go in, given which of `claims` were new to the database
    /// (`fresh[i]` for `claims[i]`): every record without an idempotency key, and the first
    /// record of each fresh key. A key claimed before, or earlier in this batch, is a duplicate.
    pub fn admit<'a>(&'a self, claims: &[Claim<'_>], mut fresh: Vec<bool>) -> Admission<'a> {
        let mut admitted = Vec::with_capacity(self.appends.len());
        let mut advances: Vec<HeadAdvance<'a>> = Vec::new();
        for appends in &self.appends {
            let mut decisions = Vec::with_capacity(appends.records.len());
            for routed in &appends.records {
                let admit = match routed.record.idempotency_key.as_deref() {
                    None => true,
                    Some(key) => match claims.binary_search(&(&*appends.topic, key)) {
                        Ok(index) => std::mem::take(&mut fresh[index]),
                        Err(_) => false,
                    },
                };
                if admit {
                    match advances.iter_mut().find(|a| a.topic == &*appends.topic && a.partition == routed.partition) {
                        Some(advance) => advance.count += 1,
                        None => advances.push(HeadAdvance { topic: &appends.topic, partition: routed.partition, count: 1 }),
                    }
                }
                decisions.push(admit);
            }
            admitted.push(decisions);
        }
        advances.sort_unstable_by(|a, b| (a.topic, a.partition).cmp(&(b.topic, b.partition)));
        Admission { batch: self, admitted, advances }
    }
}

/// How far one partition's head moves in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadAdvance<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub count: i64,
}

/// The admitted records of a batch, waiting for their offsets.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    batch: &'a Batch,
    /// Per append, per record: whether it goes in.
    admitted: Vec<Vec<bool>>,
    /// Sorted by (topic, partition): the order in which heads are locked.
    advances: Vec<HeadAdvance<'a>>,
}

/// A row of `bus_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogRow<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: i64,
    pub key: &'a str,
    pub payload: &'a [u8],
}

/// What a batch writes and answers.
#[derive(Debug)]
pub(crate) struct Placement<'a> {
    pub rows: Vec<LogRow<'a>>,
    /// Per append, one outcome per record, in order.
    pub outcomes: Vec<Vec<AppendOutcome>>,
}

impl<'a> Admission<'a> {
    /// The heads to advance, in locking order.
    pub fn advances(&self) -> &[HeadAdvance<'a>] {
        &self.advances
    }

    /// Gives offsets, given each advanced head's last offset after the advance (`heads[i]` for
    /// `advances()[i]`): the partition's admitted records take the `count` offsets up to it, in
    /// batch order.
    pub fn place(self, heads: &[i64]) -> Placement<'a> {
        debug_assert_eq!(heads.len(), self.advances.len());
        let mut next: Vec<i64> = self.advances.iter().zip(heads).map(|(advance, head)| head - advance.count + 1).collect();
        let mut rows = Vec::with_capacity(self.advances.iter().map(|a| a.count as usize).sum());
        let mut outcomes = Vec::with_capacity(self.batch.appends.len());
        for (appends, decisions) in self.batch.appends.iter().zip(&self.admitted) {
            let mut answers = Vec::with_capacity(appends.records.len());
            for (routed, &admit) in appends.records.iter().zip(decisions) {
                if !admit {
                    answers.push(AppendOutcome::Duplicate);
                    continue;
                }
                let index = self
                    .advances
                    .binary_search_by(|a| (a.topic, a.partition).cmp(&(&*appends.topic, routed.partition)))
                    .expect("every admitted record's partition has a head advance");
                let offset = next[index];
                next[index] += 1;
                rows.push(LogRow {
                    topic: &appends.topic,
                    partition: routed.partition,
                    offset,
                    key: &routed.record.key,
                    payload: &routed.record.payload,
                });
                answers.push(AppendOutcome::Appended { partition: routed.partition, offset });
            }
            outcomes.push(answers);
        }
        Placement { rows, outcomes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: u32, key: &str, idempotency_key: Option<&str>) -> Routed {
        Routed {
            partition,
            record: NewRecord { key: key.into(), payload: key.as_bytes().to_vec(), idempotency_key: idempotency_key.map(String::from) },
        }
    }

    fn appends(topic: &str, records: Vec<Routed>) -> Appends {
        Appends { topic: topic.into(), records }
    }

    #[test]
    fn claims_are_unique_and_sorted_by_topic_then_key() {
        let batch = Batch {
            appends: vec![
                appends("t2", vec![record(0, "a", Some("k2")), record(0, "a", Some("k1"))]),
                appends("t1", vec![record(0, "a", Some("k2")), record(0, "a", None), record(1, "b", Some("k2"))]),
            ],
        };
        assert_eq!(batch.claims(), vec![("t1", "k2"), ("t2", "k1"), ("t2", "k2")]);
    }

    #[test]
    fn a_key_claimed_before_or_earlier_in_the_batch_is_a_duplicate() {
        let batch = Batch {
            appends: vec![
                appends("t", vec![record(0, "a", Some("new")), record(0, "a", Some("old")), record(0, "a", None)]),
                appends("t", vec![record(0, "a", Some("new")), record(0, "a", None)]),
            ],
        };
        let claims = batch.claims();
        assert_eq!(claims, vec![("t", "new"), ("t", "old")]);
        let admission = batch.admit(&claims, vec![true, false]);
        assert_eq!(admission.advances(), [HeadAdvance { topic: "t", partition: 0, count: 3 }]);
        let placement = admission.place(&[13]);
        assert_eq!(
            placement.outcomes,
            vec![
                vec![
                    AppendOutcome::Appended { partition: 0, offset: 11 },
                    AppendOutcome::Duplicate,
                    AppendOutcome::Appended { partition: 0, offset: 12 },
                ],
                vec![AppendOutcome::Duplicate, AppendOutcome::Appended { partition: 0, offset: 13 }],
            ]
        );
        assert_eq!(placement.rows.iter().map(|r| r.offset).collect::<Vec<_>>(), [11, 12, 13]);
    }

    #[test]
    fn offsets_follow_batch_order_within_each_partition() {
        let batch = Batch {
            appends: vec![
                appends("t", vec![record(1, "b", None), record(0, "a", None)]),
                appends("s", vec![record(1, "c", None)]),
                appends("t", vec![record(0, "a", None), record(1, "b", None)]),
            ],
        };
        let admission = batch.admit(&[], vec![]);
        assert_eq!(
            admission.advances(),
            [
                HeadAdvance { topic: "s", partition: 1, count: 1 },
                HeadAdvance { topic: "t", partition: 0, count: 2 },
                HeadAdvance { topic: "t", partition: 1, count: 2 },
            ]
        );
        let placement = admission.place(&[1, 7, 2]);
        let placed: Vec<(&str, u32, i64, &str)> = placement.rows.iter().map(|r| (r.topic, r.partition, r.offset, r.key)).collect();
        assert_eq!(placed, [("t", 1, 1, "b"), ("t", 0, 6, "a"), ("s", 1, 1, "c"), ("t", 0, 7, "a"), ("t", 1, 2, "b")]);
    }

    #[test]
    fn a_batch_of_duplicates_advances_no_head() {
        let batch = Batch { appends: vec![appends("t", vec![record(0, "a", Some("k")), record(0, "a", Some("k"))])] };
        let claims = batch.claims();
        let admission = batch.admit(&claims, vec![false]);
        assert!(admission.advances().is_empty());
        let placement = admission.place(&[]);
        assert!(placement.rows.is_empty());
        assert_eq!(placement.outcomes, vec![vec![AppendOutcome::Duplicate, AppendOutcome::Duplicate]]);
    }
}
