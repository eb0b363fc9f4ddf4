//! A commit batch made ready for set-wise statements: one derived row per order and one offset
//! per partition, sorted by key.
//!
//! One statement must not upsert a row twice (PostgreSQL refuses it, and on either database the
//! outcome would depend on the order of rows in the statement), and sorted keys make concurrent
//! writers lock rows in the same order.

use std::collections::{BTreeMap, HashSet};

use ksa_schemas::derived::{ConsumerOffset, CycleRow, DerivedOrder, StoredEvent};

use crate::CommitBatch;

/// The `(settings_revision, event_count)` that versions a derived row.
pub(crate) fn version(order: &DerivedOrder) -> (i64, u32) {
    (order.settings_revision, order.event_count)
}

pub(crate) struct CommitPlan<'a> {
    pub events: &'a [StoredEvent],
    /// Per `(project_id, order_id)` the row of the highest version; of equal ones the last, as
    /// if the rows had been committed one after another. Sorted by key.
    pub orders: Vec<&'a DerivedOrder>,
    /// Per `(group, topic, partition)` the last offset. Sorted by key.
    pub offsets: Vec<&'a ConsumerOffset>,
}

impl<'a> CommitPlan<'a> {
    pub fn new(batch: &'a CommitBatch) -> Self {
        let mut orders: BTreeMap<(i64, i64), &DerivedOrder> = BTreeMap::new();
        for order in &batch.orders {
            let slot = orders.entry((order.project_id, order.order_id)).or_insert(order);
            if version(order) >= version(slot) {
                *slot = order;
            }
        }
        let mut offsets: BTreeMap<(&str, &str, u32), &ConsumerOffset> = BTreeMap::new();
        for offset in &batch.offsets {
            offsets.insert((&offset.group, &offset.topic, offset.partition), offset);
        }
        CommitPlan { events: &batch.events, orders: orders.into_values().collect(), offsets: offsets.into_values().collect() }
    }

    /// The orders whose derived row the upsert wrote, by `(project_id, order_id)`.
    pub fn written(&self, keys: &HashSet<(i64, i64)>) -> Vec<&'a DerivedOrder> {
        self.orders.iter().copied().filter(|o| keys.contains(&(o.project_id, o.order_id))).collect()
    }
}

/// The cycles of `orders`, each with its order's key.
pub(crate) fn cycles<'a>(orders: &[&'a DerivedOrder]) -> Vec<(i64, i64, &'a CycleRow)> {
    orders.iter().flat_map(|o| o.cycles.iter().map(move |c| (o.project_id, o.order_id, c))).collect()
}

/// `orders` by project: each project's order ids, for deletes scoped by project.
pub(crate) fn order_ids_by_project(orders: &[&DerivedOrder]) -> BTreeMap<i64, Vec<i64>> {
    let mut by_project: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for order in orders {
        by_project.entry(order.project_id).or_default().push(order.order_id);
    }
    by_project
}

#[cfg(test)]
mod tests {
    use ksa_schemas::Timestamp;

    use super::*;

    fn order(order_id: i64, settings_revision: i64, event_count: u32, urgency: &str) -> DerivedOrder {
        DerivedOrder {
            project_id: 1,
            order_id,
            current_status_id: 1,
            current_group_id: 1,
            last_changed_at: Timestamp::from_seconds(0),
            started_at: Timestamp::from_seconds(0),
            untracked_seconds: 0.0,
            delivery_entered_at: None,
            cycle_duration_to_delivery: None,
            closed_at: None,
            cycle_rule_id_applied: None,
            urgency: urgency.to_owned(),
            sla_state: "none".to_owned(),
            event_count,
            settings_revision,
            derived_json: "{}".to_owned(),
            cycles: vec![],
        }
    }

    #[test]
    fn an_order_twice_in_a_batch_keeps_its_highest_version_and_of_equals_the_last() {
        let batch = CommitBatch {
            orders: vec![
                order(7, 2, 1, "pending"),
                order(3, 1, 1, "pending"),
                order(7, 1, 9, "pending"),
                order(7, 2, 1, "urgent"),
                order(7, 1, 10, "normal"),
            ],
            ..CommitBatch::default()
        };
        let plan = CommitPlan::new(&batch);
        let kept: Vec<_> = plan.orders.iter().map(|o| (o.order_id, o.settings_revision, o.urgency.as_str())).collect();
        assert_eq!(kept, vec![(3, 1, "pending"), (7, 2, "urgent")]);
    }

    #[test]
    fn a_partition_twice_in_a_batch_keeps_its_last_offset() {
        let offset = |partition, next_offset| ConsumerOffset { group: "g".into(), topic: "t".into(), partition, next_offset };
        let batch = CommitBatch { offsets: vec![offset(1, 10), offset(0, 5), offset(1, 12)], ..CommitBatch::default() };
        let plan = CommitPlan::new(&batch);
        let kept: Vec<_> = plan.offsets.iter().map(|o| (o.partition, o.next_offset)).collect();
        assert_eq!(kept, vec![(0, 5), (1, 12)]);
    }
}
