//! The Meilisearch backend: one index per account, `{prefix}_personas_{account}`
//! (the account id in simple form), primary key `id`.
//!
//! # How requests map onto Meilisearch
//!
//! - Filters become Meilisearch filter strings ([`to_filter`]); string
//!   equality there ignores case (values are NFKD-normalised, trimmed and
//!   lowercased on both sides), like the embedded backend's lowercasing.
//! - Without similarity, one `POST /multi-search` carries two queries: the
//!   page (`offset`/`limit`, `sort: activity:desc, id:asc`, only `id`
//!   retrieved) and a count (`page: 1, hitsPerPage: 0`, the facets), whose
//!   `totalHits` and `facetDistribution` are exhaustive. Page-based totals are
//!   capped by the index's `pagination.maxTotalHits`, which we set to
//!   [`MAX_TOTAL_HITS`] so they stay exact; the cost is only that Meilisearch
//!   may walk that many documents for deep `offset`s, which `MAX_WINDOW`
//!   already forbids.
//! - With similarity, a semantic search (`hybrid.semanticRatio = 1`,
//!   `vector`) returns up to `MAX_WINDOW` members with their stored vectors;
//!   the exact cosine is recomputed here and ordering, threshold, total and
//!   facets are derived from it (see [`MeiliSearch::search`]).
//!
//! # `_rankingScore` of a semantic hit
//!
//! Meilisearch's vector sort (`crates/milli/src/search/new/vector_sort.rs`)
//! scores a hit `1 - distance` (shifted only when the embedder declares a
//! `distribution`, which ours does not), and the global `_rankingScore` of a
//! semantic-only search is that similarity (`ScoreDetails::global_score` in
//! `crates/milli/src/score_details.rs`). Both vector stores measure the
//! cosine distance as `(1 - cos) / 2` (arroy's and hannoy's `Cosine`
//! distance, `normalized_distance` being the identity), so
//! `_rankingScore = (1 + cos) / 2` ([`ranking_score_for_cosine`]). The
//! `rankingScoreThreshold` sent is that of `min_score` minus
//! [`SCORE_MARGIN`]; the exact cosine decides. If a server ever scores
//! differently, a warning is logged once.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use meilisearch_sdk::{
    client::{Client, SwapIndexes},
    errors::{Error as MeiliError, MeilisearchError},
    search::{SearchQuery, SearchResults, Selectors},
    settings::{
        Embedder, EmbedderSource, FacetSortValue, FacetingSettings, FilterableAttribute,
        PaginationSetting, Settings,
    },
    task_info::TaskInfo,
    tasks::Task,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    PersonaDoc, Rebuild, SearchBackend, SearchError,
    fields::{self, Field, FieldType},
    query::{
        CmpOp, FacetCounts, Filter, Hit, MAX_WINDOW, Scalar, SearchRequest, SearchResponse,
        Similar, finish_facet,
    },
};
use crate::vectors;

/// The embedder holding persona embeddings (`source: userProvided`).
pub const EMBEDDER: &str = "persona";
/// Persona embedding length; a document with another length is refused.
pub const DIMENSIONS: usize = 384;
/// The primary key; also the member id field of filters.
const PRIMARY_KEY: &str = "id";
/// The search-terms attribute (membership of keyword search).
const TERMS: &str = "terms";
/// Facet values Meilisearch returns per field, most frequent first; at
/// least what [`finish_facet`] keeps, with room to spare for ties.
const MAX_VALUES_PER_FACET: usize = 1000;
const _: () = assert!(MAX_VALUES_PER_FACET >= fields::MAX_FACET_VALUES);
/// `pagination.maxTotalHits`: page-based `totalHits` are exact up to this.
pub const MAX_TOTAL_HITS: usize = 100_000_000;
/// `searchCutoffMs`: past it Meilisearch returns a degraded (unsorted)
/// answer, so it is set far above the default 1.5 s.
const SEARCH_CUTOFF_MS: u64 = 10_000;
const SORT: &[&str] = &["activity:desc", "id:asc"];
const ID_ONLY: &[&str] = &[PRIMARY_KEY];
/// A filter no document matches (every document has its primary key).
const NEVER: &str = "id NOT EXISTS";
/// Safety margin below the ranking score of `min_score` (score units;
/// covers f32 rounding in the vector store's own cosine).
pub const SCORE_MARGIN: f64 = 1e-3;
/// Difference between `_rankingScore` and `(1 + cos) / 2` above which the
/// score mapping is reported as broken.
const MAPPING_TOLERANCE: f64 = 1e-2;
/// Settings, index creation and deletion tasks.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Document writes (they may queue behind another index's batch).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Rebuild batches and the swap.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// One HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Documents per `add_or_replace` call.
const UPSERT_CHUNK: usize = 1000;

// ---------------------------------------------------------------------------
// Filters

/// A filter tree in Meilisearch's syntax; `None` matches everything.
///
/// `And` → `(a) AND (b)` (nested `And`s flattened), `Or` → `(a) OR (b)`,
/// `Not` → `NOT (a)`, comparisons → `field = value` / `>` / `>=` / `<` /
/// `<=`, `In` → `field IN [v1, v2]`, `Exists` → `field EXISTS`, `Terms` →
/// `terms = "t1" AND terms = "t2"`. Strings are double-quoted with `\` and
/// `"` escaped; numbers print as plain decimals; booleans as `true`/`false`.
/// Conditions that can never hold (an empty `In`, `Or([])`, a NaN) become a
/// filter no document matches.
pub fn to_filter(filter: &Filter) -> Option<String> {
    match expr(filter) {
        Expr::True => None,
        Expr::False => Some(NEVER.to_owned()),
        Expr::Cond(s) => Some(s),
    }
}

/// A filter after constant folding.
#[derive(Debug, PartialEq)]
enum Expr {
    True,
    False,
    Cond(String),
}

fn flatten<'a>(items: &'a [Filter], and: bool, out: &mut Vec<&'a Filter>) {
    for item in items {
        match item {
            Filter::And(inner) if and => flatten(inner, and, out),
            Filter::Or(inner) if !and => flatten(inner, and, out),
            other => out.push(other),
        }
    }
}

/// `AND`/`OR` of sub-expressions: `True` is neutral in an `AND` and
/// absorbing in an `OR`, `False` the other way round.
fn junction(items: &[Filter], and: bool) -> Expr {
    let mut leaves = Vec::new();
    flatten(items, and, &mut leaves);
    let mut parts = Vec::new();
    for leaf in leaves {
        match (expr(leaf), and) {
            (Expr::True, true) | (Expr::False, false) => {}
            (Expr::False, true) => return Expr::False,
            (Expr::True, false) => return Expr::True,
            (Expr::Cond(s), _) => parts.push(s),
        }
    }
    match parts.len() {
        0 if and => Expr::True,
        0 => Expr::False,
        1 => Expr::Cond(parts.remove(0)),
        _ => Expr::Cond(
            parts
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(if and { " AND " } else { " OR " }),
        ),
    }
}

