//! A deterministic generator of fact rows, shared by the analytics conformance suite (a few
//! hundred orders, compared with committed answers) and the analytics benchmark (a year of
//! traffic, a million orders): the same seed always gives the same rows.
//!
//! Each order walks groups 1 → 2 → 3 (sometimes twice) → 4, then completion (5), cancellation
//! (6, cut in somewhere along the way) or stays open; every fifth order passes two statuses of
//! group 2 in a row (one visit to the group, two to statuses). About a third of the rows also
//! get an older version (an event fewer, other times, state over), to be written first, so
//! readers must keep the newest version per key.

use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactBatch, FactSlaState, FactVersion, IntervalFact};

/// A small deterministic generator (a 64-bit LCG), so the data never depends on a crate's
/// algorithm.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() << 31) | self.next()) % n
    }
}

/// Orders of one project, generated one after another.
#[derive(Clone, Debug)]
pub struct FactGenerator {
    random: Lcg,
    project_id: i64,
    /// Orders are created in `[start, start + span)`, microseconds.
    start: i64,
    span: i64,
    /// The next order's index; its id is `1000 + index`.
    next: i64,
}

impl FactGenerator {
    /// Orders created in the `days` days from `start` (microseconds since the epoch).
    pub fn new(seed: u64, project_id: i64, start: i64, days: i64) -> Self {
        FactGenerator { random: Lcg::new(seed), project_id, start, span: days * 86_400 * 1_000_000, next: 0 }
    }

    /// The rows of the next `orders` orders: the newest versions, and older versions of some of
    /// them (to be written before).
    pub fn orders(&mut self, orders: i64) -> (FactBatch, FactBatch) {
        let (mut newest, mut older) = (FactBatch::default(), FactBatch::default());
        for _ in 0..orders {
            self.order(&mut newest, &mut older);
        }
        (newest, older)
    }

    fn order(&mut self, newest: &mut FactBatch, older: &mut FactBatch) {
        let (random, project_id, start) = (&mut self.random, self.project_id, self.start);
        let order = self.next;
        self.next += 1;
        let order_id = 1000 + order;
        let sla = [FactSlaState::Ok, FactSlaState::Near, FactSlaState::Over, FactSlaState::None];
        let urgency = random.below(3) as u8;
        let mut entered = start + random.below(self.span as u64) as i64;
        let created = Timestamp::from_micros(entered);
        let mut path: Vec<u16> = vec![1, 2, 3];
        if random.below(4) == 0 {
            path.extend([2, 3]);
        }
        path.push(4);
        let end = random.below(10);
        if end < 6 {
            path.push(5);
        } else if end < 8 {
            let cut = 1 + random.below(path.len() as u64 - 1) as usize;
            path.truncate(cut);
            path.push(6);
        } else {
            let cut = 1 + random.below(path.len() as u64 - 1) as usize;
            path.truncate(cut);
        }
        let group_state: Vec<FactSlaState> = (0..7).map(|_| sla[random.below(4) as usize]).collect();
        let events = path.len() as u32;
        let version = FactVersion::with_urgency(1, events, urgency);
        let (mut first_of_2, mut terminal_at) = (None, None);
        for (index, group) in path.iter().enumerate() {
            let last = index + 1 == path.len();
            let wall_micros = 600_000_000 + random.below(3 * 86_400_000_000) as i64 + random.below(1_000_000) as i64;
            let terminal = *group >= 5;
            let left = (!last).then_some(entered + wall_micros);
            let wall = if terminal { 0.0 } else { wall_micros as f64 / 1e6 };
            let working = if terminal { 0.0 } else { (wall_micros as f64 * (20 + random.below(80)) as f64 / 100.0).round() / 1e6 };
            let row = IntervalFact {
                project_id,
                order_id,
                status_id: i64::from(*group) * 10 + random.below(2) as i64,
                group_id: *group,
                entered_at: Timestamp::from_micros(entered),
                left_at: left.map(Timestamp::from_micros),
                wall_seconds: wall,
                working_seconds: working,
                is_urgent: urgency == 2,
                sla_state: if terminal { FactSlaState::None } else { group_state[*group as usize] },
                version,
                order_created_at: Some(created),
                group_entered_at: Some(Timestamp::from_micros(entered)),
            };
            if random.below(3) == 0 {
                // An older version: an event fewer, other times, a different state.
                let mut old = row.clone();
                old.version = FactVersion::with_urgency(1, events - 1, 0);
                old.working_seconds += 3600.0;
                old.left_at = None;
                old.sla_state = FactSlaState::Over;
                older.intervals.push(old);
            }
            if *group == 2 && order % 5 == 0 && left.is_some() {
                let (first, second) = split_in_group(row);
                newest.intervals.extend([first, second]);
            } else {
                newest.intervals.push(row);
            }
            if *group == 2 && first_of_2.is_none() {
                first_of_2 = Some(entered);
            }
            if terminal {
                terminal_at = Some(entered);
            }
            if let Some(left) = left {
                entered = left;
            }
        }
        let started = first_of_2.unwrap_or(start + order);
        let ended = terminal_at.filter(|t| *t > started);
        let span = ended.unwrap_or(entered) - started;
        let cycle = CycleFact {
            project_id,
            order_id,
            cycle_id: 2,
            started_at: Timestamp::from_micros(started),
            ended_at: ended.map(Timestamp::from_micros),
            wall_seconds: span as f64 / 1e6,
            working_seconds: (span as f64 * 0.4).round() / 1e6,
            is_urgent: urgency == 2,
            version,
            order_created_at: Some(created),
        };
        if random.below(3) == 0 {
            let mut old = cycle.clone();
            old.version = FactVersion::with_urgency(1, events - 1, 0);
            old.ended_at = None;
            older.cycles.push(old);
        }
        newest.cycles.push(cycle);
    }
}

/// A closed interval as two back to back in the same group (one visit): the first half in its
/// status, the second in the next status id.
fn split_in_group(row: IntervalFact) -> (IntervalFact, IntervalFact) {
    let left = row.left_at.expect("a closed interval");
    let middle = Timestamp::from_micros((row.entered_at.as_micros() + left.as_micros()) / 2);
    let half = |seconds: f64| (seconds * 1e6 / 2.0).round() / 1e6;
    let first = IntervalFact {
        left_at: Some(middle),
        wall_seconds: half(row.wall_seconds),
        working_seconds: half(row.working_seconds),
        ..row.clone()
    };
    let second = IntervalFact {
        status_id: row.status_id + 5,
        entered_at: middle,
        wall_seconds: ((row.wall_seconds - first.wall_seconds) * 1e6).round() / 1e6,
        working_seconds: ((row.working_seconds - first.working_seconds) * 1e6).round() / 1e6,
        ..row
    };
    (first, second)
}
