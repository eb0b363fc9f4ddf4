//! SQL written once for both databases.
//!
//! Most of the state store is plain SQL that both dialects run alike: the tables have the same
//! columns, and only a few spellings differ. A statement here is one text with markers for those
//! spellings, rendered once per dialect ([`Statement`]); values are bound as [`Arg`]s and rows
//! read through [`Row`], whose getters decode the same Rust types from either database. Each
//! store (`sqlite.rs`, `postgres.rs`) hands out its [`Db`]; everything written against `Db`
//! serves both.
//!
//! What truly differs stays per dialect: the processor's batch writes (multi-row `VALUES` on
//! SQLite, binary `COPY` on PostgreSQL) and the reads of its hot path.
//!
//! Markers, each in braces:
//! - `{at:$n}`: the instant `$n` microseconds after the Unix epoch (PostgreSQL keeps instants as
//!   `TIMESTAMPTZ`, SQLite as integer microseconds);
//! - `{micros:column}`: a column's instant as microseconds;
//! - `{now}`: the current instant, as the schema's defaults write it;
//! - `{ids:$n}`: `= ANY($n)` over an [`Arg::Ids`] list (a JSON array on SQLite);
//! - `{json:$n}`: a JSON document bound as text, for a column that PostgreSQL keeps as JSONB;
//! - `{text:column}`: such a column read back as text;
//! - `{least}`, `{greatest}`: the two-argument minimum and maximum functions;
//! - `{for_update}`: row locks where the database has them (SQLite's writers take the whole
//!   file).

mod render;

use std::sync::{Arc, OnceLock};

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Decode, Postgres, Sqlite, Type};

use crate::StateError;
use crate::access_cache::AccessCache;
use crate::sqlite::WriteGate;

pub(crate) use render::Dialect;

/// One statement, rendered for each dialect on first use.
pub(crate) struct Statement {
    template: &'static str,
    rendered: [OnceLock<String>; 2],
}

impl Statement {
    pub(crate) const fn new(template: &'static str) -> Self {
        Statement { template, rendered: [OnceLock::new(), OnceLock::new()] }
    }

    fn text(&'static self, dialect: Dialect) -> &'static str {
        self.rendered[dialect as usize].get_or_init(|| render::render(self.template, dialect))
    }
}

/// A `&'static Statement` from a template: `sql!("SELECT … WHERE id = $1")`.
macro_rules! sql {
    ($text:expr) => {{
        static STATEMENT: $crate::sql::Statement = $crate::sql::Statement::new($text);
        &STATEMENT
    }};
}
pub(crate) use sql;

/// A bound value.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    /// A list for `{ids:$n}`.
    Ids(Vec<i64>),
}

macro_rules! arg_from {
    ($variant:ident: $($ty:ty => $conv:expr),* $(,)?) => {$(
        impl From<$ty> for Arg {
            fn from(value: $ty) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Arg::$variant(Some(($conv)(value)))
            }
        }
        impl From<Option<$ty>> for Arg {
            fn from(value: Option<$ty>) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Arg::$variant(value.map($conv))
            }
        }
    )*};
}
arg_from!(Int: i64 => |v| v, u32 => i64::from, u16 => i64::from, ksa_schemas::Timestamp => |t: ksa_schemas::Timestamp| t.as_micros());
arg_from!(Real: f64 => |v| v);
arg_from!(Text: String => |v| v, &str => str::to_owned, &String => String::clone);
arg_from!(Bool: bool => |v| v);
arg_from!(Bytes: Vec<u8> => |v| v, &[u8] => <[u8]>::to_vec);

impl From<&[i64]> for Arg {
    fn from(ids: &[i64]) -> Self {
        Arg::Ids(ids.to_vec())
    }
}

/// `args![a, b, c]`: the values of a statement's `$1, $2, $3`.
macro_rules! args {
    ($($value:expr),* $(,)?) => { vec![$($crate::sql::Arg::from($value)),*] };
}
pub(crate) use args;

/// A Rust type that both databases decode alike.
pub(crate) trait Column: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}
impl<T> Column for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// A row from either database.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// The column `name` (or at an index) as `T`.
    pub(crate) fn get<T: Column, I: sqlx::ColumnIndex<SqliteRow> + sqlx::ColumnIndex<PgRow>>(&self, index: I) -> Result<T, StateError> {
        use sqlx::Row as _;
        Ok(match self {
            Row::Sqlite(row) => row.try_get(index)?,
            Row::Postgres(row) => row.try_get(index)?,
        })
    }

    /// An instant column read with `{micros:…}`.
    pub(crate) fn instant(&self, name: &str) -> Result<ksa_schemas::Timestamp, StateError> {
        Ok(ksa_schemas::Timestamp::from_micros(self.get(name)?))
    }

    pub(crate) fn opt_instant(&self, name: &str) -> Result<Option<ksa_schemas::Timestamp>, StateError> {
        Ok(self.get::<Option<i64>, _>(name)?.map(ksa_schemas::Timestamp::from_micros))
    }
}

