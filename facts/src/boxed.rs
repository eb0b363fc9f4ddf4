//! A fact sink chosen at run time: the configuration decides between ClickHouse, Parquet or
//! none, and the processor holds whichever it is behind one type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ksa_schemas::facts::FactBatch;

use crate::{FactError, FactSink};

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), FactError>> + Send + 'a>>;

/// [`FactSink`] is not object safe (its method returns `impl Future`); this is.
trait ErasedSink: Send + Sync {
    fn write_boxed(&self, batch: FactBatch) -> WriteFuture<'_>;
}

impl<T: FactSink> ErasedSink for T {
    fn write_boxed(&self, batch: FactBatch) -> WriteFuture<'_> {
        Box::pin(self.write(batch))
    }
}

/// Any [`FactSink`], cheap to clone. Writes cost one allocation more than the sink's own.
#[derive(Clone)]
pub struct BoxedFactSink {
    sink: Arc<dyn ErasedSink>,
    kind: &'static str,
}

impl BoxedFactSink {
    /// Wraps `sink`; `kind` names it in logs and `Debug` (`clickhouse`, `parquet`, …).
    pub fn new(kind: &'static str, sink: impl FactSink) -> Self {
        BoxedFactSink { sink: Arc::new(sink), kind }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl std::fmt::Debug for BoxedFactSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxedFactSink").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl FactSink for BoxedFactSink {
    fn write(&self, batch: FactBatch) -> impl Future<Output = Result<(), FactError>> + Send {
        self.sink.write_boxed(batch)
    }
}
