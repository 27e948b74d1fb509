//! `segmentPreview` and `Segment.preview`: a validated filter becomes a
//! backend-neutral search request; the answer is a total, facets and a page
//! of members (with their similarity score for lookalikes).
use std::collections::HashMap;

use async_graphql::{
    Context, Object, OutputType, SimpleObject,
    connection::{Connection, ConnectionNameType, CursorType, Edge, EdgeNameType},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::DateTime;
use entity::{member, persona};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;
use uuid::Uuid;
use worker::search::{
    CmpOp, Filter, Scalar, SearchError, SearchRequest, SearchResponse, Similar,
    fields::{self, FieldType, MEMBER_ID},
    query::{MAX_WINDOW, query_terms},
};

use super::{
    audiences::Member,
    parse_id,
    segments::{FilterOp, SegmentFilter, SimilarTo, validate},
};
use crate::{
    context::ContextExt,
    error::{AppError, AppResult, GqlResult},
};

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 200;

impl From<SearchError> for AppError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Invalid(m) => AppError::bad_input("filter", m),
            SearchError::Unavailable(m) => AppError::Unavailable(format!(
                "segment search is unavailable, retry shortly / 人群检索暂不可用: {m}"
            )),
            SearchError::Backend(m) => AppError::Internal(anyhow::anyhow!(m)),
        }
    }
}

/// An opaque cursor: the position in the ranked answer.
pub struct OffsetCursor(pub usize);

impl CursorType for OffsetCursor {
    type Error = AppError;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:")?.parse().ok())
            .map(OffsetCursor)
            .ok_or_else(|| AppError::bad_input("after", "not a cursor returned by this API"))
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("o:{}", self.0))
    }
}

pub struct SegmentMembersName;
impl ConnectionNameType for SegmentMembersName {
    fn type_name<T: OutputType>() -> String {
        "SegmentMemberConnection".into()
    }
}
impl EdgeNameType for SegmentMembersName {
    fn type_name<T: OutputType>() -> String {
        "SegmentMemberEdge".into()
    }
}

#[derive(SimpleObject)]
pub struct MatchScore {
    /// Cosine similarity to `similarTo` (lookalikes); null otherwise.
    pub score: Option<f64>,
}

#[derive(SimpleObject)]
pub struct MatchTotal {
    /// Members matching the filter, across all pages.
    pub total_count: u64,
}

pub type SegmentMembers = Connection<
    OffsetCursor,
    Member,
    MatchTotal,
    MatchScore,
    SegmentMembersName,
    SegmentMembersName,
>;

#[derive(SimpleObject, Clone)]
pub struct FacetValue {
    /// The value as text: `上海`, `25`, `true`.
    pub value: String,
    pub count: u64,
}

#[derive(SimpleObject, Clone)]
pub struct Facet {
    pub field: String,
    /// Most frequent first (ties by value), at most 100.
    pub values: Vec<FacetValue>,
}

/// The answer to a segment filter.
pub struct SegmentResult {
    total: u64,
    facets: HashMap<&'static str, Facet>,
    members: Option<SegmentMembers>,
}

#[Object]
impl SegmentResult {
    /// Members matching the filter (and `similarTo`'s minimum score).
    async fn total(&self) -> u64 {
        self.total
    }

    /// Value counts over the matching members, for these catalogue fields
    /// (city, province, gender, age, tags, interests, keywords,
    /// sentimentLabel, degree, subscribed, consent).
    async fn facets(&self, fields: Vec<String>) -> GqlResult<Vec<Facet>> {
        Ok(facet_fields(&fields)?
            .into_iter()
            .map(|f| self.facets[f.name].clone())
            .collect())
    }

    /// Matching members, best first: by similarity for lookalikes, else by
    /// activity; ties by member id.
    async fn members(&self) -> Option<&SegmentMembers> {
        self.members.as_ref()
    }
}

fn facet_fields(names: &[String]) -> AppResult<Vec<&'static fields::Field>> {
    if names.len() > 12 {
        return Err(AppError::bad_input("fields", "at most 12 facet fields"));
    }
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            fields::field(n).filter(|f| f.facet).ok_or_else(|| {
                AppError::bad_input(
                    format!("fields[{i}]"),
                    format!(
                        "{n:?} cannot be faceted; facetable: {}",
                        fields::names(true)
                    ),
                )
            })
        })
        .collect()
}

/// What the client selected under the preview: the facet fields (of every
/// `facets` selection, aliases included) and the page arguments of `members`.
struct Wanted {
    facets: Vec<&'static fields::Field>,
    members: bool,
}

