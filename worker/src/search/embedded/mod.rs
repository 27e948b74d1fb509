//! The embedded backend: one tantivy index per account under
//! `LINGXI_DATA_DIR/index/v1/{account}`, searched in-process.
//!
//! Filters become tantivy queries over indexed fields (strings lowercased,
//! like Meilisearch's filters); one collector pass then counts the matches,
//! keeps the top page (activity or similarity, ties by member id) and counts
//! facet values (`collect`) from per-segment decoded columns (`columns`).
//! Persona embeddings live in a bytes fast field; similarity scans an int8
//! copy and re-scores exactly whatever the error bound leaves open, so
//! scores and members are those of an exact scan.
//!
//! Writers open per operation and retry while another holds the index lock
//! (an `api` and a `worker` process may share the folder); readers reload
//! whenever the index's `meta.json` changed, so a commit by another process
//! is visible at the next query.
use std::{
    collections::HashMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use tantivy::{
    Executor, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term,
    directory::error::LockError,
    query::{AllQuery, BooleanQuery, ExistsQuery, Occur, Query, TermQuery, TermSetQuery},
    schema::{
        BytesOptions, FAST, Field as TField, INDEXED, IndexRecordOption, STORED, STRING, Schema,
        TextFieldIndexing, TextOptions,
    },
    tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer},
};
use uuid::Uuid;

use super::{
    PersonaDoc, Rebuild, SearchBackend, SearchError,
    fields::{self, FIELDS, Field, FieldType},
    query::{CmpOp, Filter, Hit, Scalar, SearchRequest, SearchResponse, finish_facet},
};
use crate::vectors;

mod collect;
mod columns;
mod merge;
mod range;

use collect::{PageCollector, SimilarQuery};
use columns::SegmentCaches;
use range::{BitmapQuery, HasVector, NumberRange, SegmentBitmap};

/// Bumped when the schema changes: a new folder, rebuilt by `INDEX_PERSONAS`.
const SCHEMA_DIR: &str = "v1";
const LOWER: &str = "lower";
/// How long a write waits for another writer (a rebuild, another process).
const LOCK_WAIT: Duration = Duration::from_secs(30);
const SMALL_WRITER_BYTES: usize = 20_000_000;
const REBUILD_WRITER_BYTES: usize = 200_000_000;

impl From<TantivyError> for SearchError {
    fn from(e: TantivyError) -> Self {
        SearchError::Backend(e.to_string())
    }
}

fn join_err(e: tokio::task::JoinError) -> SearchError {
    SearchError::Backend(format!("index task failed: {e}"))
}

/// The schema: catalogue fields by name, plus the id, terms and vector.
struct Fields {
    id: TField,
    id_hi: TField,
    id_lo: TField,
    terms: TField,
    vec: TField,
    by_name: HashMap<&'static str, TField>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let id = b.add_text_field("id", STRING | STORED);
    let id_hi = b.add_u64_field("id_hi", FAST);
    let id_lo = b.add_u64_field("id_lo", FAST);
    let terms = b.add_text_field("terms", STRING);
    let vec = b.add_bytes_field("vec", BytesOptions::default().set_fast());
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(LOWER)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_fast("raw");
    let mut by_name = HashMap::new();
    for f in FIELDS {
        let handle = match f.ty {
            FieldType::Text | FieldType::TextList => b.add_text_field(f.name, text.clone()),
            FieldType::Number | FieldType::Time => b.add_f64_field(f.name, INDEXED | FAST),
            FieldType::Bool => b.add_bool_field(f.name, INDEXED | FAST),
        };
        by_name.insert(f.name, handle);
    }
    by_name.insert(fields::MEMBER_ID.name, id);
    (
        b.build(),
        Fields {
            id,
            id_hi,
            id_lo,
            terms,
            vec,
            by_name,
        },
    )
}

/// One account's open index.
struct AccountIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    meta: PathBuf,
    /// `meta.json`'s (mtime, length) when the reader last reloaded.
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// Decoded columns of the live segments (see `columns`).
    segments: SegmentCaches,
}