fn expr(filter: &Filter) -> Expr {
    match filter {
        Filter::All => Expr::True,
        Filter::And(items) => junction(items, true),
        Filter::Or(items) => junction(items, false),
        Filter::Not(inner) => match expr(inner) {
            Expr::True => Expr::False,
            Expr::False => Expr::True,
            Expr::Cond(s) => Expr::Cond(format!("NOT ({s})")),
        },
        Filter::Compare { field, op, value } => match value_token(value) {
            Some(v) => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::Gt => ">",
                    CmpOp::Gte => ">=",
                    CmpOp::Lt => "<",
                    CmpOp::Lte => "<=",
                };
                Expr::Cond(format!("{} {op} {v}", field.name))
            }
            None => Expr::False,
        },
        Filter::In { field, values } => {
            let tokens: Vec<String> = values.iter().filter_map(value_token).collect();
            if tokens.is_empty() {
                Expr::False
            } else {
                Expr::Cond(format!("{} IN [{}]", field.name, tokens.join(", ")))
            }
        }
        Filter::Exists { field } => Expr::Cond(format!("{} EXISTS", field.name)),
        Filter::Terms(terms) if terms.is_empty() => Expr::True,
        Filter::Terms(terms) => Expr::Cond(
            terms
                .iter()
                .map(|t| format!("{TERMS} = {}", quote(t)))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// A filter value; `None` for NaN, which equals and orders with nothing.
fn value_token(value: &Scalar) -> Option<String> {
    match value {
        Scalar::Str(s) => Some(quote(s)),
        Scalar::Bool(b) => Some(b.to_string()),
        Scalar::Num(n) => number_token(*n),
    }
}

/// A plain decimal that parses back to the same f64 (Rust's `Display` for
/// f64 never uses an exponent). Infinities become ±`f64::MAX`, which
/// Meilisearch accepts and which orders the same way against any stored
/// (finite) value.
fn number_token(n: f64) -> Option<String> {
    if n.is_nan() {
        return None;
    }
    let n = n.clamp(f64::MIN, f64::MAX);
    Some(fields::format_number(n))
}

/// A double-quoted filter string. Meilisearch's filter parser first turns
/// `\"` into `"`, then unescapes backslash sequences, so doubling every
/// backslash and escaping every quote gives back the exact string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Scores and facets

/// `_rankingScore` Meilisearch gives a semantic hit of cosine `cos` with
/// the query (see the module documentation for the derivation).
pub fn ranking_score_for_cosine(cos: f64) -> f64 {
    (1.0 + cos) / 2.0
}

/// `rankingScoreThreshold` for a minimum cosine; `None` when every score passes.
fn ranking_threshold(min_score: f32) -> Option<f64> {
    let t = ranking_score_for_cosine(f64::from(min_score)) - SCORE_MARGIN;
    (t > 0.0).then(|| t.min(1.0))
}

/// A facet value as [`fields::format_number`] writes it: Meilisearch prints
/// number facets with f64 `Display`, which could differ (`25.0` vs `25`).
fn normalize_facet_value(field: &Field, raw: &str) -> String {
    match field.ty {
        FieldType::Number | FieldType::Time => raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map_or_else(|| raw.to_owned(), fields::format_number),
        FieldType::Text | FieldType::TextList | FieldType::Bool => raw.to_owned(),
    }
}

/// A field's counts from Meilisearch's `facetDistribution`.
fn facet_from_distribution(
    field: &'static Field,
    dist: Option<&HashMap<String, usize>>,
) -> FacetCounts {
    let mut merged: HashMap<String, u64> = HashMap::new();
    for (value, count) in dist.into_iter().flatten() {
        *merged
            .entry(normalize_facet_value(field, value))
            .or_default() += *count as u64;
    }
    finish_facet(field.name, merged.into_iter().collect())
}

/// A stored scalar as a facet value.
fn scalar_facet(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_f64().map(fields::format_number),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A field's counts over retrieved documents (each document counts once per value).
fn facet_from_documents<'a>(
    field: &'static Field,
    docs: impl IntoIterator<Item = &'a Map<String, Value>>,
) -> FacetCounts {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for doc in docs {
        let values: HashSet<String> = match doc.get(field.name) {
            Some(Value::Array(items)) => items.iter().filter_map(scalar_facet).collect(),
            Some(v) => scalar_facet(v).into_iter().collect(),
            None => HashSet::new(),
        };
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
    }
    finish_facet(field.name, counts.into_iter().collect())
}

/// The persona embedding in a hit's `_vectors` (`retrieveVectors: true`):
/// `{"persona": {"embeddings": [[..]], "regenerate": false}}`, or a bare
/// vector / list of vectors.
fn hit_embedding(doc: &Map<String, Value>) -> Option<Vec<f32>> {
    let entry = doc.get("_vectors")?.get(EMBEDDER)?;
    let embeddings = entry.get("embeddings").unwrap_or(entry).as_array()?;
    let vector = match embeddings.first()? {
        Value::Array(first) => first,
        Value::Number(_) => embeddings,
        _ => return None,
    };
    vector
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect()
}

// ---------------------------------------------------------------------------
// Documents and settings

/// A document as sent: the persona fields plus `_vectors.persona` (null
/// opts the document out of the user-provided embedder).
#[derive(Serialize)]
struct MeiliDoc<'a> {
    #[serde(flatten)]
    doc: &'a PersonaDoc,
    #[serde(rename = "_vectors")]
    vectors: DocVectors<'a>,
}

/// `_vectors`; the field name is [`EMBEDDER`].
#[derive(Serialize)]
struct DocVectors<'a> {
    persona: Option<&'a [f32]>,
}

fn payload(docs: &[PersonaDoc]) -> Result<Vec<MeiliDoc<'_>>, SearchError> {
    docs.iter()
        .map(|doc| {
            if let Some(v) = &doc.embedding {
                if v.len() != DIMENSIONS {
                    return Err(SearchError::Invalid(format!(
                        "a persona embedding has {} dimensions; the Meilisearch embedder `{EMBEDDER}` expects {DIMENSIONS}",
                        v.len()
                    )));
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(SearchError::Invalid(
                        "a persona embedding holds a non-finite value".into(),
                    ));
                }
            }
            Ok(MeiliDoc {
                doc,
                vectors: DocVectors {
                    persona: doc.embedding.as_deref(),
                },
            })
        })
        .collect()
}

fn filterable_attributes() -> Vec<String> {
    fields::FIELDS
        .iter()
        .map(|f| f.name)
        .chain([PRIMARY_KEY, TERMS])
        .map(str::to_owned)
        .collect()
}

/// The settings of every persona index.
fn desired_settings() -> Settings {
    Settings {
        filterable_attributes: Some(
            filterable_attributes()
                .into_iter()
                .map(FilterableAttribute::Attribute)
                .collect(),
        ),
        sortable_attributes: Some(vec!["activity".into(), PRIMARY_KEY.into()]),
        searchable_attributes: Some(vec![TERMS.into()]),
        faceting: Some(FacetingSettings {
            max_values_per_facet: MAX_VALUES_PER_FACET,
            sort_facet_values_by: Some(BTreeMap::from([("*".into(), FacetSortValue::Count)])),
        }),
        pagination: Some(PaginationSetting {
            max_total_hits: MAX_TOTAL_HITS,
        }),
        embedders: Some(HashMap::from([(
            EMBEDDER.to_owned(),
            Embedder {
                source: EmbedderSource::UserProvided,
                dimensions: Some(DIMENSIONS),
                ..Embedder::default()
            },
        )])),
        search_cutoff_ms: Some(SEARCH_CUTOFF_MS),
        ..Settings::default()
    }
}

