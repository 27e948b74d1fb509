//! Bulk imports (CSV with a header row, or JSONL), per API.md.
//!
//! Rows stream from the input and are written in chunks, one transaction per
//! chunk, upserted by their natural key so a re-import changes nothing. A
//! bad row is reported with its 1-based line number and skipped; the good
//! rows are kept. When a chunk fails in the database, it is retried row by
//! row so one bad row cannot take its neighbours down.
use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityName};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub mod events;
pub mod members;
pub mod messages;
pub mod relations;
pub mod sentiment_examples;

/// Rows per transaction: large enough to amortise commits, small enough for
/// SQLite's bound-parameter limit (≈ 16 columns × 500).
pub const CHUNK: usize = 500;
/// Row errors listed in a result; the rest are only counted.
pub const MAX_LISTED_ERRORS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub accepted: usize,
    pub rejected_count: usize,
    pub rejected: Vec<RowError>,
    /// Members whose data the rows being written change, recorded for a
    /// refresh in the same transaction ([`worker::jobs::refresh::touch`]).
    pub touched_members: Vec<Uuid>,
}

impl Outcome {
    fn reject(&mut self, e: RowError) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_LISTED_ERRORS {
            self.rejected.push(e);
        }
    }
}

/// One input row: canonical key → value, with its line number.
pub struct Record {
    pub line: usize,
    pub fields: BTreeMap<&'static str, Value>,
}

impl Record {
    pub fn get(&self, key: &str) -> &Value {
        self.fields.get(key).unwrap_or(&Value::Null)
    }
    /// Present with a non-empty value.
    pub fn has(&self, key: &str) -> bool {
        crate::service::values::text(self.get(key)).is_some()
            || matches!(self.get(key), Value::Array(a) if !a.is_empty())
    }
}

/// One kind of import.
pub trait Importer {
    type Row: Send + Clone;
    /// Canonical column names (camelCase as in API.md).
    const COLUMNS: &'static [&'static str];
    const REQUIRED: &'static [&'static str];
    /// The table the import grows (its planner statistics are kept current).
    type Table: sea_orm::EntityTrait + Default;

    /// The account the rows go to.
    fn account_id(&self) -> Uuid;

    /// Validates one record.
    fn parse(&self, rec: &Record) -> Result<Self::Row, String>;

    /// Writes validated rows; returns per-row problems found against stored
    /// data (an unknown openid, say). Runs inside the chunk's transaction.
    fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, Self::Row)>,
        outcome: &mut Outcome,
    ) -> impl Future<Output = AppResult<Vec<RowError>>> + Send;
}

/// `friend_openid`, `FriendOpenid` and `friendOpenid` all name one column.
fn normalize(key: &str) -> String {
    key.trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn canonical(columns: &'static [&'static str], key: &str) -> Option<&'static str> {
    let k = normalize(key);
    columns.iter().copied().find(|c| normalize(c) == k)
}

