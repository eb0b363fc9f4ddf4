//! The two fact tables as Arrow data: their explicit schemas, their natural keys and months,
//! and the conversions between fact rows and record batches.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use ksa_schemas::Timestamp;
use ksa_schemas::facts::{CycleFact, FactSlaState, FactVersion, IntervalFact};

/// Instants are UTC microseconds, as `Timestamp` holds them; strings are plain `Utf8` (the
/// type `ArrowWriter` writes, not DataFusion's `Utf8View`).
fn instant(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), nullable)
}

static INTERVALS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("project_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("status_id", DataType::Int64, false),
        Field::new("group_id", DataType::UInt16, false),
        instant("entered_at", false),
        instant("left_at", true),
        Field::new("wall_seconds", DataType::Float64, false),
        Field::new("working_seconds", DataType::Float64, false),
        Field::new("is_urgent", DataType::Boolean, false),
        Field::new("sla_state", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        // Added later: files written before lack them, and read them as null.
        instant("order_created_at", true),
        instant("group_entered_at", true),
    ]))
});

static CYCLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("project_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("cycle_id", DataType::UInt32, false),
        instant("started_at", false),
        instant("ended_at", true),
        Field::new("wall_seconds", DataType::Float64, false),
        Field::new("working_seconds", DataType::Float64, false),
        Field::new("is_urgent", DataType::Boolean, false),
        Field::new("version", DataType::UInt64, false),
        instant("order_created_at", true),
    ]))
});

/// The schema of `status_intervals` files; register the folder with it, never an inferred one
/// (docs/architecture.md, "Parquet files are written by one writer with an explicit schema").
pub fn interval_schema() -> SchemaRef {
    INTERVALS.clone()
}

/// The schema of `order_cycles` files.
pub fn cycle_schema() -> SchemaRef {
    CYCLES.clone()
}

/// What the store needs to know of a fact table.
pub(crate) trait FactTable: Clone + Send + Sync + 'static {
    /// Sorts and compares rows with the same natural key.
    type Key: Ord + Clone + Send;
    const NAME: &'static str;
    fn schema() -> SchemaRef;
    fn project_id(&self) -> i64;
    /// The instant whose UTC month names the row's folder.
    fn month_instant(&self) -> Timestamp;
    fn key(&self) -> Self::Key;
    fn version(&self) -> FactVersion;
    /// False for a row written before the table's latest columns existed: of two rows with
    /// one key and one version (a recompute writes the same version again), the complete one
    /// is kept.
    fn complete(&self) -> bool;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError>;
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String>;
}

fn instants(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// A column of `batch` by name and type, or why not.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch.column_by_name(name).ok_or_else(|| format!("column `{name}` is missing"))
}

fn primitive<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::PrimitiveArray<T>, String> {
    column(batch, name)?
        .as_primitive_opt::<T>()
        .ok_or_else(|| format!("column `{name}` has type {}", column(batch, name).map_or(DataType::Null, |c| c.data_type().clone())))
}

fn optional(array: &TimestampMicrosecondArray, row: usize) -> Option<Timestamp> {
    array.is_valid(row).then(|| Timestamp::from_micros(array.value(row)))
}

/// An instant column added after files were first written: absent in older files.
fn added_instant<'a>(batch: &'a RecordBatch, name: &str) -> Result<Option<&'a TimestampMicrosecondArray>, String> {
    if batch.column_by_name(name).is_none() {
        return Ok(None);
    }
    primitive::<TimestampMicrosecondType>(batch, name).map(Some)
}

fn added_optional(array: Option<&TimestampMicrosecondArray>, row: usize) -> Option<Timestamp> {
    array.and_then(|array| optional(array, row))
}

impl FactTable for IntervalFact {
    type Key = (i64, i64, Timestamp, i64);
    const NAME: &'static str = "status_intervals";

    fn schema() -> SchemaRef {
        interval_schema()
    }

    fn project_id(&self) -> i64 {
        self.project_id
    }

    fn month_instant(&self) -> Timestamp {
        self.entered_at
    }

    fn key(&self) -> Self::Key {
        (self.project_id, self.order_id, self.entered_at, self.status_id)
    }

    fn version(&self) -> FactVersion {
        self.version
    }

