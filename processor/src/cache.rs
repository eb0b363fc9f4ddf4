//! A bounded cache of orders' known events, so a busy order is not read back from the state
//! database on every batch. When full, the least recently used half is dropped.

use std::collections::HashMap;

use ksa_schemas::StatusEvent;

pub struct OrderCache {
    capacity: usize,
    tick: u64,
    orders: HashMap<(i64, i64), (u64, Vec<StatusEvent>)>,
}

impl OrderCache {
    pub fn new(capacity: usize) -> Self {
        OrderCache { capacity: capacity.max(1), tick: 0, orders: HashMap::new() }
    }

    pub fn contains(&self, project_id: i64, order_id: i64) -> bool {
        self.orders.contains_key(&(project_id, order_id))
    }

    pub fn get(&mut self, project_id: i64, order_id: i64) -> Option<&[StatusEvent]> {
        self.tick += 1;
        let tick = self.tick;
        self.orders.get_mut(&(project_id, order_id)).map(|(used, events)| {
            *used = tick;
            &events[..]
        })
    }

    pub fn put(&mut self, project_id: i64, order_id: i64, events: Vec<StatusEvent>) {
        self.tick += 1;
        self.orders.insert((project_id, order_id), (self.tick, events));
        if self.orders.len() > self.capacity {
            let mut ticks: Vec<u64> = self.orders.values().map(|(t, _)| *t).collect();
            let (_, median, _) = ticks.select_nth_unstable(self.orders.len() / 2);
            let cutoff = *median;
            self.orders.retain(|_, (t, _)| *t > cutoff);
        }
    }

    pub fn clear(&mut self) {
        self.orders.clear();
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_the_least_recently_used_half() {
        let mut cache = OrderCache::new(4);
        for order in 0..4 {
            cache.put(1, order, Vec::new());
        }
        assert!(cache.get(1, 0).is_some());
        cache.put(1, 4, Vec::new());
        assert!(cache.len() <= 4);
        assert!(cache.contains(1, 0), "recently read");
        assert!(cache.contains(1, 4), "just written");
        assert!(!cache.contains(1, 1), "least recently used");
    }
}
