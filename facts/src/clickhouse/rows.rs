//! The rows as ClickHouse stores them (see `migrations/clickhouse/0001_facts.sql` and `0002_placing_columns.sql`), and the
//! conversions from and to the plain fact rows of `schemas`. Column order here is the table's:
//! with validation off the client sends RowBinary, which is positional.

use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactSlaState, FactVersion, IntervalFact};
use serde::{Deserialize, Serialize};

/// A row of `status_intervals`.
#[derive(Clone, Debug, PartialEq, ::clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct IntervalRow {
    pub project_id: i64,
    pub order_id: i64,
    pub status_id: i64,
    pub group_id: u16,
    pub entered_at: i64,
    pub left_at: Option<i64>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_urgent: u8,
    /// The Enum8's code: none 0, ok 1, near 2, over 3.
    pub sla_state: i8,
    pub version: u64,
    pub order_created_at: Option<i64>,
    pub group_entered_at: Option<i64>,
}

/// A row of `order_cycles`.
#[derive(Clone, Debug, PartialEq, ::clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct CycleRow {
    pub project_id: i64,
    pub order_id: i64,
    pub cycle_id: u32,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_urgent: u8,
    pub version: u64,
    pub order_created_at: Option<i64>,
}

fn sla_code(state: FactSlaState) -> i8 {
    match state {
        FactSlaState::None => 0,
        FactSlaState::Ok => 1,
        FactSlaState::Near => 2,
        FactSlaState::Over => 3,
    }
}

fn sla_from_code(code: i8) -> Option<FactSlaState> {
    FactSlaState::ALL.into_iter().find(|state| sla_code(*state) == code)
}

impl From<&IntervalFact> for IntervalRow {
    fn from(fact: &IntervalFact) -> Self {
        IntervalRow {
            project_id: fact.project_id,
            order_id: fact.order_id,
            status_id: fact.status_id,
            group_id: fact.group_id,
            entered_at: fact.entered_at.as_micros(),
            left_at: fact.left_at.map(Timestamp::as_micros),
            wall_seconds: fact.wall_seconds,
            working_seconds: fact.working_seconds,
            is_urgent: u8::from(fact.is_urgent),
            sla_state: sla_code(fact.sla_state),
            version: fact.version.as_u64(),
            order_created_at: fact.order_created_at.map(Timestamp::as_micros),
            group_entered_at: fact.group_entered_at.map(Timestamp::as_micros),
        }
    }
}

impl IntervalRow {
    pub(crate) fn into_fact(self) -> Result<IntervalFact, String> {
        let sla_state = sla_from_code(self.sla_state).ok_or_else(|| format!("unknown sla_state code {}", self.sla_state))?;
        Ok(IntervalFact {
            project_id: self.project_id,
            order_id: self.order_id,
            status_id: self.status_id,
            group_id: self.group_id,
            entered_at: Timestamp::from_micros(self.entered_at),
            left_at: self.left_at.map(Timestamp::from_micros),
            wall_seconds: self.wall_seconds,
            working_seconds: self.working_seconds,
            is_urgent: self.is_urgent != 0,
            sla_state,
            version: FactVersion::from_u64(self.version),
            order_created_at: self.order_created_at.map(Timestamp::from_micros),
            group_entered_at: self.group_entered_at.map(Timestamp::from_micros),
        })
    }
}

impl From<&CycleFact> for CycleRow {
    fn from(fact: &CycleFact) -> Self {
        CycleRow {
            project_id: fact.project_id,
            order_id: fact.order_id,
            cycle_id: fact.cycle_id,
            started_at: fact.started_at.as_micros(),
            ended_at: fact.ended_at.map(Timestamp::as_micros),
            wall_seconds: fact.wall_seconds,
            working_seconds: fact.working_seconds,
            is_urgent: u8::from(fact.is_urgent),
            version: fact.version.as_u64(),
            order_created_at: fact.order_created_at.map(Timestamp::as_micros),
        }
    }
}

impl From<CycleRow> for CycleFact {
    fn from(row: CycleRow) -> Self {
        CycleFact {
            project_id: row.project_id,
            order_id: row.order_id,
            cycle_id: row.cycle_id,
            started_at: Timestamp::from_micros(row.started_at),
            ended_at: row.ended_at.map(Timestamp::from_micros),
            wall_seconds: row.wall_seconds,
            working_seconds: row.working_seconds,
            is_urgent: row.is_urgent != 0,
            version: FactVersion::from_u64(row.version),
            order_created_at: row.order_created_at.map(Timestamp::from_micros),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_codes_match_the_enum8_of_the_ddl() {
        let ddl = ksa_migrations::clickhouse_migrations()[0].sql;
        for state in FactSlaState::ALL {
            assert!(ddl.contains(&format!("'{}' = {}", state.as_str(), sla_code(state))), "{state:?}");
        }
    }

    #[test]
    fn an_interval_survives_the_trip_through_its_row() {
        let fact = IntervalFact {
            project_id: 1,
            order_id: 2,
            status_id: 3,
            group_id: 4,
            entered_at: Timestamp::from_micros(1_700_000_000_123_456),
            left_at: None,
            wall_seconds: 1.5,
            working_seconds: 0.5,
            is_urgent: true,
            sla_state: FactSlaState::Near,
            version: FactVersion::new(2, 9),
            order_created_at: Some(Timestamp::from_micros(1_600_000_000_000_000)),
            group_entered_at: None,
        };
        assert_eq!(IntervalRow::from(&fact).into_fact(), Ok(fact));
    }
}