    fn complete(&self) -> bool {
        self.order_created_at.is_some() && self.group_entered_at.is_some()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.project_id))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.order_id))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.status_id))),
            Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.group_id))),
            instants(rows.iter().map(|r| Some(r.entered_at.as_micros()))),
            instants(rows.iter().map(|r| r.left_at.map(Timestamp::as_micros))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.wall_seconds))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.working_seconds))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.is_urgent)))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.sla_state.as_str()))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.version.as_u64()))),
            instants(rows.iter().map(|r| r.order_created_at.map(Timestamp::as_micros))),
            instants(rows.iter().map(|r| r.group_entered_at.map(Timestamp::as_micros))),
        ];
        RecordBatch::try_new(interval_schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String> {
        let project_id = primitive::<Int64Type>(batch, "project_id")?;
        let order_id = primitive::<Int64Type>(batch, "order_id")?;
        let status_id = primitive::<Int64Type>(batch, "status_id")?;
        let group_id = primitive::<UInt16Type>(batch, "group_id")?;
        let entered_at = primitive::<TimestampMicrosecondType>(batch, "entered_at")?;
        let left_at = primitive::<TimestampMicrosecondType>(batch, "left_at")?;
        let wall = primitive::<Float64Type>(batch, "wall_seconds")?;
        let working = primitive::<Float64Type>(batch, "working_seconds")?;
        let urgent = column(batch, "is_urgent")?.as_boolean_opt().ok_or("column `is_urgent` is not boolean")?;
        let sla = column(batch, "sla_state")?.as_string_opt::<i32>().ok_or("column `sla_state` is not Utf8")?;
        let version = primitive::<UInt64Type>(batch, "version")?;
        let created = added_instant(batch, "order_created_at")?;
        let group_entered = added_instant(batch, "group_entered_at")?;
        (0..batch.num_rows())
            .map(|row| {
                Ok(IntervalFact {
                    project_id: project_id.value(row),
                    order_id: order_id.value(row),
                    status_id: status_id.value(row),
                    group_id: group_id.value(row),
                    entered_at: Timestamp::from_micros(entered_at.value(row)),
                    left_at: optional(left_at, row),
                    wall_seconds: wall.value(row),
                    working_seconds: working.value(row),
                    is_urgent: urgent.value(row),
                    sla_state: FactSlaState::parse(sla.value(row)).ok_or_else(|| format!("unknown sla_state `{}`", sla.value(row)))?,
                    version: FactVersion::from_u64(version.value(row)),
                    order_created_at: added_optional(created, row),
                    group_entered_at: added_optional(group_entered, row),
                })
            })
            .collect()
    }
}

impl FactTable for CycleFact {
    type Key = (i64, i64, u32);
    const NAME: &'static str = "order_cycles";

    fn schema() -> SchemaRef {
        cycle_schema()
    }

    fn project_id(&self) -> i64 {
        self.project_id
    }

    fn month_instant(&self) -> Timestamp {
        self.started_at
    }

    fn key(&self) -> Self::Key {
        (self.project_id, self.order_id, self.cycle_id)
    }

    fn version(&self) -> FactVersion {
        self.version
    }

    fn complete(&self) -> bool {
        self.order_created_at.is_some()
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.project_id))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.order_id))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.cycle_id))),
            instants(rows.iter().map(|r| Some(r.started_at.as_micros()))),
            instants(rows.iter().map(|r| r.ended_at.map(Timestamp::as_micros))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.wall_seconds))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.working_seconds))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.is_urgent)))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.version.as_u64()))),
            instants(rows.iter().map(|r| r.order_created_at.map(Timestamp::as_micros))),
        ];
        RecordBatch::try_new(cycle_schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, String> {
        let project_id = primitive::<Int64Type>(batch, "project_id")?;
        let order_id = primitive::<Int64Type>(batch, "order_id")?;
        let cycle_id = primitive::<UInt32Type>(batch, "cycle_id")?;
        let started_at = primitive::<TimestampMicrosecondType>(batch, "started_at")?;
        let ended_at = primitive::<TimestampMicrosecondType>(batch, "ended_at")?;
        let wall = primitive::<Float64Type>(batch, "wall_seconds")?;
        let working = primitive::<Float64Type>(batch, "working_seconds")?;
        let urgent = column(batch, "is_urgent")?.as_boolean_opt().ok_or("column `is_urgent` is not boolean")?;
        let version = primitive::<UInt64Type>(batch, "version")?;
        let created = added_instant(batch, "order_created_at")?;
        Ok((0..batch.num_rows())
            .map(|row| CycleFact {
                project_id: project_id.value(row),
                order_id: order_id.value(row),
                cycle_id: cycle_id.value(row),
                started_at: Timestamp::from_micros(started_at.value(row)),
                ended_at: optional(ended_at, row),
                wall_seconds: wall.value(row),
                working_seconds: working.value(row),
                is_urgent: urgent.value(row),
                version: FactVersion::from_u64(version.value(row)),
                order_created_at: added_optional(created, row),
            })
            .collect())
    }
}