impl AccountIndex {
    fn open(dir: &Path, executor: &Executor) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SearchError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| SearchError::Backend(e.to_string()))?;
        let mut index = Index::open_or_create(mmap, schema)?;
        // Segments are searched in parallel on one pool shared by all accounts.
        index.set_executor(executor.clone());
        index.tokenizers().register(
            LOWER,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            fields,
            meta: dir.join("meta.json"),
            seen: Mutex::new(None),
            segments: SegmentCaches::default(),
        })
    }

    /// Reloads the reader when another writer committed since the last look.
    fn refresh(&self) -> Result<(), SearchError> {
        self.reload(false)
    }

    /// Reloads the reader (`always`, or when `meta.json` changed since the
    /// last reload) and forgets the caches of segments merged away. The
    /// stamp is read first, so a commit racing the reload is seen next time.
    fn reload(&self, always: bool) -> Result<(), SearchError> {
        let stamp = std::fs::metadata(&self.meta)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if always || stamp != *seen {
            self.reader.reload()?;
            self.segments.retain_live(&self.reader.searcher());
            *seen = stamp;
        }
        Ok(())
    }

    /// A writer, waiting while another holds the lock.
    fn writer(&self, bytes: usize, threads: usize) -> Result<IndexWriter, SearchError> {
        let started = Instant::now();
        loop {
            match self.index.writer_with_num_threads(threads, bytes) {
                Ok(w) => {
                    w.set_merge_policy(Box::new(merge::CappedMerges));
                    return Ok(w);
                }
                Err(TantivyError::LockFailure(LockError::LockBusy, _))
                    if started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TantivyError::LockFailure(LockError::LockBusy, _)) => {
                    return Err(SearchError::Unavailable(
                        "the persona index is being written by another job; retry later".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn commit(&self, mut w: IndexWriter) -> Result<(), SearchError> {
        // Taken before the reload forgets segments merged away.
        let wanted = self.segments.wanted();
        w.commit()?;
        w.wait_merging_threads()?;
        self.reload(true)?;
        // New segments get decoded now what queries used on the old ones.
        self.segments.warm(&self.reader.searcher(), &wanted);
        Ok(())
    }

    fn to_document(&self, d: &PersonaDoc) -> Result<TantivyDocument, SearchError> {
        let f = &self.fields;
        let id = Uuid::parse_str(&d.id)
            .map_err(|_| SearchError::Invalid(format!("document id {:?} is not a UUID", d.id)))?;
        let (hi, lo) = id.as_u64_pair();
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_u64(f.id_hi, hi);
        doc.add_u64(f.id_lo, lo);
        for t in &d.terms {
            doc.add_text(f.terms, t);
        }
        if let Some(v) = &d.embedding {
            doc.add_bytes(f.vec, &vectors::to_bytes(v));
        }
        let value = serde_json::to_value(d).map_err(|e| SearchError::Invalid(e.to_string()))?;
        for field in FIELDS {
            let handle = f.by_name[field.name];
            let Some(v) = value.get(field.name) else {
                continue;
            };
            match field.ty {
                FieldType::Text => {
                    if let Some(s) = v.as_str() {
                        doc.add_text(handle, s);
                    }
                }
                FieldType::TextList => {
                    for s in v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                    {
                        doc.add_text(handle, s);
                    }
                }
                FieldType::Number | FieldType::Time => {
                    if let Some(n) = v.as_f64() {
                        doc.add_f64(handle, n);
                    }
                }
                FieldType::Bool => {
                    if let Some(b) = v.as_bool() {
                        doc.add_bool(handle, b);
                    }
                }
            }
        }
        Ok(doc)
    }

    fn query(&self, filter: &Filter) -> Result<Box<dyn Query>, SearchError> {
        let f = &self.fields;
        Ok(match filter {
            Filter::All => Box::new(AllQuery),
            Filter::And(items) => {
                // `x AND NOT y` excludes y from x's matches; a `NOT` on its
                // own would first walk every member.
                // Ranges on one field become one range (one scan).
                let mut ranges: Vec<NumberRange> = Vec::new();
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for i in items {
                    match i {
                        Filter::Not(inner) => clauses.push((Occur::MustNot, self.query(inner)?)),
                        Filter::Compare { field, op, value } if *op != CmpOp::Eq => {
                            let at = match ranges.iter().position(|r| r.field.name == field.name) {
                                Some(at) => at,
                                None => {
                                    ranges.push(NumberRange::new(field));
                                    ranges.len() - 1
                                }
                            };
                            narrow(&mut ranges[at], *op, value)?;
                        }
                        _ => clauses.push((Occur::Must, self.query(i)?)),
                    }
                }
                clauses.extend(ranges.into_iter().map(|r| (Occur::Must, self.bitmap(r))));
                if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Filter::Or(items) => Box::new(BooleanQuery::new(
                items
                    .iter()
                    .map(|i| Ok((Occur::Should, self.query(i)?)))
                    .collect::<Result<_, SearchError>>()?,
            )),
            Filter::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, self.query(inner)?),
            ])),
            Filter::Compare {
                field,
                op: CmpOp::Eq,
                value,
            } => Box::new(TermQuery::new(
                self.term(field, value)?,
                IndexRecordOption::Basic,
            )),
            Filter::Compare { field, op, value } => {
                let mut r = NumberRange::new(field);
                narrow(&mut r, *op, value)?;
                self.bitmap(r)
            }
            Filter::In { field, values } => Box::new(TermSetQuery::new(
                values
                    .iter()
                    .map(|v| self.term(field, v))
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            Filter::Exists { field } => Box::new(ExistsQuery::new(field.name.to_owned(), false)),
            Filter::Terms(terms) => Box::new(BooleanQuery::new(
                terms
                    .iter()
                    .map(|t| {
                        let q: Box<dyn Query> = Box::new(TermQuery::new(
                            Term::from_field_text(f.terms, t),
                            IndexRecordOption::Basic,
                        ));
                        (Occur::Must, q)
                    })
                    .collect(),
            )),
        })
    }

    /// A query answered from this index's segment caches.
    fn bitmap(&self, bitmap: impl SegmentBitmap) -> Box<dyn Query> {
        Box::new(BitmapQuery {
            bitmap,
            caches: self.segments.clone(),
        })
    }

    fn term(&self, field: &Field, value: &Scalar) -> Result<Term, SearchError> {
        let handle = self.fields.by_name[field.name];
        match (field.ty, value) {
            (FieldType::Text | FieldType::TextList, Scalar::Str(s)) => {
                Ok(Term::from_field_text(handle, &s.to_lowercase()))
            }
            (FieldType::Number | FieldType::Time, Scalar::Num(n)) => {
                Ok(Term::from_field_f64(handle, *n))
            }
            (FieldType::Bool, Scalar::Bool(b)) => Ok(Term::from_field_bool(handle, *b)),
            _ => Err(SearchError::Invalid(format!(
                "{value:?} does not fit field {}",
                field.name
            ))),
        }
    }

    fn search(&self, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
        self.refresh()?;
        let searcher = self.reader.searcher();
        let keep = req.offset + req.limit;
        let fruit = if req.filter == Filter::All && req.similar.is_none() {
            collect::all_members(&searcher, &self.segments, keep, &req.facets)?
        } else {
            let mut query = self.query(&req.filter)?;
            if req.similar.is_some() {
                let has = self.bitmap(HasVector);
                query = if req.filter == Filter::All {
                    has
                } else {
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Must, query),
                        (Occur::Must, has),
                    ]))
                };
            }
            let collector = PageCollector {
                keep,
                similar: req.similar.as_ref().map(|s| {
                    Arc::new(SimilarQuery {
                        quantized: vectors::Quantized::new(&s.vector),
                        exact: s.vector.clone(),
                        min: s.min_score,
                    })
                }),
                caches: self.segments.clone(),
                facets: req.facets.clone(),
            };
            searcher.search(&*query, &collector)?
        };
        let hits = fruit
            .top
            .into_sorted_vec()
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .map(|e| Hit {
                member_id: Uuid::from_u128(e.id),
                score: req.similar.is_some().then_some(e.key as f32),
            })
            .collect();
        let facets = req
            .facets
            .iter()
            .zip(fruit.facets)
            .map(|(f, counts)| finish_facet(f.name, counts.into_iter().collect()))
            .collect();
        Ok(SearchResponse {
            total: fruit.count,
            hits,
            facets,
        })
    }
}