fn wanted(ctx: &Context<'_>) -> AppResult<Wanted> {
    let mut facets = Vec::new();
    let mut members = false;
    for sel in ctx.field().selection_set() {
        match sel.name() {
            "facets" => {
                let args = sel
                    .arguments()
                    .map_err(|e| AppError::bad_input("fields", e.message))?;
                for (name, value) in args {
                    if name.as_str() == "fields" {
                        let list: Vec<String> = match value.into_json() {
                            Ok(Value::Array(a)) => a
                                .into_iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect(),
                            _ => Vec::new(),
                        };
                        for f in facet_fields(&list)? {
                            if !facets.contains(&f) {
                                facets.push(f);
                            }
                        }
                    }
                }
            }
            "members" => members = true,
            _ => {}
        }
    }
    Ok(Wanted { facets, members })
}

/// Runs a filter for the caller's account.
pub async fn preview(
    ctx: &Context<'_>,
    filter: &SegmentFilter,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<SegmentResult> {
    let limit = match first {
        None => DEFAULT_PAGE,
        Some(n) if n < 0 => return Err(AppError::bad_input("first", "must not be negative")),
        Some(n) if n as usize > MAX_PAGE => {
            return Err(AppError::bad_input("first", format!("at most {MAX_PAGE}")));
        }
        Some(n) => n as usize,
    };
    let offset = after
        .map(|a| OffsetCursor::decode_cursor(&a).map(|c| c.0 + 1))
        .transpose()?
        .unwrap_or(0);
    if offset + limit > MAX_WINDOW {
        return Err(AppError::bad_input(
            "after",
            format!("a preview pages through its first {MAX_WINDOW} members; narrow the filter"),
        ));
    }
    let account = ctx.tenant()?;
    let want = wanted(ctx)?;
    let (filter, similar) = translate(ctx, account, filter).await?;
    let req = SearchRequest {
        filter,
        similar,
        offset,
        limit: if want.members { limit } else { 0 },
        facets: want.facets,
    };
    let started = std::time::Instant::now();
    let res = ctx.state().search.search(account, &req).await?;
    tracing::debug!(
        backend = ctx.state().search.name(),
        total = res.total,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "segment preview"
    );
    respond(ctx, account, &req, res).await
}

async fn respond(
    ctx: &Context<'_>,
    account: Uuid,
    req: &SearchRequest,
    res: SearchResponse,
) -> AppResult<SegmentResult> {
    let facets = res
        .facets
        .into_iter()
        .map(|f| {
            (
                f.field,
                Facet {
                    field: f.field.to_owned(),
                    values: f
                        .values
                        .into_iter()
                        .map(|(value, count)| FacetValue { value, count })
                        .collect(),
                },
            )
        })
        .collect();
    let members = if req.limit > 0 {
        let ids: Vec<Uuid> = res.hits.iter().map(|h| h.member_id).collect();
        // The index may trail the database by a moment: members erased since
        // are skipped rather than shown.
        let mut rows: HashMap<Uuid, member::Model> = member::Entity::find()
            .filter(member::Column::AccountId.eq(account))
            .filter(member::Column::Id.is_in(ids))
            .all(ctx.db())
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let has_next = (req.offset + res.hits.len()) < res.total as usize;
        let mut conn = SegmentMembers::with_additional_fields(
            req.offset > 0,
            has_next,
            MatchTotal {
                total_count: res.total,
            },
        );
        for (i, hit) in res.hits.iter().enumerate() {
            if let Some(m) = rows.remove(&hit.member_id) {
                conn.edges.push(Edge::with_additional_fields(
                    OffsetCursor(req.offset + i),
                    Member(m),
                    MatchScore {
                        score: hit.score.map(f64::from),
                    },
                ));
            }
        }
        Some(conn)
    } else {
        None
    };
    Ok(SegmentResult {
        total: res.total,
        facets,
        members,
    })
}

/// Turns a validated GraphQL filter into the search request's filter and
/// similarity condition (resolving seed members and embedding texts).
async fn translate(
    ctx: &Context<'_>,
    account: Uuid,
    f: &SegmentFilter,
) -> AppResult<(Filter, Option<Similar>)> {
    validate(f, "filter")?;
    // similarTo sits at the top or directly in the top-level `and` (validated).
    let (rest, similar): (Vec<&SegmentFilter>, Option<&SimilarTo>) = match (&f.and, &f.similar_to) {
        (Some(items), _) => (
            items.iter().filter(|c| c.similar_to.is_none()).collect(),
            items.iter().find_map(|c| c.similar_to.as_ref()),
        ),
        (None, Some(s)) => (Vec::new(), Some(s)),
        (None, None) => (vec![f], None),
    };
    let mut parts = rest.into_iter().map(to_filter).collect::<Vec<_>>();
    let similar = match similar {
        None => None,
        Some(s) => {
            let (sim, seeds) = similar_to(ctx, account, s).await?;
            if !seeds.is_empty() {
                // A lookalike audience is new people: the seeds are left out.
                parts.push(Filter::Not(Box::new(Filter::In {
                    field: &MEMBER_ID,
                    values: seeds.iter().map(|i| Scalar::Str(i.to_string())).collect(),
                })));
            }
            Some(sim)
        }
    };
    let filter = match parts.len() {
        0 => Filter::All,
        1 => parts.pop().unwrap_or(Filter::All),
        _ => Filter::And(parts),
    };
    Ok((filter, similar))
}

fn scalar(t: FieldType, v: &Value) -> Scalar {
    match (t, v) {
        (FieldType::Time, Value::String(s)) => Scalar::Num(
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp() as f64)
                .unwrap_or(0.0),
        ),
        (_, Value::String(s)) => Scalar::Str(s.clone()),
        (_, Value::Bool(b)) => Scalar::Bool(*b),
        (_, v) => Scalar::Num(v.as_f64().unwrap_or(0.0)),
    }
}

