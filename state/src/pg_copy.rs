//! Rows into PostgreSQL by `COPY … FROM STDIN (FORMAT binary)`.
//!
//! Used where a commit writes rows that cannot already be there: the processor hands the store
//! only events it has not stored before (it merges each order's new events into the ones
//! already stored), and an order's cycles are written right after its old ones were
//! deleted. `COPY` skips the arrays and `UNNEST` of the `INSERT` statements, and
//! PostgreSQL writes the rows a page at a time. For events it also skips the speculative
//! insertion of `INSERT … ON CONFLICT DO NOTHING`, row by row. The unique dedup key still
//! guards the log: a batch that does repeat a stored event fails with a unique violation and is
//! written again the careful way (see `PostgresState::commit`).
//!
//! The binary format: a fixed header, then per row the number of fields and each field as its
//! length and its bytes in the column type's binary form (`-1` for NULL), then `-1`.

use std::collections::HashSet;

use ksa_schemas::Timestamp;
use ksa_schemas::derived::{CycleRow, StoredEvent};
use sqlx::PgConnection;

use crate::columns;

pub(crate) const COPY_EVENTS: &str = "COPY order_status_events (project_id, order_id, status_id, status_group_id, \
     status_changed_at, order_created_at, received_at, source, payload) FROM STDIN (FORMAT binary)";

pub(crate) const COPY_CYCLES: &str = "COPY order_cycle_metrics (project_id, order_id, cycle_id, started_at, ended_at, \
     wall_seconds, working_seconds, is_open) FROM STDIN (FORMAT binary)";

/// `PGCOPY\n\xff\r\n\0`, no flags, no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const TRAILER: i16 = -1;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC), which binary timestamps
/// count from.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bytes gathered before they are handed to the connection.
const SEND_AT: usize = 1 << 20;

/// Whether no two of `events` share a dedup key, so that `COPY` can write them all.
pub(crate) fn distinct(events: &[StoredEvent]) -> bool {
    let mut seen = HashSet::with_capacity(events.len());
    events.iter().all(|e| seen.insert((e.project_id, e.event.order_id, e.event.changed_at, e.event.status_id)))
}

/// A row of the binary format, written field by field; [`Row::write`] puts the number of fields
/// in front.
pub(crate) struct Row<'a> {
    out: &'a mut Vec<u8>,
    fields: i16,
}

impl Row<'_> {
    /// Appends to `out` the row that `fields` writes.
    fn write(out: &mut Vec<u8>, fields: impl FnOnce(&mut Row<'_>)) {
        let count_at = out.len();
        out.extend_from_slice(&0i16.to_be_bytes());
        let mut row = Row { out, fields: 0 };
        fields(&mut row);
        let count = row.fields.to_be_bytes();
        out[count_at..count_at + 2].copy_from_slice(&count);
    }

    fn bigint(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    fn float8(&mut self, value: f64) -> &mut Self {
        self.field(&value.to_bits().to_be_bytes())
    }

    fn boolean(&mut self, value: bool) -> &mut Self {
        self.field(&[u8::from(value)])
    }

    fn timestamptz(&mut self, instant: Option<Timestamp>) -> &mut Self {
        match instant {
            Some(instant) => self.bigint(instant.as_micros() - POSTGRES_EPOCH_MICROS),
            None => self.null(),
        }
    }

    /// Text as its UTF-8 bytes (the binary format escapes nothing).
    fn text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.field(value.as_bytes()),
            None => self.null(),
        }
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let length = i32::try_from(bytes.len()).expect("a field larger than 2 GiB");
        self.out.extend_from_slice(&length.to_be_bytes());
        self.out.extend_from_slice(bytes);
        self.fields += 1;
        self
    }

    fn null(&mut self) -> &mut Self {
        self.out.extend_from_slice(&(-1i32).to_be_bytes());
        self.fields += 1;
        self
    }
}

/// The fields of one row of `COPY_EVENTS`.
pub(crate) fn event(row: &mut Row<'_>, event: &StoredEvent) {
    row.bigint(event.project_id).bigint(event.event.order_id).bigint(event.event.status_id).bigint(i64::from(event.event.group_id));
    row.timestamptz(Some(event.event.changed_at)).timestamptz(Some(event.event.order_created_at)).timestamptz(Some(event.received_at));
    row.text(Some(columns::source_name(event.event.source))).text(event.payload.as_deref());
}