/// Narrows `r` by `field op value` (a number or a time).
fn narrow(r: &mut NumberRange, op: CmpOp, value: &Scalar) -> Result<(), SearchError> {
    let (FieldType::Number | FieldType::Time, Scalar::Num(n)) = (r.field.ty, value) else {
        return Err(SearchError::Invalid(format!(
            "{value:?} cannot bound field {}",
            r.field.name
        )));
    };
    match op {
        CmpOp::Gt => r.at_least(Bound::Excluded(*n)),
        CmpOp::Gte => r.at_least(Bound::Included(*n)),
        CmpOp::Lt => r.at_most(Bound::Excluded(*n)),
        CmpOp::Lte => r.at_most(Bound::Included(*n)),
        CmpOp::Eq => {
            r.at_least(Bound::Included(*n));
            r.at_most(Bound::Included(*n));
        }
    }
    Ok(())
}

/// How long an account's index stays open (with its decoded columns and
/// vectors, ≈ 0.85 GB per million personas) after its last use.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);
/// Idle indexes are looked for at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// An open account index and when it was last asked for.
struct Opened {
    index: Arc<AccountIndex>,
    used: Instant,
}

/// The open indexes, and when idle ones were last looked for.
struct OpenIndexes {
    by_account: HashMap<Uuid, Opened>,
    swept: Instant,
}