/// Runs an import end to end.
///
/// # Errors
/// `BAD_USER_INPUT` when the input as a whole cannot be read (a CSV header
/// with an unknown or missing column); database errors.
pub async fn run<I: Importer + Sync>(
    db: &DatabaseConnection,
    importer: &I,
    format: Format,
    data: &str,
) -> AppResult<Outcome> {
    let mut outcome = Outcome::default();
    let mut stats = Statistics::new(db, I::Table::default().table_name()).await;
    let mut chunk: Vec<(usize, I::Row)> = Vec::with_capacity(CHUNK);
    let on_record = |rec: Result<Record, RowError>,
                     chunk: &mut Vec<(usize, I::Row)>,
                     outcome: &mut Outcome| match rec.and_then(|r| {
        importer
            .parse(&r)
            .map(|row| (r.line, row))
            .map_err(|message| RowError {
                line: r.line,
                message,
            })
    }) {
        Ok(row) => chunk.push(row),
        Err(e) => outcome.reject(e),
    };
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .trim(csv::Trim::Headers)
                .from_reader(data.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| {
                    AppError::bad_input("data", format!("line 1: unreadable CSV header: {e}"))
                })?
                .clone();
            let mut cols: Vec<&'static str> = Vec::with_capacity(headers.len());
            for h in headers.iter() {
                let c = canonical(I::COLUMNS, h).ok_or_else(|| {
                    AppError::bad_input(
                        "data",
                        format!(
                            "line 1: unknown column {h:?}; expected some of {}",
                            I::COLUMNS.join(", ")
                        ),
                    )
                })?;
                if cols.contains(&c) {
                    return Err(AppError::bad_input(
                        "data",
                        format!("line 1: column {h:?} appears twice"),
                    ));
                }
                cols.push(c);
            }
            if let Some(missing) = I::REQUIRED.iter().find(|r| !cols.contains(r)) {
                return Err(AppError::bad_input(
                    "data",
                    format!("line 1: missing required column {missing:?}"),
                ));
            }
            let mut record = csv::StringRecord::new();
            loop {
                let line = reader.position().line() as usize;
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map_or(line, |p| p.line() as usize);
                        let rec = if record.len() == 1
                            && record.get(0).is_some_and(|f| f.trim().is_empty())
                        {
                            continue; // a blank line
                        } else if record.len() != cols.len() {
                            Err(RowError {
                                line,
                                message: format!(
                                    "expected {} columns, found {}",
                                    cols.len(),
                                    record.len()
                                ),
                            })
                        } else {
                            Ok(Record {
                                line,
                                fields: cols
                                    .iter()
                                    .zip(record.iter())
                                    .map(|(c, v)| (*c, Value::String(v.to_owned())))
                                    .collect(),
                            })
                        };
                        on_record(rec, &mut chunk, &mut outcome);
                    }
                    Err(e) => {
                        let line = e.position().map_or(line, |p| p.line() as usize);
                        on_record(
                            Err(RowError {
                                line,
                                message: format!("malformed CSV: {e}"),
                            }),
                            &mut chunk,
                            &mut outcome,
                        );
                    }
                }
                if chunk.len() >= CHUNK {
                    flush(db, importer, &mut chunk, &mut outcome).await?;
                    stats.track(db, outcome.accepted).await;
                }
            }
        }
        Format::Jsonl => {
            for (i, raw) in data.lines().enumerate() {
                let line = i + 1;
                if raw.trim().is_empty() {
                    continue;
                }
                let rec = parse_json_line(I::COLUMNS, line, raw);
                on_record(rec, &mut chunk, &mut outcome);
                if chunk.len() >= CHUNK {
                    flush(db, importer, &mut chunk, &mut outcome).await?;
                    stats.track(db, outcome.accepted).await;
                }
            }
        }
    }
    flush(db, importer, &mut chunk, &mut outcome).await?;
    stats.track(db, outcome.accepted).await;
    outcome.rejected.sort_by_key(|e| e.line);
    Ok(outcome)
}

/// Keeps PostgreSQL's planner statistics of the table an import grows
/// current. Autovacuum analyses a table a minute or more after it changed;
/// until then the lookups of each chunk are planned for the table's old
/// size (a scan of all the account's members for 500 openids), and an
/// import into a growing table ran at a tenth of its speed
/// (docs/benchmarks.md). The table is analysed whenever the import has
/// written as many rows as the statistics knew (at least a chunk): a few
/// times per import, each a sample of at most 30,000 rows.
struct Statistics {
    /// `None` on SQLite, whose planner does not need it.
    table: Option<&'static str>,
    /// Rows the statistics counted at the last look.
    known: f64,
    /// Rows this import had written by then.
    accepted_then: usize,
}

impl Statistics {
    async fn new(db: &DatabaseConnection, table: &'static str) -> Self {
        let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
        let mut s = Statistics {
            table: pg.then_some(table),
            known: 0.0,
            accepted_then: 0,
        };
        s.known = s.reltuples(db).await;
        s
    }

    /// The table's row count as its statistics have it (0 when never analysed).
    async fn reltuples(&self, db: &DatabaseConnection) -> f64 {
        let Some(table) = self.table else {
            return 0.0;
        };
        let stmt = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)",
            [table.into()],
        );
        match db.query_one_raw(stmt).await {
            Ok(Some(row)) => row.try_get_by_index::<f64>(0).unwrap_or(0.0).max(0.0),
            _ => 0.0,
        }
    }

    /// Called after each chunk with the rows accepted so far.
    async fn track(&mut self, db: &DatabaseConnection, accepted: usize) {
        let Some(table) = self.table else {
            return;
        };
        let written = accepted.saturating_sub(self.accepted_then);
        if (written as f64) < self.known.max(CHUNK as f64) {
            return;
        }
        // A failed ANALYZE costs speed, not data: the import goes on.
        if let Err(e) = db.execute_unprepared(&format!("ANALYZE \"{table}\"")).await {
            tracing::warn!(table, error = %e, "ANALYZE during an import failed");
        }
        self.accepted_then = accepted;
        self.known = self.reltuples(db).await;
    }
}