/// Whether an index's current settings already are [`desired_settings`].
fn settings_match(s: &Settings) -> bool {
    let filterable: Option<HashSet<&str>> = s.filterable_attributes.as_ref().and_then(|attrs| {
        attrs
            .iter()
            .map(|a| match a {
                FilterableAttribute::Attribute(name) => Some(name.as_str()),
                FilterableAttribute::Settings(_) => None,
            })
            .collect()
    });
    let wanted = filterable_attributes();
    let filterable_ok =
        filterable.is_some_and(|have| have == wanted.iter().map(String::as_str).collect());
    let sortable_ok = s.sortable_attributes.as_ref().is_some_and(|v| {
        v.iter().map(String::as_str).collect::<HashSet<_>>() == HashSet::from(["activity", "id"])
    });
    let searchable_ok = s
        .searchable_attributes
        .as_ref()
        .is_some_and(|v| v.len() == 1 && v[0] == TERMS);
    let faceting_ok = s.faceting.as_ref().is_some_and(|f| {
        f.max_values_per_facet >= MAX_VALUES_PER_FACET
            && f.sort_facet_values_by
                .as_ref()
                .and_then(|by| by.get("*"))
                .is_some_and(|v| *v == FacetSortValue::Count)
    });
    let pagination_ok = s
        .pagination
        .is_some_and(|p| p.max_total_hits >= MAX_TOTAL_HITS);
    let embedder_ok = s
        .embedders
        .as_ref()
        .and_then(|e| e.get(EMBEDDER))
        .is_some_and(|e| {
            e.source == EmbedderSource::UserProvided
                && e.dimensions == Some(DIMENSIONS)
                && e.distribution.is_none()
                && e.binary_quantized != Some(true)
        });
    let cutoff_ok = s.search_cutoff_ms == Some(SEARCH_CUTOFF_MS);
    filterable_ok
        && sortable_ok
        && searchable_ok
        && faceting_ok
        && pagination_ok
        && embedder_ok
        && cutoff_ok
}

// ---------------------------------------------------------------------------
// Errors

/// A Meilisearch error code (`index_not_found`, …). The SDK knows only some
/// codes; the documentation link always ends with the code.
fn error_code(e: &MeilisearchError) -> String {
    e.error_link
        .rsplit_once('#')
        .map(|(_, code)| code)
        .filter(|code| !code.is_empty())
        .map_or_else(|| e.error_code.to_string(), str::to_owned)
}

fn describe(e: &MeilisearchError) -> String {
    format!("{} (code {})", e.error_message, error_code(e))
}

fn is_code(e: &MeiliError, code: &str) -> bool {
    matches!(e, MeiliError::Meilisearch(me) if error_code(me) == code)
}

fn is_not_found(e: &MeiliError) -> bool {
    is_code(e, "index_not_found")
}

/// A failed task.
fn task_error(e: &MeilisearchError) -> SearchError {
    SearchError::Backend(describe(e))
}

fn to_search_error(e: MeiliError) -> SearchError {
    match e {
        MeiliError::Meilisearch(me) => {
            let code = error_code(&me);
            if code == "too_many_search_requests" {
                SearchError::Unavailable(describe(&me))
            } else if code.starts_with("invalid_search_") {
                SearchError::Invalid(describe(&me))
            } else {
                SearchError::Backend(describe(&me))
            }
        }
        MeiliError::MeilisearchCommunication(c)
            if c.status_code >= 500 || matches!(c.status_code, 408 | 429) =>
        {
            SearchError::Unavailable(format!("Meilisearch answered HTTP {}", c.status_code))
        }
        MeiliError::MeilisearchCommunication(c) => {
            SearchError::Backend(format!("Meilisearch answered HTTP {}", c.status_code))
        }
        MeiliError::HttpError(e) => SearchError::Unavailable(format!("Meilisearch: {e}")),
        MeiliError::Timeout => {
            SearchError::Unavailable("Meilisearch did not answer, or finish a task, in time".into())
        }
        other => SearchError::Backend(format!("Meilisearch: {other}")),
    }
}

/// Bounds a request in time (the SDK's HTTP client has no timeout).
async fn call<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, MeiliError>>,
) -> Result<T, MeiliError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(MeiliError::Timeout))
}

// ---------------------------------------------------------------------------
// The backend

struct Inner {
    client: Client,
    prefix: String,
    /// Index uids whose settings were checked (and applied) by this process.
    ready: Mutex<HashSet<String>>,
    mapping_warned: AtomicBool,
}

/// Persona search on a Meilisearch server (`LINGXI_MEILI_URL`).
pub struct MeiliSearch {
    inner: Arc<Inner>,
}

impl MeiliSearch {
    /// A client for the server at `url`; index uids start with `prefix`.
    /// The server need not be up yet (a warning is logged when it is not).
    ///
    /// # Errors
    /// A URL that is not http(s), or a prefix Meilisearch would refuse in an
    /// index uid.
    pub async fn new(url: &str, key: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let url = url.trim().trim_end_matches('/');
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "LINGXI_MEILI_URL must start with http:// or https://"
        );
        anyhow::ensure!(
            !prefix.is_empty()
                && prefix.len() <= 100
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "LINGXI_MEILI_INDEX_PREFIX must be 1 to 100 characters among a-z, A-Z, 0-9, _ and -"
        );
        let key = key.map(str::trim).filter(|k| !k.is_empty());
        let client = Client::new(url, key)?;
        match call(Duration::from_secs(5), client.get_version()).await {
            Ok(v) => tracing::info!(version = %v.pkg_version, "connected to Meilisearch"),
            Err(e) => tracing::warn!(
                error = %to_search_error(e),
                "Meilisearch is not reachable yet; persona search fails until it is"
            ),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.to_owned(),
                ready: Mutex::new(HashSet::new()),
                mapping_warned: AtomicBool::new(false),
            }),
        })
    }

    /// Deletes an account's index (and any unfinished rebuild of it).
    ///
    /// # Errors
    /// Meilisearch unavailable or the deletion failed.
    pub async fn drop_account(&self, account: Uuid) -> Result<(), SearchError> {
        let uid = self.inner.uid(account);
        self.inner.delete_index(&format!("{uid}_next")).await?;
        self.inner.delete_index(&uid).await
    }
}