/// The embedded backend: a folder of per-account indexes. Indexes open on
/// first use and close again after [`DEFAULT_IDLE`] without one, so the
/// memory of accounts nobody queries is given back; the next query reopens
/// them from disk.
pub struct EmbeddedSearch {
    root: PathBuf,
    open: Mutex<OpenIndexes>,
    idle: Duration,
    /// One search pool for every account's index (one per index would
    /// multiply threads by the number of accounts).
    executor: Executor,
}

impl EmbeddedSearch {
    /// Opens (creating) the index folder.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let root = root.join(SCHEMA_DIR);
        std::fs::create_dir_all(&root)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Ok(Self {
            root,
            open: Mutex::new(OpenIndexes {
                by_account: HashMap::new(),
                swept: Instant::now(),
            }),
            idle: DEFAULT_IDLE,
            executor: Executor::multi_thread(threads, "lingxi-search-")?,
        })
    }

    /// Closes account indexes after `idle` without use (default
    /// [`DEFAULT_IDLE`]).
    #[must_use]
    pub fn with_idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// How many account indexes are open now.
    pub fn open_accounts(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_account
            .len()
    }

    /// Drops indexes unused for `idle` that nothing else holds (a rebuild
    /// or a search in flight keeps its index open).
    fn sweep(&self, open: &mut OpenIndexes) {
        if open.swept.elapsed() < self.idle.min(SWEEP_EVERY) {
            return;
        }
        open.swept = Instant::now();
        let map = &mut open.by_account;
        let before = map.len();
        map.retain(|_, o| o.used.elapsed() < self.idle || Arc::strong_count(&o.index) > 1);
        if map.len() < before {
            tracing::info!(
                closed = before - map.len(),
                open = map.len(),
                "idle segment indexes closed"
            );
        }
    }

    fn dir(&self, account: Uuid) -> PathBuf {
        self.root.join(account.simple().to_string())
    }

    /// The account's index; `None` when it was never written and `create` is false.
    fn index(&self, account: Uuid, create: bool) -> Result<Option<Arc<AccountIndex>>, SearchError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&mut open);
        if let Some(o) = open.by_account.get_mut(&account) {
            o.used = Instant::now();
            return Ok(Some(o.index.clone()));
        }
        let dir = self.dir(account);
        if !create && !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let i = Arc::new(AccountIndex::open(&dir, &self.executor)?);
        open.by_account.insert(
            account,
            Opened {
                index: i.clone(),
                used: Instant::now(),
            },
        );
        Ok(Some(i))
    }
}

