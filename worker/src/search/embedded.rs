//! The embedded backend: one tantivy index per account under
//! `LINGXI_DATA_DIR/index/v1/{account}`, searched in-process.
//!
//! Filters become tantivy queries over indexed fields (strings lowercased,
//! like Meilisearch's filters); one collector pass then counts the matches,
//! keeps the top page (activity or similarity, ties by member id) and counts
//! facet values from the fast fields. Persona embeddings live in a bytes
//! fast field and similarity is an exact scan over the filtered members.
//!
//! Writers open per operation and retry while another holds the index lock
//! (an `api` and a `worker` process may share the folder); readers reload
//! whenever the index's `meta.json` changed, so a commit by another process
//! is visible at the next query.
use std::{
    collections::{BinaryHeap, HashMap},
    ops::Bound,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use tantivy::{
    DocId, Executor, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader,
    TantivyDocument, TantivyError, Term,
    collector::{Collector, SegmentCollector},
    columnar::{Column, StrColumn},
    directory::error::LockError,
    index::SegmentId,
    query::{
        AllQuery, BooleanQuery, ExistsQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery,
    },
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

/// Decoded persona embeddings of one segment, by doc id. Similarity scans
/// read them from memory: decoding tantivy's dictionary-encoded bytes per
/// document dominated a scan. Costs 4 bytes × dimensions per embedding.
struct SegmentVectors {
    dim: usize,
    /// Row in `data` per doc id; `u32::MAX` when the doc has no embedding.
    slot: Vec<u32>,
    data: Vec<f32>,
}

impl SegmentVectors {
    fn build(seg: &SegmentReader) -> tantivy::Result<Self> {
        let mut out = SegmentVectors {
            dim: 0,
            slot: vec![u32::MAX; seg.max_doc() as usize],
            data: Vec::new(),
        };
        let Some(col) = seg.fast_fields().bytes("vec")? else {
            return Ok(out);
        };
        let mut buf = Vec::new();
        let mut rows = 0u32;
        for doc in 0..seg.max_doc() {
            let Some(ord) = col.term_ords(doc).next() else {
                continue;
            };
            buf.clear();
            if !col.ord_to_bytes(ord, &mut buf)? {
                continue;
            }
            let dim = buf.len() / 4;
            if out.dim == 0 {
                out.dim = dim;
            }
            if dim != out.dim || dim == 0 {
                continue;
            }
            out.data.extend(
                buf.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            out.slot[doc as usize] = rows;
            rows += 1;
        }
        Ok(out)
    }

    fn get(&self, doc: DocId) -> Option<&[f32]> {
        let row = *self.slot.get(doc as usize)?;
        (row != u32::MAX)
            .then(|| &self.data[row as usize * self.dim..(row as usize + 1) * self.dim])
    }
}

/// One account's open index.
struct AccountIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    meta: PathBuf,
    /// `meta.json`'s (mtime, length) when the reader last reloaded.
    seen: Mutex<Option<(SystemTime, u64)>>,
    /// Embeddings of the live segments, built by the first similarity query.
    vectors: Mutex<HashMap<SegmentId, Arc<SegmentVectors>>>,
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
            vectors: Mutex::new(HashMap::new()),
        })
    }

    /// Reloads the reader when another writer committed since the last look.
    fn refresh(&self) -> Result<(), SearchError> {
        let stamp = std::fs::metadata(&self.meta)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if stamp != *seen {
            self.reader.reload()?;
            *seen = stamp;
        }
        Ok(())
    }

    /// A writer, waiting while another holds the lock.
    fn writer(&self, bytes: usize, threads: usize) -> Result<IndexWriter, SearchError> {
        let started = Instant::now();
        loop {
            match self.index.writer_with_num_threads(threads, bytes) {
                Ok(w) => return Ok(w),
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
        w.commit()?;
        w.wait_merging_threads()?;
        self.reader.reload()?;
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
            Filter::And(items) => Box::new(BooleanQuery::new(
                items
                    .iter()
                    .map(|i| Ok((Occur::Must, self.query(i)?)))
                    .collect::<Result<_, SearchError>>()?,
            )),
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
            Filter::Compare { field, op, value } => {
                let term = self.term(field, value)?;
                match op {
                    CmpOp::Eq => Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                    CmpOp::Gt => Box::new(RangeQuery::new(Bound::Excluded(term), Bound::Unbounded)),
                    CmpOp::Gte => {
                        Box::new(RangeQuery::new(Bound::Included(term), Bound::Unbounded))
                    }
                    CmpOp::Lt => Box::new(RangeQuery::new(Bound::Unbounded, Bound::Excluded(term))),
                    CmpOp::Lte => {
                        Box::new(RangeQuery::new(Bound::Unbounded, Bound::Included(term)))
                    }
                }
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

    /// The decoded embeddings of every live segment (building missing ones,
    /// forgetting those of merged-away segments).
    fn segment_vectors(
        &self,
        searcher: &tantivy::Searcher,
    ) -> Result<HashMap<SegmentId, Arc<SegmentVectors>>, SearchError> {
        let mut cache = self.vectors.lock().unwrap_or_else(|p| p.into_inner());
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        cache.retain(|id, _| live.contains(id));
        for seg in searcher.segment_readers() {
            if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(seg.segment_id()) {
                slot.insert(Arc::new(SegmentVectors::build(seg)?));
            }
        }
        Ok(cache.clone())
    }

    fn search(&self, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
        self.refresh()?;
        let query = self.query(&req.filter)?;
        let searcher = self.reader.searcher();
        let vectors = if req.similar.is_some() {
            self.segment_vectors(&searcher)?
        } else {
            HashMap::new()
        };
        let collector = PageCollector {
            keep: req.offset + req.limit,
            similar: req
                .similar
                .as_ref()
                .map(|s| (Arc::new(s.vector.clone()), s.min_score)),
            vectors,
            facets: req.facets.clone(),
        };
        let fruit = searcher.search(&*query, &collector)?;
        let hits = fruit
            .top
            .into_sorted_vec()
            .into_iter()
            .skip(req.offset)
            .take(req.limit)
            .map(|e| Hit {
                member_id: Uuid::from_u128(e.id),
                score: collector.similar.is_some().then_some(e.key as f32),
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

/// A ranked candidate: higher key first, then lower member id. `Ord` puts
/// the worse entry last-in-order-first-out, so a max-heap's top is the worst.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: f64,
    id: u128,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.key.total_cmp(&self.key).then(self.id.cmp(&o.id))
    }
}

fn push_bounded(heap: &mut BinaryHeap<Entry>, keep: usize, e: Entry) {
    if keep == 0 {
        return;
    }
    if heap.len() < keep {
        heap.push(e);
    } else if heap.peek().is_some_and(|worst| e < *worst) {
        heap.pop();
        heap.push(e);
    }
}

struct PageCollector {
    keep: usize,
    similar: Option<(Arc<Vec<f32>>, f32)>,
    vectors: HashMap<SegmentId, Arc<SegmentVectors>>,
    facets: Vec<&'static Field>,
}

#[derive(Default)]
struct PageFruit {
    count: u64,
    top: BinaryHeap<Entry>,
    facets: Vec<HashMap<String, u64>>,
}

enum FacetReader {
    Str(StrColumn, Vec<u64>),
    Num(Column<f64>, HashMap<u64, u64>),
    Bool(Column<bool>, [u64; 2]),
    Missing,
}

struct PageSegment {
    keep: usize,
    similar: Option<(Arc<Vec<f32>>, f32)>,
    vec: Option<Arc<SegmentVectors>>,
    activity: Column<f64>,
    id_hi: Column<u64>,
    id_lo: Column<u64>,
    count: u64,
    top: BinaryHeap<Entry>,
    facets: Vec<FacetReader>,
}

impl Collector for PageCollector {
    type Fruit = PageFruit;
    type Child = PageSegment;

    fn for_segment(&self, _ord: u32, seg: &SegmentReader) -> tantivy::Result<PageSegment> {
        let ff = seg.fast_fields();
        let facets = self
            .facets
            .iter()
            .map(|f| -> tantivy::Result<FacetReader> {
                Ok(match f.ty {
                    FieldType::Text | FieldType::TextList => match ff.str(f.name)? {
                        Some(c) => {
                            let n = c.num_terms();
                            FacetReader::Str(c, vec![0; n])
                        }
                        None => FacetReader::Missing,
                    },
                    FieldType::Number | FieldType::Time => {
                        FacetReader::Num(ff.f64(f.name)?, HashMap::new())
                    }
                    FieldType::Bool => FacetReader::Bool(ff.bool(f.name)?, [0; 2]),
                })
            })
            .collect::<tantivy::Result<_>>()?;
        Ok(PageSegment {
            keep: self.keep,
            similar: self.similar.clone(),
            vec: self.vectors.get(&seg.segment_id()).cloned(),
            activity: ff.f64("activity")?,
            id_hi: ff.u64("id_hi")?,
            id_lo: ff.u64("id_lo")?,
            count: 0,
            top: BinaryHeap::new(),
            facets,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<PageFruit>) -> tantivy::Result<PageFruit> {
        let mut out = PageFruit {
            facets: vec![HashMap::new(); self.facets.len()],
            ..Default::default()
        };
        for f in fruits {
            out.count += f.count;
            for e in f.top {
                push_bounded(&mut out.top, self.keep, e);
            }
            for (acc, counts) in out.facets.iter_mut().zip(f.facets) {
                for (v, c) in counts {
                    *acc.entry(v).or_default() += c;
                }
            }
        }
        Ok(out)
    }
}

impl PageSegment {
    fn similarity(&self, doc: DocId) -> Option<f64> {
        let (query, min) = self.similar.as_ref()?;
        let v = self.vec.as_ref()?.get(doc)?;
        if v.len() != query.len() {
            return None;
        }
        let s = vectors::dot(query, v);
        (s >= *min).then_some(f64::from(s))
    }
}

impl SegmentCollector for PageSegment {
    type Fruit = PageFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let key = if self.similar.is_some() {
            match self.similarity(doc) {
                Some(s) => s,
                None => return,
            }
        } else {
            self.activity.first(doc).unwrap_or(0.0)
        };
        self.count += 1;
        // Most hits cannot enter a full page: skip reading their id.
        let full = self.keep > 0 && self.top.len() >= self.keep;
        let contender =
            self.keep > 0 && (!full || self.top.peek().is_some_and(|worst| key >= worst.key));
        if contender {
            let id = (u128::from(self.id_hi.first(doc).unwrap_or(0)) << 64)
                | u128::from(self.id_lo.first(doc).unwrap_or(0));
            push_bounded(&mut self.top, self.keep, Entry { key, id });
        }
        for f in &mut self.facets {
            match f {
                FacetReader::Str(col, counts) => {
                    for ord in col.term_ords(doc) {
                        counts[ord as usize] += 1;
                    }
                }
                FacetReader::Num(col, counts) => {
                    if let Some(v) = col.first(doc) {
                        *counts.entry(v.to_bits()).or_default() += 1;
                    }
                }
                FacetReader::Bool(col, counts) => {
                    if let Some(v) = col.first(doc) {
                        counts[usize::from(v)] += 1;
                    }
                }
                FacetReader::Missing => {}
            }
        }
    }

    fn harvest(self) -> PageFruit {
        let facets = self
            .facets
            .into_iter()
            .map(|f| match f {
                FacetReader::Str(col, counts) => {
                    let mut out = HashMap::new();
                    let mut s = String::new();
                    for (ord, c) in counts.into_iter().enumerate() {
                        if c > 0 && col.ord_to_str(ord as u64, &mut s).unwrap_or(false) {
                            out.insert(s.clone(), c);
                        }
                    }
                    out
                }
                FacetReader::Num(_, counts) => counts
                    .into_iter()
                    .map(|(bits, c)| (fields::format_number(f64::from_bits(bits)), c))
                    .collect(),
                FacetReader::Bool(_, [f, t]) => {
                    HashMap::from([("false".to_owned(), f), ("true".to_owned(), t)])
                }
                FacetReader::Missing => HashMap::new(),
            })
            .collect();
        PageFruit {
            count: self.count,
            top: self.top,
            facets,
        }
    }
}

/// The embedded backend: a folder of per-account indexes.
pub struct EmbeddedSearch {
    root: PathBuf,
    open: Mutex<HashMap<Uuid, Arc<AccountIndex>>>,
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
            open: Mutex::new(HashMap::new()),
            executor: Executor::multi_thread(threads, "lingxi-search-")?,
        })
    }

    fn dir(&self, account: Uuid) -> PathBuf {
        self.root.join(account.simple().to_string())
    }

    /// The account's index; `None` when it was never written and `create` is false.
    fn index(&self, account: Uuid, create: bool) -> Result<Option<Arc<AccountIndex>>, SearchError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = open.get(&account) {
            return Ok(Some(i.clone()));
        }
        let dir = self.dir(account);
        if !create && !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let i = Arc::new(AccountIndex::open(&dir, &self.executor)?);
        open.insert(account, i.clone());
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