impl Inner {
    fn uid(&self, account: Uuid) -> String {
        format!("{}_personas_{}", self.prefix, account.simple())
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a task: `Ok(Err(e))` when the task itself failed with `e`.
    async fn wait(
        &self,
        task: TaskInfo,
        limit: Duration,
    ) -> Result<Result<(), MeilisearchError>, MeiliError> {
        let interval = if limit > Duration::from_secs(60) {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(50)
        };
        let fut = self.client.wait_for_task(task, Some(interval), Some(limit));
        match call(limit + REQUEST_TIMEOUT, fut).await? {
            Task::Succeeded { .. } => Ok(Ok(())),
            Task::Failed { content } => Ok(Err(content.error)),
            other => Err(MeiliError::Other(
                format!("task {} is still pending", other.get_uid()).into(),
            )),
        }
    }

    /// Waits for a task that must succeed.
    async fn wait_ok(&self, task: TaskInfo, limit: Duration) -> Result<(), SearchError> {
        self.wait(task, limit)
            .await
            .map_err(to_search_error)?
            .map_err(|e| task_error(&e))
    }

    /// Makes sure the index has our settings, checking once per process.
    /// Creates the index when `create`; otherwise `Ok(false)` means it does
    /// not exist.
    async fn ensure(&self, uid: &str, create: bool) -> Result<bool, SearchError> {
        if self.ready().contains(uid) {
            return Ok(true);
        }
        let index = self.client.index(uid);
        let current = match call(REQUEST_TIMEOUT, index.get_settings()).await {
            Ok(s) => Some(s),
            Err(e) if is_not_found(&e) => {
                if !create {
                    return Ok(false);
                }
                self.create_if_missing(uid).await?;
                tracing::info!(index = uid, "created Meilisearch index");
                None
            }
            // Settings this SDK cannot read: write ours over them.
            Err(MeiliError::ParseError(_)) => None,
            Err(e) => return Err(to_search_error(e)),
        };
        if !current.as_ref().is_some_and(settings_match) {
            let task = call(REQUEST_TIMEOUT, index.set_settings(&desired_settings()))
                .await
                .map_err(to_search_error)?;
            self.wait_ok(task, TASK_TIMEOUT).await?;
            tracing::info!(index = uid, "applied persona index settings");
        }
        self.ready().insert(uid.to_owned());
        Ok(true)
    }

    /// Adds or replaces documents, waiting for each batch.
    async fn add(
        &self,
        uid: &str,
        docs: &[PersonaDoc],
        limit: Duration,
    ) -> Result<(), SearchError> {
        let docs = payload(docs)?;
        let index = self.client.index(uid);
        for chunk in docs.chunks(UPSERT_CHUNK) {
            let task = call(
                REQUEST_TIMEOUT,
                index.add_or_replace(chunk, Some(PRIMARY_KEY)),
            )
            .await
            .map_err(to_search_error)?;
            self.wait_ok(task, limit).await?;
        }
        Ok(())
    }

    /// Deletes an index; a missing one is fine.
    async fn delete_index(&self, uid: &str) -> Result<(), SearchError> {
        self.ready().remove(uid);
        let task = match call(REQUEST_TIMEOUT, self.client.delete_index(uid)).await {
            Ok(task) => task,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(to_search_error(e)),
        };
        match self
            .wait(task, TASK_TIMEOUT)
            .await
            .map_err(to_search_error)?
        {
            Ok(()) => Ok(()),
            Err(e) if error_code(&e) == "index_not_found" => Ok(()),
            Err(e) => Err(task_error(&e)),
        }
    }

    /// Creates an index unless it exists (without settings).
    async fn create_if_missing(&self, uid: &str) -> Result<(), SearchError> {
        let task = call(
            REQUEST_TIMEOUT,
            self.client.create_index(uid, Some(PRIMARY_KEY)),
        )
        .await
        .map_err(to_search_error)?;
        match self
            .wait(task, TASK_TIMEOUT)
            .await
            .map_err(to_search_error)?
        {
            Ok(()) => Ok(()),
            Err(e) if error_code(&e) == "index_already_exists" => Ok(()),
            Err(e) => Err(task_error(&e)),
        }
    }

    /// A search error; one about attributes or the embedder may mean the
    /// index lost its settings, so they are checked again next time.
    fn search_error(&self, uid: &str, e: MeiliError) -> SearchError {
        if matches!(&e, MeiliError::Meilisearch(me) if error_code(me).starts_with("invalid_search_"))
        {
            self.ready().remove(uid);
        }
        to_search_error(e)
    }

    async fn count(&self, uid: &str) -> Result<u64, SearchError> {
        let index = self.client.index(uid);
        match call(REQUEST_TIMEOUT, index.get_stats()).await {
            Ok(stats) => Ok(stats.number_of_documents as u64),
            Err(e) if is_not_found(&e) => Ok(0),
            // Stats this SDK cannot read (another server version): count by search.
            Err(MeiliError::ParseError(_)) => {
                let mut q = SearchQuery::new(&index);
                q.with_page(1).with_hits_per_page(0);
                match call(REQUEST_TIMEOUT, q.execute::<Map<String, Value>>()).await {
                    Ok(r) => Ok(r.total_hits.unwrap_or(0) as u64),
                    Err(e) if is_not_found(&e) => Ok(0),
                    Err(e) => Err(to_search_error(e)),
                }
            }
            Err(e) => Err(to_search_error(e)),
        }
    }

    /// A search without similarity: the page and the exhaustive count and
    /// facets in one multi-search.
    async fn search_plain(
        &self,
        uid: &str,
        filter: Option<&str>,
        req: &SearchRequest,
    ) -> Result<Option<SearchResponse>, SearchError> {
        #[derive(Deserialize)]
        struct IdDoc {
            id: String,
        }

        let index = self.client.index(uid);
        let facet_names: Vec<&str> = req.facets.iter().map(|f| f.name).collect();
        let mut page = SearchQuery::new(&index);
        page.with_offset(req.offset)
            .with_limit(req.limit)
            .with_sort(SORT)
            .with_attributes_to_retrieve(Selectors::Some(ID_ONLY));
        let mut count = SearchQuery::new(&index);
        count.with_page(1).with_hits_per_page(0);
        if !facet_names.is_empty() {
            count.with_facets(Selectors::Some(facet_names.as_slice()));
        }
        if let Some(f) = filter {
            page.with_filter(f);
            count.with_filter(f);
        }
        let mut multi = self.client.multi_search();
        multi.with_search_query(page).with_search_query(count);
        let response = match call(REQUEST_TIMEOUT, multi.execute::<IdDoc>()).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => {
                self.ready().remove(uid);
                return Ok(None);
            }
            Err(e) => return Err(self.search_error(uid, e)),
        };
        let mut results = response.results.into_iter();
        let (Some(page), Some(count)) = (results.next(), results.next()) else {
            return Err(SearchError::Backend(
                "Meilisearch answered a multi-search with fewer results than queries".into(),
            ));
        };
        let hits = page
            .hits
            .iter()
            .filter_map(|h| Uuid::parse_str(&h.result.id).ok())
            .map(|member_id| Hit {
                member_id,
                score: None,
            })
            .collect();
        let total = count.total_hits.or(count.estimated_total_hits).unwrap_or(0) as u64;
        let facets = req
            .facets
            .iter()
            .map(|&f| {
                facet_from_distribution(
                    f,
                    count
                        .facet_distribution
                        .as_ref()
                        .and_then(|d| d.get(f.name)),
                )
            })
            .collect();
        Ok(Some(SearchResponse {
            total,
            hits,
            facets,
        }))
    }