/// Keeps, per key, the row with the highest version (of equal ones a complete one, else the
/// first), sorted by key.
pub(crate) fn newest_per_key<T: FactTable>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort_by(|a, b| a.key().cmp(&b.key()).then(b.version().cmp(&a.version())).then(b.complete().cmp(&a.complete())));
    rows.dedup_by(|later, kept| later.key() == kept.key());
    rows
}

/// A cycle row for tests: project 1, cycle 1, started at 0; a complete row has its later
/// columns; `mark` (its wall seconds) tells rows of one key apart.
#[cfg(test)]
pub(crate) fn test_cycle(order_id: i64, version: u32, complete: bool, mark: f64) -> CycleFact {
    CycleFact {
        project_id: 1,
        order_id,
        cycle_id: 1,
        started_at: Timestamp::from_seconds(0),
        ended_at: None,
        wall_seconds: mark,
        working_seconds: 0.0,
        is_urgent: false,
        version: FactVersion::new(0, version),
        order_created_at: complete.then(|| Timestamp::from_seconds(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_plain_utf8_and_instants_utc_microseconds() {
        let schema = interval_schema();
        assert_eq!(schema.field_with_name("sla_state").map(|f| f.data_type().clone()).ok(), Some(DataType::Utf8));
        let instant = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(schema.field_with_name("left_at").map(|f| (f.data_type().clone(), f.is_nullable())).ok(), Some((instant, true)));
    }

    #[test]
    fn newest_per_key_keeps_the_highest_version_of_each_key() {
        let cycle = |order_id, version| test_cycle(order_id, version, true, f64::from(version));
        let kept = newest_per_key(vec![cycle(2, 1), cycle(1, 2), cycle(2, 3), cycle(1, 1)]);
        assert_eq!(kept, vec![cycle(1, 2), cycle(2, 3)]);
    }

    #[test]
    fn of_one_version_the_row_with_the_later_columns_is_kept() {
        let complete = |order_id| test_cycle(order_id, 4, true, 1.0);
        let older_format = |order_id| test_cycle(order_id, 4, false, 1.0);
        let kept = newest_per_key(vec![older_format(1), complete(1), complete(2), older_format(2)]);
        assert_eq!(kept, vec![complete(1), complete(2)]);
    }

    fn interval() -> IntervalFact {
        IntervalFact {
            project_id: 1,
            order_id: 2,
            status_id: 3,
            group_id: 4,
            entered_at: Timestamp::from_micros(1_700_000_000_123_456),
            left_at: None,
            wall_seconds: 1.5,
            working_seconds: 0.5,
            is_urgent: true,
            sla_state: FactSlaState::Over,
            version: FactVersion::new(2, 9),
            order_created_at: Some(Timestamp::from_micros(1_600_000_000_000_000)),
            group_entered_at: Some(Timestamp::from_micros(1_650_000_000_000_000)),
        }
    }

    #[test]
    fn a_batch_without_the_later_columns_reads_them_as_unset() {
        let row = interval();
        let batch = IntervalFact::to_batch(std::slice::from_ref(&row)).expect("batch");
        let earlier = batch.project(&(0..batch.num_columns() - 2).collect::<Vec<_>>()).expect("the columns of the first format");
        let read = IntervalFact::from_batch(&earlier).expect("rows");
        assert_eq!(read, vec![IntervalFact { order_created_at: None, group_entered_at: None, ..row }]);
    }

    #[test]
    fn a_batch_converts_back_to_the_same_rows() {
        let row = IntervalFact { group_entered_at: None, ..interval() };
        let batch = IntervalFact::to_batch(std::slice::from_ref(&row)).expect("batch");
        assert_eq!(IntervalFact::from_batch(&batch), Ok(vec![row]));
    }
}