/// The fields of one row of `COPY_CYCLES`.
pub(crate) fn cycle(row: &mut Row<'_>, (project_id, order_id, cycle): &(i64, i64, &CycleRow)) {
    row.bigint(*project_id).bigint(*order_id).bigint(i64::from(cycle.cycle_id));
    row.timestamptz(Some(cycle.started_at)).timestamptz(cycle.ended_at);
    row.float8(cycle.wall_seconds).float8(cycle.working_seconds).boolean(cycle.is_open);
}

/// Copies `rows` with `statement` (one of the `COPY_…` above, whose columns `fields` writes in
/// order) on `conn`, inside the caller's transaction, a megabyte at a time.
pub(crate) async fn copy<T>(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[T],
    fields: impl Fn(&mut Row<'_>, &T),
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut rows = rows.iter().peekable();
    let mut buffer = HEADER.to_vec();
    loop {
        while buffer.len() < SEND_AT
            && let Some(value) = rows.next()
        {
            Row::write(&mut buffer, |row| fields(row, value));
        }
        let last = rows.peek().is_none();
        if last {
            buffer.extend_from_slice(&TRAILER.to_be_bytes());
        }
        let sent = copy.send(std::mem::replace(&mut buffer, Vec::with_capacity(SEND_AT + 4096))).await.map(|_| ());
        if let Err(error) = sent {
            let _ = copy.abort("sending the rows failed").await;
            return Err(error);
        }
        if last {
            break;
        }
    }
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ksa_schemas::{EventSource, StatusEvent};

    use super::*;

    fn stored(order_id: i64, status_id: i64, payload: Option<&str>) -> StoredEvent {
        StoredEvent {
            project_id: 3,
            event: StatusEvent {
                order_id,
                status_id,
                group_id: 2,
                changed_at: Timestamp::from_micros(POSTGRES_EPOCH_MICROS + 1),
                order_created_at: Timestamp::from_micros(0),
                source: EventSource::Webhook,
            },
            received_at: Timestamp::from_micros(POSTGRES_EPOCH_MICROS - 1),
            payload: payload.map(str::to_owned),
        }
    }

    #[test]
    fn an_event_is_nine_fields_of_length_and_bytes() {
        let mut out = Vec::new();
        Row::write(&mut out, |row| event(row, &stored(7, 20, Some("{\"a\":\"\t\"}"))));
        let mut expected = 9i16.to_be_bytes().to_vec();
        for integer in [3i64, 7, 20, 2, 1, -POSTGRES_EPOCH_MICROS, -1] {
            expected.extend_from_slice(&8i32.to_be_bytes());
            expected.extend_from_slice(&integer.to_be_bytes());
        }
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(b"webhook");
        expected.extend_from_slice(&9i32.to_be_bytes());
        expected.extend_from_slice(b"{\"a\":\"\t\"}");
        assert_eq!(out, expected);

        let mut without_payload = Vec::new();
        Row::write(&mut without_payload, |row| event(row, &stored(7, 20, None)));
        assert_eq!(&without_payload[without_payload.len() - 4..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn floats_booleans_and_missing_instants_have_their_binary_forms() {
        let open = CycleRow {
            cycle_id: 2,
            started_at: Timestamp::from_micros(POSTGRES_EPOCH_MICROS),
            ended_at: None,
            wall_seconds: 1.5,
            working_seconds: -0.0,
            is_open: true,
        };
        let mut out = Vec::new();
        Row::write(&mut out, |row| cycle(row, &(3, 7, &open)));
        let mut expected = 8i16.to_be_bytes().to_vec();
        for integer in [3i64, 7, 2, 0] {
            expected.extend_from_slice(&8i32.to_be_bytes());
            expected.extend_from_slice(&integer.to_be_bytes());
        }
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        for float in [1.5f64, -0.0] {
            expected.extend_from_slice(&8i32.to_be_bytes());
            expected.extend_from_slice(&float.to_bits().to_be_bytes());
        }
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.push(1);
        assert_eq!(out, expected);
    }

    #[test]
    fn repeated_dedup_keys_are_noticed() {
        assert!(distinct(&[stored(7, 20, None), stored(7, 21, None), stored(8, 20, None)]));
        assert!(!distinct(&[stored(7, 20, None), stored(8, 20, None), stored(7, 20, Some("{}"))]));
        assert!(distinct(&[]));
    }
}