    /// A similarity search: Meilisearch's semantic search narrows the
    /// filtered members to the likely ones (with their vectors), the exact
    /// cosine decides.
    async fn search_similar(
        &self,
        uid: &str,
        filter: Option<&str>,
        similar: &Similar,
        req: &SearchRequest,
    ) -> Result<Option<SearchResponse>, SearchError> {
        if similar.vector.len() != DIMENSIONS {
            return Err(SearchError::Invalid(format!(
                "the similarity vector has {} dimensions; the Meilisearch embedder `{EMBEDDER}` expects {DIMENSIONS}",
                similar.vector.len()
            )));
        }
        let index = self.client.index(uid);
        let mut attributes = vec![PRIMARY_KEY];
        for f in &req.facets {
            if !attributes.contains(&f.name) {
                attributes.push(f.name);
            }
        }
        let mut q = SearchQuery::new(&index);
        q.with_hybrid(EMBEDDER, 1.0)
            .with_vector(&similar.vector)
            .with_show_ranking_score(true)
            .with_retrieve_vectors(true)
            .with_offset(0)
            .with_limit(MAX_WINDOW)
            .with_attributes_to_retrieve(Selectors::Some(attributes.as_slice()));
        if let Some(t) = ranking_threshold(similar.min_score) {
            q.with_ranking_score_threshold(t);
        }
        if let Some(f) = filter {
            q.with_filter(f);
        }
        let results: SearchResults<Map<String, Value>> =
            match call(REQUEST_TIMEOUT, q.execute()).await {
                Ok(r) => r,
                Err(e) if is_not_found(&e) => {
                    self.ready().remove(uid);
                    return Ok(None);
                }
                Err(e) => return Err(self.search_error(uid, e)),
            };
        let returned = results.hits.len();
        let mut kept: Vec<(f32, Uuid, &Map<String, Value>)> = Vec::new();
        for hit in &results.hits {
            let doc = &hit.result;
            let Some(id) = doc
                .get(PRIMARY_KEY)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            let Some(v) = hit_embedding(doc).filter(|v| v.len() == similar.vector.len()) else {
                continue;
            };
            let score = vectors::dot(&similar.vector, &v);
            if let Some(ranking) = hit.ranking_score {
                let expected = ranking_score_for_cosine(f64::from(score));
                if (ranking - expected).abs() > MAPPING_TOLERANCE
                    && !self.mapping_warned.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        ranking_score = ranking,
                        expected,
                        "Meilisearch's semantic _rankingScore is not (1 + cosine) / 2; \
                         the similarity threshold may drop matching members"
                    );
                }
            }
            if score >= similar.min_score {
                kept.push((score, id, doc));
            }
        }
        if returned >= MAX_WINDOW {
            tracing::warn!(
                window = MAX_WINDOW,
                "similarity search filled its window; total and facets cover only the closest members"
            );
        }
        kept.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let facets = req
            .facets
            .iter()
            .map(|&f| facet_from_documents(f, kept.iter().map(|k| k.2)))
            .collect();
        let hits = kept
            .iter()
            .skip(req.offset)
            .take(req.limit)
            .map(|&(score, member_id, _)| Hit {
                member_id,
                score: Some(score),
            })
            .collect();
        tracing::debug!(returned, kept = kept.len(), "similarity search");
        Ok(Some(SearchResponse {
            total: kept.len() as u64,
            hits,
            facets,
        }))
    }
}

#[async_trait]
impl SearchBackend for MeiliSearch {
    fn name(&self) -> &'static str {
        "meilisearch"
    }

    async fn upsert(&self, account: Uuid, docs: Vec<PersonaDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        // Refuse bad vectors before creating anything.
        payload(&docs)?;
        let uid = self.inner.uid(account);
        self.inner.ensure(&uid, true).await?;
        self.inner.add(&uid, &docs, WRITE_TIMEOUT).await?;
        tracing::debug!(%account, docs = docs.len(), "upserted personas into Meilisearch");
        Ok(())
    }

    async fn delete(&self, account: Uuid, member_ids: &[Uuid]) -> Result<(), SearchError> {
        if member_ids.is_empty() {
            return Ok(());
        }
        let uid = self.inner.uid(account);
        let ids: Vec<String> = member_ids.iter().map(Uuid::to_string).collect();
        // Also from a rebuild in progress (`…_next`), or the swap at its end
        // would bring the erased members back.
        for target in [uid.clone(), format!("{uid}_next")] {
            let index = self.inner.client.index(&target);
            let task = match call(REQUEST_TIMEOUT, index.delete_documents(&ids)).await {
                Ok(task) => task,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(to_search_error(e)),
            };
            match self
                .inner
                .wait(task, WRITE_TIMEOUT)
                .await
                .map_err(to_search_error)?
            {
                Ok(()) => {}
                Err(e) if error_code(&e) == "index_not_found" => {}
                Err(e) => return Err(task_error(&e)),
            }
        }
        tracing::debug!(%account, members = ids.len(), "deleted personas from Meilisearch");
        Ok(())
    }

    async fn rebuild(&self, account: Uuid) -> Result<Box<dyn Rebuild>, SearchError> {
        let uid = self.inner.uid(account);
        let next = format!("{uid}_next");
        self.inner.delete_index(&next).await?;
        self.inner.ensure(&next, true).await?;
        tracing::info!(%account, "started a Meilisearch persona index rebuild");
        Ok(Box::new(MeiliRebuild {
            inner: self.inner.clone(),
            uid,
            next,
        }))
    }

    /// Without similarity, totals and facets are exact (Meilisearch's
    /// page-based `totalHits` and `facetDistribution`).
    ///
    /// With similarity, Meilisearch's approximate (ANN) vector search
    /// proposes at most `MAX_WINDOW` filtered members scoring above the
    /// threshold; their exact cosine is recomputed here, so order and scores
    /// are exact, but the total and facets are exact only while the
    /// matching set fits in `MAX_WINDOW`, and the ANN may miss members an
    /// exact scan (the embedded backend) would find.
    async fn search(
        &self,
        account: Uuid,
        req: &SearchRequest,
    ) -> Result<SearchResponse, SearchError> {
        if req.offset.saturating_add(req.limit) > MAX_WINDOW {
            return Err(SearchError::Invalid(format!(
                "offset + limit may not exceed {MAX_WINDOW}"
            )));
        }
        let uid = self.inner.uid(account);
        if !self.inner.ensure(&uid, false).await? {
            return Ok(SearchResponse::empty(req));
        }
        let filter = to_filter(&req.filter);
        let answer = match &req.similar {
            None => {
                self.inner
                    .search_plain(&uid, filter.as_deref(), req)
                    .await?
            }
            Some(similar) => {
                self.inner
                    .search_similar(&uid, filter.as_deref(), similar, req)
                    .await?
            }
        };
        Ok(answer.unwrap_or_else(|| SearchResponse::empty(req)))
    }

    async fn count(&self, account: Uuid) -> Result<u64, SearchError> {
        self.inner.count(&self.inner.uid(account)).await
    }
}

/// A rebuild into `{uid}_next`, swapped with `{uid}` at commit.
struct MeiliRebuild {
    inner: Arc<Inner>,
    uid: String,
    next: String,
}

#[async_trait]
impl Rebuild for MeiliRebuild {
    async fn add(&mut self, docs: Vec<PersonaDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        self.inner.add(&self.next, &docs, REBUILD_TIMEOUT).await
    }

    async fn commit(self: Box<Self>) -> Result<u64, SearchError> {
        let inner = &self.inner;
        inner.create_if_missing(&self.uid).await?;
        let swap = SwapIndexes {
            indexes: (self.uid.clone(), self.next.clone()),
            rename: None,
        };
        let task = call(REQUEST_TIMEOUT, inner.client.swap_indexes([&swap]))
            .await
            .map_err(to_search_error)?;
        inner.wait_ok(task, REBUILD_TIMEOUT).await?;
        // `uid` now holds the new documents and `next`'s settings.
        inner.ready().insert(self.uid.clone());
        if let Err(e) = inner.delete_index(&self.next).await {
            tracing::warn!(error = %e, "could not delete the replaced persona index");
        }
        let count = inner.count(&self.uid).await?;
        tracing::info!(
            documents = count,
            "swapped in the rebuilt Meilisearch persona index"
        );
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> &'static Field {
        fields::field(name).unwrap()
    }