struct EmbeddedRebuild {
    index: Arc<AccountIndex>,
    writer: Option<IndexWriter>,
    added: u64,
}

#[async_trait]
impl Rebuild for EmbeddedRebuild {
    async fn add(&mut self, docs: Vec<PersonaDoc>) -> Result<(), SearchError> {
        let index = self.index.clone();
        let writer = self
            .writer
            .take()
            .ok_or_else(|| SearchError::Backend("rebuild already failed".into()))?;
        let n = docs.len() as u64;
        let writer = tokio::task::spawn_blocking(move || -> Result<IndexWriter, SearchError> {
            for d in &docs {
                writer.add_document(index.to_document(d)?)?;
            }
            Ok(writer)
        })
        .await
        .map_err(join_err)??;
        self.writer = Some(writer);
        self.added += n;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, SearchError> {
        let index = self.index.clone();
        let writer = self
            .writer
            .take()
            .ok_or_else(|| SearchError::Backend("rebuild already failed".into()))?;
        tokio::task::spawn_blocking(move || index.commit(writer))
            .await
            .map_err(join_err)??;
        Ok(self.added)
    }
}

#[async_trait]
impl SearchBackend for EmbeddedSearch {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn upsert(&self, account: Uuid, docs: Vec<PersonaDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        let Some(index) = self.index(account, true)? else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let prepared = docs
                .iter()
                .map(|d| Ok((d.id.clone(), index.to_document(d)?)))
                .collect::<Result<Vec<_>, SearchError>>()?;
            let w = index.writer(SMALL_WRITER_BYTES, 1)?;
            for (id, doc) in prepared {
                w.delete_term(Term::from_field_text(index.fields.id, &id));
                w.add_document(doc)?;
            }
            index.commit(w)
        })
        .await
        .map_err(join_err)?
    }

    async fn delete(&self, account: Uuid, member_ids: &[Uuid]) -> Result<(), SearchError> {
        let Some(index) = self.index(account, false)? else {
            return Ok(());
        };
        let ids: Vec<String> = member_ids.iter().map(Uuid::to_string).collect();
        tokio::task::spawn_blocking(move || {
            let w = index.writer(SMALL_WRITER_BYTES, 1)?;
            for id in &ids {
                w.delete_term(Term::from_field_text(index.fields.id, id));
            }
            index.commit(w)
        })
        .await
        .map_err(join_err)?
    }

    async fn rebuild(&self, account: Uuid) -> Result<Box<dyn Rebuild>, SearchError> {
        let index = self
            .index(account, true)?
            .ok_or_else(|| SearchError::Backend("index folder missing".into()))?;
        let i = index.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<IndexWriter, SearchError> {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            let w = i.writer(REBUILD_WRITER_BYTES, threads)?;
            // Deletes only take effect at commit: readers keep the old index until then.
            w.delete_all_documents()?;
            Ok(w)
        })
        .await
        .map_err(join_err)??;
        Ok(Box::new(EmbeddedRebuild {
            index,
            writer: Some(writer),
            added: 0,
        }))
    }

    async fn search(
        &self,
        account: Uuid,
        req: &SearchRequest,
    ) -> Result<SearchResponse, SearchError> {
        let Some(index) = self.index(account, false)? else {
            return Ok(SearchResponse::empty(req));
        };
        let req = req.clone();
        tokio::task::spawn_blocking(move || index.search(&req))
            .await
            .map_err(join_err)?
    }

    async fn count(&self, account: Uuid) -> Result<u64, SearchError> {
        let Some(index) = self.index(account, false)? else {
            return Ok(0);
        };
        tokio::task::spawn_blocking(move || {
            index.refresh()?;
            Ok(index.reader.searcher().num_docs())
        })
        .await
        .map_err(join_err)?
    }
}