/// One validated node (never `similarTo`, which `translate` lifted out).
fn to_filter(f: &SegmentFilter) -> Filter {
    if let Some(items) = &f.and {
        return Filter::And(items.iter().map(to_filter).collect());
    }
    if let Some(items) = &f.or {
        return Filter::Or(items.iter().map(to_filter).collect());
    }
    if let Some(n) = &f.not {
        return Filter::Not(Box::new(to_filter(n)));
    }
    if let Some(t) = &f.text {
        return Filter::Terms(query_terms(t));
    }
    let (Some(name), Some(op)) = (&f.field, f.op) else {
        return Filter::All;
    };
    let Some(field) = fields::field(name) else {
        return Filter::All;
    };
    let value = f.value.as_ref().map(|v| &v.0);
    let cmp = |op: CmpOp| Filter::Compare {
        field,
        op,
        value: value.map_or(Scalar::Bool(true), |v| scalar(field.ty, v)),
    };
    match op {
        FilterOp::Eq => cmp(CmpOp::Eq),
        FilterOp::Ne => Filter::Not(Box::new(cmp(CmpOp::Eq))),
        FilterOp::Gt => cmp(CmpOp::Gt),
        FilterOp::Gte => cmp(CmpOp::Gte),
        FilterOp::Lt => cmp(CmpOp::Lt),
        FilterOp::Lte => cmp(CmpOp::Lte),
        FilterOp::In => Filter::In {
            field,
            values: value
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| scalar(field.ty, v)).collect())
                .unwrap_or_default(),
        },
        FilterOp::Contains => Filter::In {
            field,
            values: value.map(|v| scalar(field.ty, v)).into_iter().collect(),
        },
        FilterOp::Exists => {
            let exists = Filter::Exists { field };
            if value.and_then(Value::as_bool).unwrap_or(true) {
                exists
            } else {
                Filter::Not(Box::new(exists))
            }
        }
    }
}

/// The similarity condition: the mean persona embedding of seed members (of
/// this account only), or the embedding of a text. Returns the seeds too.
async fn similar_to(
    ctx: &Context<'_>,
    account: Uuid,
    s: &SimilarTo,
) -> AppResult<(Similar, Vec<Uuid>)> {
    let min_score = s.min_score.unwrap_or(0.0) as f32;
    if let Some(ids) = &s.member_ids {
        let ids = ids
            .iter()
            .enumerate()
            .map(|(i, id)| parse_id(id, &format!("filter.similarTo.memberIds[{i}]")))
            .collect::<AppResult<Vec<Uuid>>>()?;
        let embeddings: Vec<Option<Vec<u8>>> = persona::Entity::find()
            .filter(persona::Column::AccountId.eq(account))
            .filter(persona::Column::MemberId.is_in(ids.iter().copied()))
            .all(ctx.db())
            .await?
            .into_iter()
            .map(|p| p.embedding)
            .collect();
        let mut mean: Option<Vec<f32>> = None;
        for v in embeddings
            .iter()
            .flatten()
            .map(|b| worker::vectors::from_bytes(b))
        {
            let acc = mean.get_or_insert_with(|| vec![0.0; v.len()]);
            if acc.len() == v.len() {
                acc.iter_mut().zip(&v).for_each(|(a, x)| *a += x);
            }
        }
        let mut vector = mean.ok_or_else(|| {
            AppError::bad_input(
                "filter.similarTo.memberIds",
                "none of these members of this account has a persona embedding yet (they need analysed messages) / 种子成员尚无画像向量",
            )
        })?;
        worker::vectors::normalize(&mut vector);
        return Ok((Similar { vector, min_score }, ids));
    }
    let text = s.text.clone().unwrap_or_default();
    let models = ctx.state().models.clone().ok_or_else(|| {
        AppError::Unavailable(
            "similarTo.text needs the language models (started with LINGXI_MODELS=off) / 未加载语言模型".into(),
        )
    })?;
    let mut vector = tokio::task::spawn_blocking(move || {
        use worker::analysis::TextModels;
        worker::ml::interactive(|| models.embed_queries(&[text]))
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))?
    .map_err(AppError::Internal)?
    .pop()
    .unwrap_or_default();
    worker::vectors::normalize(&mut vector);
    Ok((Similar { vector, min_score }, Vec::new()))
}