    fn eq(name: &str, value: Scalar) -> Filter {
        Filter::Compare {
            field: field(name),
            op: CmpOp::Eq,
            value,
        }
    }

    fn s(v: &str) -> Scalar {
        Scalar::Str(v.into())
    }

    /// What Meilisearch's filter parser makes of a double-quoted value
    /// (`quoted_by` then `unescaper::unescape`, for the escapes we emit).
    fn unquote(quoted: &str) -> String {
        let inner = &quoted[1..quoted.len() - 1];
        let step1 = inner.replace("\\\"", "\"");
        let mut out = String::new();
        let mut chars = step1.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.push(chars.next().expect("dangling backslash"));
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn all_is_no_filter() {
        assert_eq!(to_filter(&Filter::All), None);
        assert_eq!(to_filter(&Filter::And(vec![])), None);
        assert_eq!(
            to_filter(&Filter::And(vec![Filter::All, Filter::All])),
            None
        );
        assert_eq!(to_filter(&Filter::Terms(vec![])), None);
    }

    #[test]
    fn impossible_filters_match_nothing() {
        assert_eq!(to_filter(&Filter::Or(vec![])).as_deref(), Some(NEVER));
        assert_eq!(
            to_filter(&Filter::Not(Box::new(Filter::All))).as_deref(),
            Some(NEVER)
        );
        let empty_in = Filter::In {
            field: field("city"),
            values: vec![],
        };
        assert_eq!(to_filter(&empty_in).as_deref(), Some(NEVER));
        assert_eq!(
            to_filter(&eq("age", Scalar::Num(f64::NAN))).as_deref(),
            Some(NEVER)
        );
        // An impossible branch disappears from an OR, a certain one wins.
        let or = Filter::Or(vec![empty_in.clone(), eq("city", s("北京"))]);
        assert_eq!(to_filter(&or).as_deref(), Some("city = \"北京\""));
        let or = Filter::Or(vec![Filter::All, eq("city", s("北京"))]);
        assert_eq!(to_filter(&or), None);
        let and = Filter::And(vec![empty_in, eq("city", s("北京"))]);
        assert_eq!(to_filter(&and).as_deref(), Some(NEVER));
    }

    #[test]
    fn comparisons_and_nesting() {
        let f = Filter::And(vec![
            eq("city", s("北京")),
            Filter::Or(vec![
                Filter::Compare {
                    field: field("age"),
                    op: CmpOp::Gte,
                    value: Scalar::Num(18.0),
                },
                Filter::Not(Box::new(eq("subscribed", Scalar::Bool(true)))),
            ]),
            Filter::Exists {
                field: field("tags"),
            },
        ]);
        assert_eq!(
            to_filter(&f).unwrap(),
            "(city = \"北京\") AND ((age >= 18) OR (NOT (subscribed = true))) AND (tags EXISTS)"
        );
        let ops = [
            (CmpOp::Gt, ">"),
            (CmpOp::Gte, ">="),
            (CmpOp::Lt, "<"),
            (CmpOp::Lte, "<="),
            (CmpOp::Eq, "="),
        ];
        for (op, text) in ops {
            let f = Filter::Compare {
                field: field("activity"),
                op,
                value: Scalar::Num(0.5),
            };
            assert_eq!(to_filter(&f).unwrap(), format!("activity {text} 0.5"));
        }
    }

    #[test]
    fn nested_junctions_flatten() {
        let f = Filter::And(vec![
            eq("city", s("a")),
            Filter::And(vec![eq("city", s("b")), Filter::All, eq("city", s("c"))]),
        ]);
        assert_eq!(
            to_filter(&f).unwrap(),
            "(city = \"a\") AND (city = \"b\") AND (city = \"c\")"
        );
        let f = Filter::Or(vec![
            Filter::Or(vec![eq("city", s("a")), eq("city", s("b"))]),
            Filter::And(vec![eq("city", s("c")), eq("gender", s("f"))]),
        ]);
        assert_eq!(
            to_filter(&f).unwrap(),
            "(city = \"a\") OR (city = \"b\") OR ((city = \"c\") AND (gender = \"f\"))"
        );
        // A single operand needs no parentheses.
        let f = Filter::And(vec![Filter::All, eq("city", s("a"))]);
        assert_eq!(to_filter(&f).unwrap(), "city = \"a\"");
        let f = Filter::Not(Box::new(Filter::Not(Box::new(eq("city", s("a"))))));
        assert_eq!(to_filter(&f).unwrap(), "NOT (NOT (city = \"a\"))");
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        let f = eq("city", s(r#"a "quoted" \ back\slash\"#));
        assert_eq!(
            to_filter(&f).unwrap(),
            r#"city = "a \"quoted\" \\ back\\slash\\""#
        );
        for raw in [
            "",
            "plain",
            "AND",
            "a\"b",
            "a\\b",
            "\\\"",
            "\\\\\"",
            "ends with \\",
            "\"",
            "x\\\"y\\\\\"z",
            "换行\n和\t制表",
            "' single '",
        ] {
            assert_eq!(unquote(&quote(raw)), raw, "{raw:?}");
        }
    }

    #[test]
    fn in_lists_mix_values() {
        let f = Filter::In {
            field: field("city"),
            values: vec![
                s("北京"),
                s("上\"海"),
                Scalar::Num(3.0),
                Scalar::Bool(false),
            ],
        };
        assert_eq!(
            to_filter(&f).unwrap(),
            r#"city IN ["北京", "上\"海", 3, false]"#
        );
        let f = Filter::In {
            field: field("age"),
            values: vec![Scalar::Num(f64::NAN), Scalar::Num(20.0)],
        };
        assert_eq!(to_filter(&f).unwrap(), "age IN [20]");
    }

    #[test]
    fn numbers_are_plain_decimals() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (25.0, "25"),
            (-3.0, "-3"),
            (0.5, "0.5"),
            (-0.125, "-0.125"),
            (1.7e9, "1700000000"),
            (1_735_689_600.0, "1735689600"),
            (1e20, "100000000000000000000"),
            (1e-7, "0.0000001"),
        ];
        for (n, text) in cases {
            let token = number_token(n).unwrap();
            assert_eq!(token, text);
            assert!(!token.contains('e'));
            assert_eq!(token.parse::<f64>().unwrap(), n);
        }
        let max = number_token(f64::INFINITY).unwrap();
        assert_eq!(max.parse::<f64>().unwrap(), f64::MAX);
        let min = number_token(f64::NEG_INFINITY).unwrap();
        assert_eq!(min.parse::<f64>().unwrap(), f64::MIN);
        assert_eq!(number_token(f64::NAN), None);
        let f = Filter::Compare {
            field: field("lastActiveAt"),
            op: CmpOp::Gt,
            value: Scalar::Num(1_700_000_000.0),
        };
        assert_eq!(to_filter(&f).unwrap(), "lastActiveAt > 1700000000");
    }

    #[test]
    fn booleans_and_exists() {
        assert_eq!(
            to_filter(&eq("consent", Scalar::Bool(false))).unwrap(),
            "consent = false"
        );
        let f = Filter::Not(Box::new(Filter::Exists {
            field: field("city"),
        }));
        assert_eq!(to_filter(&f).unwrap(), "NOT (city EXISTS)");
    }

    #[test]
    fn terms_all_required() {
        let f = Filter::Terms(vec!["护肤".into(), "双十一".into()]);
        assert_eq!(
            to_filter(&f).unwrap(),
            r#"terms = "护肤" AND terms = "双十一""#
        );
        let f = Filter::And(vec![
            Filter::Terms(vec!["a\"".into(), "b".into()]),
            eq("city", s("x")),
        ]);
        assert_eq!(
            to_filter(&f).unwrap(),
            r#"(terms = "a\"" AND terms = "b") AND (city = "x")"#
        );
        assert_eq!(
            to_filter(&Filter::Terms(vec!["one".into()])).unwrap(),
            r#"terms = "one""#
        );
    }

    #[test]
    fn member_ids_filter_on_the_primary_key() {
        assert_eq!(fields::MEMBER_ID.name, PRIMARY_KEY);
        let id = Uuid::from_u128(7);
        let f = Filter::Not(Box::new(Filter::In {
            field: &fields::MEMBER_ID,
            values: vec![Scalar::Str(id.to_string())],
        }));
        assert_eq!(to_filter(&f).unwrap(), format!("NOT (id IN [\"{id}\"])"));
    }

    #[test]
    fn facet_numbers_are_normalized() {
        let age = field("age");
        assert_eq!(normalize_facet_value(age, "25.0"), "25");
        assert_eq!(normalize_facet_value(age, "25"), "25");
        assert_eq!(normalize_facet_value(age, "0.5"), "0.5");
        assert_eq!(normalize_facet_value(age, "-3.0"), "-3");
        assert_eq!(normalize_facet_value(age, "1e3"), "1000");
        assert_eq!(normalize_facet_value(age, "oops"), "oops");
        assert_eq!(
            normalize_facet_value(field("lastActiveAt"), "1700000000.0"),
            "1700000000"
        );
        // Strings and booleans stay as they are.
        assert_eq!(normalize_facet_value(field("city"), "25.0"), "25.0");
        assert_eq!(normalize_facet_value(field("subscribed"), "true"), "true");

        let dist = HashMap::from([
            ("25.0".to_owned(), 2),
            ("25".to_owned(), 1),
            ("30".to_owned(), 3),
            ("41.5".to_owned(), 3),
        ]);
        let f = facet_from_distribution(age, Some(&dist));
        assert_eq!(f.field, "age");
        assert_eq!(
            f.values,
            vec![("25".into(), 3), ("30".into(), 3), ("41.5".into(), 3)]
        );
        assert!(facet_from_distribution(age, None).values.is_empty());
    }

    #[test]
    fn facets_from_documents_count_each_document_once() {
        let docs: Vec<Map<String, Value>> = [
            serde_json::json!({"id": "a", "tags": ["vip", "new", "vip"], "age": 25, "subscribed": true}),
            serde_json::json!({"id": "b", "tags": ["vip"], "age": 25.0, "subscribed": false}),
            serde_json::json!({"id": "c", "age": 31.5}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let tags = facet_from_documents(field("tags"), &docs);
        assert_eq!(tags.values, vec![("vip".into(), 2), ("new".into(), 1)]);
        let age = facet_from_documents(field("age"), &docs);
        assert_eq!(age.values, vec![("25".into(), 2), ("31.5".into(), 1)]);
        let sub = facet_from_documents(field("subscribed"), &docs);
        assert_eq!(sub.values, vec![("false".into(), 1), ("true".into(), 1)]);
    }

    #[test]
    fn ranking_score_mapping() {
        assert!((ranking_score_for_cosine(1.0) - 1.0).abs() < 1e-12);
        assert!((ranking_score_for_cosine(0.0) - 0.5).abs() < 1e-12);
        assert!(ranking_score_for_cosine(-1.0).abs() < 1e-12);
        let t = ranking_threshold(0.8).unwrap();
        assert!((t - (0.9 - SCORE_MARGIN)).abs() < 1e-6);
        assert!(t < ranking_score_for_cosine(0.8));
        assert_eq!(ranking_threshold(-1.0), None);
        assert_eq!(ranking_threshold(f32::NAN), None);
        assert_eq!(ranking_threshold(1.5), Some(1.0));
    }

    #[test]
    fn embeddings_read_from_hits() {
        let doc = |v: Value| v.as_object().unwrap().clone();
        let full = doc(serde_json::json!({
            "id": "x",
            "_vectors": {"persona": {"embeddings": [[0.5, -0.25]], "regenerate": false}}
        }));
        assert_eq!(hit_embedding(&full), Some(vec![0.5, -0.25]));
        let flat = doc(serde_json::json!({"_vectors": {"persona": {"embeddings": [1.0, 0.0]}}}));
        assert_eq!(hit_embedding(&flat), Some(vec![1.0, 0.0]));
        let bare = doc(serde_json::json!({"_vectors": {"persona": [0.25]}}));
        assert_eq!(hit_embedding(&bare), Some(vec![0.25]));
        let none = doc(
            serde_json::json!({"_vectors": {"persona": {"embeddings": [], "regenerate": false}}}),
        );
        assert_eq!(hit_embedding(&none), None);
        assert_eq!(hit_embedding(&doc(serde_json::json!({"id": "x"}))), None);
    }

    fn persona(id: Uuid) -> PersonaDoc {
        PersonaDoc {
            id: id.to_string(),
            openid: format!("o-{}", id.simple()),
            city: None,
            province: None,
            gender: "unknown".into(),
            age: None,
            tags: vec![],
            interests: vec![],
            keywords: vec![],
            sentiment: None,
            sentiment_label: None,
            activity: 0.0,
            reach: 0,
            degree: 0,
            influence: 0.0,
            subscribed: true,
            consent: true,
            last_active_at: None,
            subscribed_at: None,
            terms: vec![],
            embedding: None,
        }
    }

    #[test]
    fn documents_carry_vectors_or_null() {
        let mut with = persona(Uuid::from_u128(1));
        with.embedding = Some(vec![0.1; DIMENSIONS]);
        let without = persona(Uuid::from_u128(2));
        let docs = vec![with, without];
        let json = serde_json::to_value(payload(&docs).unwrap()).unwrap();
        let v = &json[0]["_vectors"][EMBEDDER];
        assert_eq!(v.as_array().unwrap().len(), DIMENSIONS);
        assert_eq!(v[0].as_f64().unwrap() as f32, 0.1f32);
        assert!(json[1]["_vectors"][EMBEDDER].is_null());
        assert_eq!(json[1]["id"], docs[1].id);
        assert_eq!(json[1]["subscribed"], true);
        // Absent values stay absent.
        assert!(json[1].get("city").is_none());

        let mut bad = persona(Uuid::from_u128(3));
        bad.embedding = Some(vec![1.0; 12]);
        assert!(matches!(payload(&[bad]), Err(SearchError::Invalid(_))));
        let mut nan = persona(Uuid::from_u128(4));
        let mut v = vec![0.0; DIMENSIONS];
        v[3] = f32::NAN;
        nan.embedding = Some(v);
        assert!(matches!(payload(&[nan]), Err(SearchError::Invalid(_))));
    }

    #[test]
    fn settings_round_trip_and_compare() {
        let wanted = desired_settings();
        let json = serde_json::to_value(&wanted).unwrap();
        assert_eq!(json["embedders"][EMBEDDER]["source"], "userProvided");
        assert_eq!(json["embedders"][EMBEDDER]["dimensions"], DIMENSIONS);
        assert_eq!(json["faceting"]["sortFacetValuesBy"]["*"], "count");
        assert_eq!(json["pagination"]["maxTotalHits"], MAX_TOTAL_HITS);
        assert_eq!(json["searchableAttributes"], serde_json::json!(["terms"]));
        let filterable = json["filterableAttributes"].as_array().unwrap();
        for name in fields::FIELDS.iter().map(|f| f.name).chain(["id", "terms"]) {
            assert!(filterable.contains(&Value::from(name)), "{name}");
        }
        let back: Settings = serde_json::from_value(json).unwrap();
        assert!(settings_match(&back));

        let mut other = back.clone();
        other.pagination = Some(PaginationSetting {
            max_total_hits: 1000,
        });
        assert!(!settings_match(&other));
        let mut other = back.clone();
        other.filterable_attributes = Some(vec![FilterableAttribute::Attribute("city".into())]);
        assert!(!settings_match(&other));
        let mut other = back;
        other.embedders = None;
        assert!(!settings_match(&other));
        assert!(!settings_match(&Settings::default()));
    }

    #[test]
    fn error_codes_come_from_the_link() {
        let e: MeilisearchError = serde_json::from_value(serde_json::json!({
            "message": "Index `x` not found.",
            "code": "index_not_found",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#index_not_found"
        }))
        .unwrap();
        assert_eq!(error_code(&e), "index_not_found");
        assert!(is_not_found(&MeiliError::Meilisearch(e)));
        let e: MeilisearchError = serde_json::from_value(serde_json::json!({
            "message": "Invalid vector dimensions",
            "code": "invalid_search_vector",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#invalid_search_vector"
        }))
        .unwrap();
        assert_eq!(error_code(&e), "invalid_search_vector");
        assert!(matches!(
            to_search_error(MeiliError::Meilisearch(e)),
            SearchError::Invalid(m) if m.contains("invalid_search_vector")
        ));
        assert!(matches!(
            to_search_error(MeiliError::Timeout),
            SearchError::Unavailable(_)
        ));
    }

    /// Runs against a real server when `LINGXI_MEILI_URL` is set.
    #[tokio::test]
    async fn live_server_round_trip() {
        let Some(url) = std::env::var("LINGXI_MEILI_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            eprintln!("skipped live_server_round_trip: LINGXI_MEILI_URL is not set");
            return;
        };
        let key = std::env::var("LINGXI_MEILI_KEY").ok();
        let backend = MeiliSearch::new(&url, key.as_deref(), "lingxi_test")
            .await
            .expect("client");
        let account = Uuid::new_v4();

        let unit = |i: usize| {
            let mut v = vec![0.0f32; DIMENSIONS];
            v[i] = 1.0;
            v
        };
        let ids: Vec<Uuid> = (1..=5u128).map(Uuid::from_u128).collect();
        let mut docs: Vec<PersonaDoc> = ids.iter().map(|id| persona(*id)).collect();
        for (i, d) in docs.iter_mut().enumerate() {
            d.activity = i as f64;
            d.city = Some(if i < 3 { "北京" } else { "上海" }.into());
            d.gender = if i % 2 == 0 { "female" } else { "male" }.into();
            d.age = Some(25 + (i as i64 % 2));
            d.tags = vec!["vip".into()];
            d.terms = vec!["护肤".into(), format!("t{i}")];
            d.embedding = match i {
                0 | 1 => Some(unit(0)),
                2 | 3 => Some(unit(1)),
                _ => None,
            };
        }
        docs[4].city = Some("Bei\"jing\\".into());
        backend.upsert(account, docs).await.expect("upsert");
        assert_eq!(backend.count(account).await.unwrap(), 5);

        let req = |filter: Filter| SearchRequest {
            filter,
            similar: None,
            offset: 0,
            limit: 10,
            facets: vec![field("gender"), field("age")],
        };
        let r = backend
            .search(account, &req(eq("city", s("北京"))))
            .await
            .unwrap();
        assert_eq!(r.total, 3);
        // Activity descending.
        assert_eq!(
            r.hits.iter().map(|h| h.member_id).collect::<Vec<_>>(),
            vec![ids[2], ids[1], ids[0]]
        );
        assert_eq!(r.facets[0].field, "gender");
        assert_eq!(
            r.facets[0].values,
            vec![("female".into(), 2), ("male".into(), 1)]
        );
        assert_eq!(r.facets[1].values, vec![("25".into(), 2), ("26".into(), 1)]);

        let quoted = backend
            .search(account, &req(eq("city", s("bei\"JING\\"))))
            .await
            .unwrap();
        assert_eq!(quoted.total, 1, "case-insensitive, escaped equality");
        let terms = backend
            .search(
                account,
                &req(Filter::Terms(vec!["护肤".into(), "t3".into()])),
            )
            .await
            .unwrap();
        assert_eq!(terms.total, 1);
        let paged = SearchRequest {
            offset: 1,
            limit: 2,
            ..req(Filter::All)
        };
        let r = backend.search(account, &paged).await.unwrap();
        assert_eq!(r.total, 5);
        assert_eq!(
            r.hits.iter().map(|h| h.member_id).collect::<Vec<_>>(),
            vec![ids[3], ids[2]]
        );

        let similar = SearchRequest {
            similar: Some(Similar {
                vector: unit(0),
                min_score: 0.9,
            }),
            ..req(Filter::All)
        };
        let r = backend.search(account, &similar).await.unwrap();
        assert_eq!(r.total, 2);
        assert_eq!(
            r.hits.iter().map(|h| h.member_id).collect::<Vec<_>>(),
            vec![ids[0], ids[1]]
        );
        assert!(r.hits.iter().all(|h| h.score == Some(1.0)));
        assert_eq!(
            r.facets[0].values,
            vec![("female".into(), 1), ("male".into(), 1)]
        );

        backend.delete(account, &[ids[0]]).await.unwrap();
        assert_eq!(backend.count(account).await.unwrap(), 4);
        let r = backend
            .search(account, &req(eq("city", s("北京"))))
            .await
            .unwrap();
        assert_eq!(r.total, 2);

        let mut rebuild = backend.rebuild(account).await.unwrap();
        rebuild
            .add(vec![persona(ids[0]), persona(ids[1])])
            .await
            .unwrap();
        assert_eq!(
            backend.count(account).await.unwrap(),
            4,
            "old index until commit"
        );
        assert_eq!(rebuild.commit().await.unwrap(), 2);
        assert_eq!(backend.count(account).await.unwrap(), 2);

        let missing = backend
            .search(Uuid::new_v4(), &req(Filter::All))
            .await
            .unwrap();
        assert_eq!(missing.total, 0);
        assert_eq!(missing.facets.len(), 2);

        backend.drop_account(account).await.unwrap();
        assert_eq!(backend.count(account).await.unwrap(), 0);
    }
}