fn parse_json_line(
    columns: &'static [&'static str],
    line: usize,
    raw: &str,
) -> Result<Record, RowError> {
    let err = |message: String| RowError { line, message };
    let obj: Map<String, Value> = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(err("expected a JSON object".into())),
        Err(e) => return Err(err(format!("malformed JSON: {e}"))),
    };
    let mut fields = BTreeMap::new();
    for (k, v) in obj {
        let c = canonical(columns, &k).ok_or_else(|| err(format!("unknown key {k:?}")))?;
        fields.insert(c, v);
    }
    Ok(Record { line, fields })
}

/// Inserts `models`, skipping those whose unique key (`key`) is stored
/// already, and returns `member`'s value of each row inserted: the members
/// whose data changed. A file imported twice touches no one the second time.
///
/// # Errors
/// Database errors.
pub(crate) async fn insert_new<A>(
    db: &impl ConnectionTrait,
    models: Vec<A>,
    key: &[<A::Entity as sea_orm::EntityTrait>::Column],
    member: <A::Entity as sea_orm::EntityTrait>::Column,
) -> AppResult<Vec<Uuid>>
where
    A: sea_orm::ActiveModelTrait,
{
    use sea_orm::QueryTrait;
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let mut once = sea_orm::sea_query::OnConflict::columns(key.iter().copied());
    once.do_nothing();
    let mut insert = sea_orm::TryInsert::many(models)
        .on_conflict(once)
        .into_query();
    insert.returning_col(member);
    let rows = db
        .query_all_raw(db.get_database_backend().build(&insert))
        .await?;
    let mut ids = rows
        .iter()
        .map(|r| r.try_get_by_index::<Uuid>(0))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Writes rows in the chunk's transaction, and the members they touched
/// for a refresh of their personas: both commit, or neither.
async fn write<I: Importer + Sync>(
    txn: &DatabaseTransaction,
    importer: &I,
    rows: Vec<(usize, I::Row)>,
    outcome: &mut Outcome,
) -> AppResult<Vec<RowError>> {
    let errors = importer.write(txn, rows, outcome).await?;
    worker::jobs::refresh::touch(txn, importer.account_id(), &outcome.touched_members).await?;
    Ok(errors)
}

async fn flush<I: Importer + Sync>(
    db: &DatabaseConnection,
    importer: &I,
    chunk: &mut Vec<(usize, I::Row)>,
    outcome: &mut Outcome,
) -> AppResult<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(chunk);
    let n = rows.len();
    let retry = rows.clone();
    let mut scratch = Outcome::default();
    let txn = worker::config::begin_write(db).await?;
    match write(&txn, importer, rows, &mut scratch).await {
        Ok(errors) => {
            txn.commit().await?;
            outcome.accepted += n - errors.len();
            for e in errors {
                outcome.reject(e);
            }
        }
        Err(e) => {
            txn.rollback().await?;
            tracing::warn!(error = %e, rows = n, "import chunk failed; retrying row by row");
            for (line, row) in retry {
                let mut scratch = Outcome::default();
                let txn = worker::config::begin_write(db).await?;
                match write(&txn, importer, vec![(line, row)], &mut scratch).await {
                    Ok(errors) => {
                        txn.commit().await?;
                        outcome.accepted += 1 - errors.len().min(1);
                        for e in errors {
                            outcome.reject(e);
                        }
                    }
                    Err(e) => {
                        txn.rollback().await?;
                        let message = match e.code() {
                            crate::error::code::CONFLICT => {
                                "conflicts with a stored record / 与已有记录冲突".into()
                            }
                            _ => "could not be stored / 写入失败".into(),
                        };
                        outcome.reject(RowError { line, message });
                    }
                }
            }
        }
    }
    Ok(())
}

/// A stable hash of a row's natural key, for tables without a natural unique column.
pub fn natural_key(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}