/// The database of a store: a pool, and on SQLite the gate its writers queue at; and what the
/// store's reads keep in memory ([`AccessCache`]), shared by its clones.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite { pool: SqlitePool, gate: WriteGate, access: Arc<AccessCache> },
    Postgres { pool: PgPool, access: Arc<AccessCache> },
}

/// A write transaction; dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx {
    conn: TxConn,
    access: Arc<AccessCache>,
    changes_access: bool,
}

enum TxConn {
    Sqlite { tx: sqlx::Transaction<'static, Sqlite>, _turn: tokio::sync::OwnedMutexGuard<()> },
    Postgres { tx: sqlx::Transaction<'static, Postgres> },
}

/// Binds `args` to `query`, whichever database's it is.
macro_rules! bind_all {
    ($query:expr, $args:expr, $ids:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(v) => query.bind(v),
                Arg::Real(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
                Arg::Bool(v) => query.bind(v),
                Arg::Bytes(v) => query.bind(v),
                Arg::Ids(ids) => query.bind($ids(ids)),
            };
        }
        query
    }};
}

/// SQLite has no arrays: a list travels as a JSON array, read with `json_each`.
fn sqlite_query(statement: &'static Statement, args: Vec<Arg>) -> Query<'static, Sqlite, SqliteArguments> {
    bind_all!(sqlx::query(statement.text(Dialect::Sqlite)), args, |ids: Vec<i64>| serde_json::to_string(&ids)
        .unwrap_or_else(|_| "[]".into()))
}

fn postgres_query(statement: &'static Statement, args: Vec<Arg>) -> Query<'static, Postgres, PgArguments> {
    let ids = args.iter().any(|a| matches!(a, Arg::Ids(_)));
    // A list's plan depends on its length: plan each such statement for its own list.
    bind_all!(sqlx::query(statement.text(Dialect::Postgres)).persistent(!ids), args, |ids: Vec<i64>| ids)
}

/// The same four calls on a pool and on a transaction.
macro_rules! executor_methods {
    () => {
        pub(crate) async fn fetch_all(&mut self, statement: &'static Statement, args: Vec<Arg>) -> Result<Vec<Row>, StateError> {
            Ok(match self.split() {
                Split::Sqlite(conn) => sqlite_query(statement, args).fetch_all(conn).await?.into_iter().map(Row::Sqlite).collect(),
                Split::Postgres(conn) => postgres_query(statement, args).fetch_all(conn).await?.into_iter().map(Row::Postgres).collect(),
            })
        }

        pub(crate) async fn fetch_optional(&mut self, statement: &'static Statement, args: Vec<Arg>) -> Result<Option<Row>, StateError> {
            Ok(match self.split() {
                Split::Sqlite(conn) => sqlite_query(statement, args).fetch_optional(conn).await?.map(Row::Sqlite),
                Split::Postgres(conn) => postgres_query(statement, args).fetch_optional(conn).await?.map(Row::Postgres),
            })
        }

        pub(crate) async fn fetch_one(&mut self, statement: &'static Statement, args: Vec<Arg>) -> Result<Row, StateError> {
            Ok(match self.split() {
                Split::Sqlite(conn) => Row::Sqlite(sqlite_query(statement, args).fetch_one(conn).await?),
                Split::Postgres(conn) => Row::Postgres(postgres_query(statement, args).fetch_one(conn).await?),
            })
        }
    };
}

enum Split<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

impl Tx {
    fn split(&mut self) -> Split<'_> {
        match &mut self.conn {
            TxConn::Sqlite { tx, .. } => Split::Sqlite(tx),
            TxConn::Postgres { tx } => Split::Postgres(tx),
        }
    }

    /// This transaction changes who may do what, or where (users, memberships, tokens,
    /// projects, applied revisions): its commit makes the store's kept callers forgotten.
    pub(crate) fn changes_access(&mut self) {
        self.changes_access = true;
    }

    executor_methods!();

    /// Runs a statement; returns the rows it changed.
    pub(crate) async fn execute(&mut self, statement: &'static Statement, args: Vec<Arg>) -> Result<u64, StateError> {
        Ok(match self.split() {
            Split::Sqlite(conn) => sqlite_query(statement, args).execute(conn).await?.rows_affected(),
            Split::Postgres(conn) => postgres_query(statement, args).execute(conn).await?.rows_affected(),
        })
    }

    pub(crate) async fn commit(self) -> Result<(), StateError> {
        match self.conn {
            TxConn::Sqlite { tx, _turn } => tx.commit().await?,
            TxConn::Postgres { tx } => tx.commit().await?,
        }
        if self.changes_access {
            self.access.changed();
        }
        Ok(())
    }
}

/// A read-only snapshot ([`Db::snapshot`]); rows stream one at a time, so a large table is
/// read in constant memory.
pub(crate) enum Snapshot {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Snapshot {
    pub(crate) async fn for_each(
        &mut self,
        statement: &'static Statement,
        args: Vec<Arg>,
        mut each: impl FnMut(&Row) -> Result<(), StateError> + Send,
    ) -> Result<(), StateError> {
        use futures_util::TryStreamExt;
        match self {
            Snapshot::Sqlite(tx) => {
                let mut rows = sqlite_query(statement, args).fetch(&mut **tx);
                while let Some(row) = rows.try_next().await? {
                    each(&Row::Sqlite(row))?;
                }
            }
            Snapshot::Postgres(tx) => {
                let mut rows = postgres_query(statement, args).fetch(&mut **tx);
                while let Some(row) = rows.try_next().await? {
                    each(&Row::Postgres(row))?;
                }
            }
        }
        Ok(())
    }
}

/// Reads outside a transaction: each on a connection of the pool.
pub(crate) struct Reader {
    conn: ReaderConn,
}

enum ReaderConn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl Reader {
    fn split(&mut self) -> Split<'_> {
        match &mut self.conn {
            ReaderConn::Sqlite(conn) => Split::Sqlite(conn),
            ReaderConn::Postgres(conn) => Split::Postgres(conn),
        }
    }

    executor_methods!();
}

impl Db {
    /// Begins a write transaction. On SQLite it waits its turn at the store's gate and takes
    /// the write lock at once (`BEGIN IMMEDIATE`), so it never fails half-way on a busy file.
    pub(crate) async fn begin(&self) -> Result<Tx, StateError> {
        let conn = match self {
            Db::Sqlite { pool, gate, .. } => {
                let turn = gate.clone().lock_owned().await;
                TxConn::Sqlite { tx: pool.begin_with("BEGIN IMMEDIATE").await?, _turn: turn }
            }
            Db::Postgres { pool, .. } => TxConn::Postgres { tx: pool.begin().await? },
        };
        Ok(Tx { conn, access: self.access().clone(), changes_access: false })
    }

    /// What the store's reads keep in memory.
    pub(crate) fn access(&self) -> &Arc<AccessCache> {
        match self {
            Db::Sqlite { access, .. } | Db::Postgres { access, .. } => access,
        }
    }

    /// A read-only transaction: every read sees the same snapshot.
    pub(crate) async fn snapshot(&self) -> Result<Snapshot, StateError> {
        Ok(match self {
            Db::Sqlite { pool, .. } => Snapshot::Sqlite(pool.begin().await?),
            Db::Postgres { pool, .. } => Snapshot::Postgres(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?),
        })
    }

    /// A connection for reads.
    pub(crate) async fn reader(&self) -> Result<Reader, StateError> {
        Ok(Reader {
            conn: match self {
                Db::Sqlite { pool, .. } => ReaderConn::Sqlite(pool.acquire().await?),
                Db::Postgres { pool, .. } => ReaderConn::Postgres(pool.acquire().await?),
            },
        })
    }

    pub(crate) async fn fetch_all(&self, statement: &'static Statement, args: Vec<Arg>) -> Result<Vec<Row>, StateError> {
        self.reader().await?.fetch_all(statement, args).await
    }

    pub(crate) async fn fetch_optional(&self, statement: &'static Statement, args: Vec<Arg>) -> Result<Option<Row>, StateError> {
        self.reader().await?.fetch_optional(statement, args).await
    }

    pub(crate) async fn fetch_one(&self, statement: &'static Statement, args: Vec<Arg>) -> Result<Row, StateError> {
        self.reader().await?.fetch_one(statement, args).await
    }

    /// Runs one write statement in a transaction of its own.
    pub(crate) async fn execute(&self, statement: &'static Statement, args: Vec<Arg>) -> Result<u64, StateError> {
        let mut tx = self.begin().await?;
        let changed = tx.execute(statement, args).await?;
        tx.commit().await?;
        Ok(changed)
    }
}

/// A store built on [`Db`]: every trait written against it serves both databases.
pub(crate) trait SqlStore {
    fn db(&self) -> &Db;

    /// Starts keeping callers in memory while the database tells of their changes
    /// ([`AccessCache`]); a database that cannot tell keeps nothing.
    fn keep_access_in_memory(&self) {}
}

/// True when `error` is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &StateError) -> bool {
    matches!(error, StateError::Database(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()))
}
