//! External sort of status events by order: sorted chunks in memory, spilled as fixed-size
//! binary records to anonymous temporary files, merged back one order at a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use anyhow::Context;
use ksa_schemas::{EventSource, StatusEvent, Timestamp};

const RECORD: usize = 40;
/// Sorted chunks open at once; past this many they are merged into one, so a huge log never
/// exhausts file descriptors.
const MAX_OPEN_RUNS: usize = 64;

pub struct SortedRuns {
    chunk: Vec<StatusEvent>,
    capacity: usize,
    spilled: Vec<File>,
}

impl SortedRuns {
    pub fn new(capacity: usize) -> Self {
        SortedRuns { chunk: Vec::with_capacity(capacity.min(1 << 16)), capacity, spilled: Vec::new() }
    }

    pub fn push(&mut self, event: StatusEvent) -> anyhow::Result<()> {
        self.chunk.push(event);
        if self.chunk.len() >= self.capacity {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> anyhow::Result<()> {
        self.chunk.sort_unstable_by_key(|e| e.order_id);
        let mut writer = RunWriter::create()?;
        for event in self.chunk.drain(..) {
            writer.write(&event)?;
        }
        self.spilled.push(writer.finish()?);
        if self.spilled.len() >= MAX_OPEN_RUNS {
            let mut writer = RunWriter::create()?;
            merge(std::mem::take(&mut self.spilled), &mut |_, order| order.iter().try_for_each(|e| writer.write(e)))?;
            self.spilled.push(writer.finish()?);
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<Sorted> {
        if self.spilled.is_empty() {
            self.chunk.sort_unstable_by_key(|e| e.order_id);
            return Ok(Sorted::InMemory(self.chunk));
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        Ok(Sorted::Spilled(self.spilled))
    }
}

pub enum Sorted {
    InMemory(Vec<StatusEvent>),
    Spilled(Vec<File>),
}

impl Sorted {
    pub fn spilled_chunks(&self) -> usize {
        match self {
            Sorted::InMemory(_) => 0,
            Sorted::Spilled(files) => files.len(),
        }
    }
}

/// Calls `f` once per order, in ascending order id, with all of that order's events.
pub fn group_by_order(sorted: Sorted, f: &mut dyn FnMut(i64, &[StatusEvent]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    match sorted {
        Sorted::InMemory(events) => {
            for order in events.chunk_by(|a, b| a.order_id == b.order_id) {
                f(order[0].order_id, order)?;
            }
            Ok(())
        }
        Sorted::Spilled(files) => merge(files, f),
    }
}

fn merge(files: Vec<File>, f: &mut dyn FnMut(i64, &[StatusEvent]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut readers: Vec<RunReader> = files.into_iter().map(|file| RunReader { reader: BufReader::with_capacity(1 << 18, file) }).collect();
    let mut heads: Vec<Option<StatusEvent>> = Vec::with_capacity(readers.len());
    let mut heap = BinaryHeap::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        let head = reader.next()?;
        if let Some(event) = &head {
            heap.push(Reverse((event.order_id, i)));
        }
        heads.push(head);
    }
    let mut order = Vec::new();
    while let Some(Reverse((order_id, _))) = heap.peek().copied() {
        order.clear();
        while let Some(&Reverse((id, i))) = heap.peek() {
            if id != order_id {
                break;
            }
            heap.pop();
            while let Some(event) = heads[i].take() {
                if event.order_id != order_id {
                    heap.push(Reverse((event.order_id, i)));
                    heads[i] = Some(event);
                    break;
                }
                order.push(event);
                heads[i] = readers[i].next()?;
            }
        }
        f(order_id, &order)?;
    }
    Ok(())
}

/// A sorted run being written to an anonymous temporary file.
struct RunWriter(BufWriter<File>);

impl RunWriter {
    fn create() -> anyhow::Result<Self> {
        let file = tempfile::tempfile().context("creating a temporary file for sorting (set TMPDIR to a roomier place)")?;
        Ok(RunWriter(BufWriter::with_capacity(1 << 20, file)))
    }

    fn write(&mut self, event: &StatusEvent) -> anyhow::Result<()> {
        self.0.write_all(&encode(event)).context("writing a sorted chunk")
    }

    /// The run, rewound for reading.
    fn finish(self) -> anyhow::Result<File> {
        let mut file = self.0.into_inner().map_err(|e| e.into_error()).context("writing a sorted chunk")?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

struct RunReader {
    reader: BufReader<File>,
}

impl RunReader {
    fn next(&mut self) -> anyhow::Result<Option<StatusEvent>> {
        let mut buf = [0u8; RECORD];
        match self.reader.read_exact(&mut buf) {
            Ok(()) => Ok(Some(decode(&buf))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e).context("reading a sorted chunk back"),
        }
    }
}

fn encode(e: &StatusEvent) -> [u8; RECORD] {
    let mut buf = [0u8; RECORD];
    buf[0..8].copy_from_slice(&e.order_id.to_le_bytes());
    buf[8..16].copy_from_slice(&e.status_id.to_le_bytes());
    buf[16..24].copy_from_slice(&e.changed_at.as_micros().to_le_bytes());
    buf[24..32].copy_from_slice(&e.order_created_at.as_micros().to_le_bytes());
    buf[32..34].copy_from_slice(&e.group_id.to_le_bytes());
    buf[34] = match e.source {
        EventSource::Webhook => 0,
        EventSource::Backfilled => 1,
        EventSource::Reconciled => 2,
    };
    buf
}

fn decode(buf: &[u8; RECORD]) -> StatusEvent {
    let i64_at = |at: usize| i64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or_default());
    StatusEvent {
        order_id: i64_at(0),
        status_id: i64_at(8),
        changed_at: Timestamp::from_micros(i64_at(16)),
        order_created_at: Timestamp::from_micros(i64_at(24)),
        group_id: u16::from_le_bytes([buf[32], buf[33]]),
        source: match buf[34] {
            1 => EventSource::Backfilled,
            2 => EventSource::Reconciled,
            _ => EventSource::Webhook,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(order_id: i64, minute: i64) -> StatusEvent {
        StatusEvent {
            order_id,
            status_id: minute,
            group_id: 3,
            changed_at: Timestamp::from_seconds(minute * 60),
            order_created_at: Timestamp::from_seconds(0),
            source: EventSource::Reconciled,
        }
    }

    fn collect(capacity: usize, events: &[StatusEvent]) -> (usize, Vec<(i64, Vec<StatusEvent>)>) {
        let mut runs = SortedRuns::new(capacity);
        for e in events {
            runs.push(*e).unwrap();
        }
        let sorted = runs.finish().unwrap();
        let spilled = sorted.spilled_chunks();
        let mut out = Vec::new();
        group_by_order(sorted, &mut |id, evs| {
            let mut evs = evs.to_vec();
            evs.sort_by_key(|e| e.changed_at);
            out.push((id, evs));
            Ok(())
        })
        .unwrap();
        (spilled, out)
    }

    #[test]
    fn spilled_chunks_merge_to_the_same_groups_as_memory() {
        let events: Vec<StatusEvent> = (0..2000).map(|i| event((i * 7919) % 37, i)).collect();
        let (spilled_none, in_memory) = collect(10_000, &events);
        // 200 chunks of 10: more than may stay open, so runs are merged along the way.
        let (spilled_many, merged) = collect(10, &events);
        assert_eq!(spilled_none, 0);
        assert!(spilled_many > 1);
        assert!(spilled_many < MAX_OPEN_RUNS, "runs are merged before there are too many open files");
        assert_eq!(in_memory, merged);
        assert_eq!(merged.len(), 37);
        assert!(merged.windows(2).all(|w| w[0].0 < w[1].0), "orders come out in ascending id");
    }

    #[test]
    fn records_round_trip() {
        let e = event(-5, 123_456);
        assert_eq!(decode(&encode(&e)), e);
    }
}
