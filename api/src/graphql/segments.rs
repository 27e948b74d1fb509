//! Saved segments and the segment filter language of API.md.
use async_graphql::{Context, Enum, ID, InputObject, Json, Object};
use chrono::{DateTime, Utc};
use entity::segment;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{
    connection::{Conn, PageArgs, paginate},
    parse_id,
    preview::{self, SegmentResult},
    required_text, to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, AppResult, GqlResult},
    tenant,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    /// Any of a list.
    In,
    /// A list field (tags, interests, keywords) holds the value.
    Contains,
    /// `value: true` (default) has the field; `false` lacks it.
    Exists,
}

/// Members similar to some members (their mean persona embedding) or to a text.
#[derive(InputObject, Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimilarTo {
    pub member_ids: Option<Vec<ID>>,
    pub text: Option<String>,
    /// Cosine similarity threshold in [-1, 1]; default 0.
    pub min_score: Option<f64>,
}

/// A tree of conditions over persona attributes. Each node is exactly one
/// of: `and`, `or`, `not`, a field condition (`field` + `op` + `value`),
/// `text` (keyword match), or `similarTo`.
#[derive(InputObject, Clone, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SegmentFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub and: Option<Vec<SegmentFilter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub or: Option<Vec<SegmentFilter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not: Option<Box<SegmentFilter>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<FilterOp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Json<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similar_to: Option<SimilarTo>,
}

pub use worker::search::fields::{FieldType, field as catalogue_field};

/// The type of a catalogue field, `None` when unknown.
pub fn field_type(name: &str) -> Option<FieldType> {
    catalogue_field(name).map(|f| f.ty)
}

const MAX_NODES: usize = 200;
const MAX_DEPTH: usize = 8;

fn scalar_ok(t: FieldType, v: &Value) -> bool {
    match t {
        FieldType::Text | FieldType::TextList => v.is_string(),
        FieldType::Number => v.as_f64().is_some_and(f64::is_finite),
        FieldType::Bool => v.is_boolean(),
        FieldType::Time => v
            .as_str()
            .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok()),
    }
}

fn type_name(t: FieldType) -> &'static str {
    match t {
        FieldType::Text => "a string",
        FieldType::TextList => "a string",
        FieldType::Number => "a number",
        FieldType::Bool => "true or false",
        FieldType::Time => "an RFC 3339 time",
    }
}

/// Checks a filter: known fields, operators that fit their type, values of
/// the right type, one kind per node, bounded size.
///
/// # Errors
/// `BAD_USER_INPUT` naming the offending path, e.g. `filter.and[1].field`.
pub fn validate(f: &SegmentFilter, path: &str) -> AppResult<()> {
    let mut nodes = 0;
    validate_node(f, path, 0, &mut nodes)?;
    check_similar_placement(f, path)
}

/// `similarTo` ranks the whole answer, so it may appear once, at the top or
/// directly inside the top-level `and`: never under `or` or `not`.
fn check_similar_placement(f: &SegmentFilter, path: &str) -> AppResult<()> {
    fn any_similar(f: &SegmentFilter) -> bool {
        f.similar_to.is_some()
            || f.not.as_deref().is_some_and(any_similar)
            || [&f.and, &f.or]
                .into_iter()
                .flatten()
                .flatten()
                .any(any_similar)
    }
    let allowed: Vec<&SegmentFilter> = match &f.and {
        Some(items) => items.iter().filter(|c| c.similar_to.is_some()).collect(),
        None => f.similar_to.iter().map(|_| f).collect(),
    };
    if allowed.len() > 1 {
        return Err(AppError::bad_input(
            format!("{path}.and"),
            "at most one similarTo per filter",
        ));
    }
    let nested = match &f.and {
        Some(items) => items
            .iter()
            .any(|c| c.similar_to.is_none() && any_similar(c)),
        None => f.similar_to.is_none() && any_similar(f),
    };
    if nested {
        return Err(AppError::bad_input(
            path,
            "similarTo may only appear at the top of the filter or directly inside its top-level and, not under or/not",
        ));
    }
    Ok(())
}

fn validate_node(f: &SegmentFilter, path: &str, depth: usize, nodes: &mut usize) -> AppResult<()> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(AppError::bad_input(
            path,
            format!("a filter may have at most {MAX_NODES} conditions"),
        ));
    }
    if depth > MAX_DEPTH {
        return Err(AppError::bad_input(
            path,
            format!("nested deeper than {MAX_DEPTH}"),
        ));
    }
    let kinds = [
        f.and.is_some(),
        f.or.is_some(),
        f.not.is_some(),
        f.field.is_some() || f.op.is_some() || f.value.is_some(),
        f.text.is_some(),
        f.similar_to.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        return Err(AppError::bad_input(
            path,
            "each filter node is exactly one of and, or, not, field/op/value, text, similarTo; combine several with and",
        ));
    }
    for (name, list) in [("and", &f.and), ("or", &f.or)] {
        if let Some(list) = list {
            if list.is_empty() {
                return Err(AppError::bad_input(
                    format!("{path}.{name}"),
                    "must not be empty",
                ));
            }
            for (i, c) in list.iter().enumerate() {
                validate_node(c, &format!("{path}.{name}[{i}]"), depth + 1, nodes)?;
            }
        }
    }
    if let Some(n) = &f.not {
        validate_node(n, &format!("{path}.not"), depth + 1, nodes)?;
    }
    if let Some(t) = &f.text {
        let t = t.trim();
        if t.is_empty() || t.chars().count() > 200 {
            return Err(AppError::bad_input(
                format!("{path}.text"),
                "1 to 200 characters",
            ));
        }
        if worker::search::query::query_terms(t).is_empty() {
            return Err(AppError::bad_input(
                format!("{path}.text"),
                "no searchable words (only punctuation or particles) / 没有可检索的词",
            ));
        }
    }
    if let Some(s) = &f.similar_to {
        let p = format!("{path}.similarTo");
        match (&s.member_ids, &s.text) {
            (Some(ids), None) => {
                if ids.is_empty() || ids.len() > 100 {
                    return Err(AppError::bad_input(
                        format!("{p}.memberIds"),
                        "1 to 100 member ids",
                    ));
                }
                for (i, id) in ids.iter().enumerate() {
                    parse_id(id, &format!("{p}.memberIds[{i}]"))?;
                }
            }
            (None, Some(t)) => {
                if t.trim().is_empty() || t.chars().count() > 500 {
                    return Err(AppError::bad_input(
                        format!("{p}.text"),
                        "1 to 500 characters",
                    ));
                }
            }
            _ => {
                return Err(AppError::bad_input(
                    p,
                    "give exactly one of memberIds or text",
                ));
            }
        }
        if let Some(m) = s.min_score
            && !(-1.0..=1.0).contains(&m)
        {
            return Err(AppError::bad_input(
                format!("{p}.minScore"),
                "between -1 and 1",
            ));
        }
    }
    if f.field.is_some() || f.op.is_some() || f.value.is_some() {
        let name = f.field.as_deref().ok_or_else(|| {
            AppError::bad_input(format!("{path}.field"), "required with op and value")
        })?;
        let t = field_type(name).ok_or_else(|| {
            AppError::bad_input(
                format!("{path}.field"),
                format!(
                    "unknown field {name:?}; known: {}",
                    worker::search::fields::names(false)
                ),
            )
        })?;
        let op =
            f.op.ok_or_else(|| AppError::bad_input(format!("{path}.op"), "required with field"))?;
        let vp = format!("{path}.value");
        let value = f.value.as_ref().map(|v| &v.0);
        use FilterOp::*;
        let op_fits = match op {
            Exists => true,
            Eq | Ne => t != FieldType::TextList,
            Gt | Gte | Lt | Lte => matches!(t, FieldType::Number | FieldType::Time),
            In => t != FieldType::Bool,
            Contains => t == FieldType::TextList,
        };
        if !op_fits {
            return Err(AppError::bad_input(
                format!("{path}.op"),
                format!("{op:?} does not apply to field {name:?}"),
            ));
        }
        match (op, value) {
            (Exists, None) => {}
            (Exists, Some(v)) if v.is_boolean() => {}
            (Exists, Some(_)) => {
                return Err(AppError::bad_input(
                    vp,
                    "EXISTS takes true, false or nothing",
                ));
            }
            (_, None) => return Err(AppError::bad_input(vp, "required")),
            (In, Some(Value::Array(items))) => {
                if items.is_empty() || items.len() > 1000 {
                    return Err(AppError::bad_input(vp, "IN takes 1 to 1000 values"));
                }
                if let Some(i) = items.iter().position(|v| !scalar_ok(t, v)) {
                    return Err(AppError::bad_input(
                        format!("{vp}[{i}]"),
                        format!("must be {}", type_name(t)),
                    ));
                }
            }
            (In, Some(_)) => return Err(AppError::bad_input(vp, "IN takes a list")),
            (_, Some(v)) if !scalar_ok(t, v) => {
                return Err(AppError::bad_input(
                    vp,
                    format!("field {name:?} takes {}", type_name(t)),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

pub struct Segment(pub segment::Model);

#[Object]
impl Segment {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The stored filter, as given to createSegment.
    async fn filter(&self) -> Json<Value> {
        Json(self.0.filter.clone())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Who is in the segment now: total, facets and members, as `segmentPreview`.
    async fn preview(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<SegmentResult> {
        let filter: SegmentFilter = serde_json::from_value(self.0.filter.clone())
            .map_err(|e| AppError::Internal(anyhow::anyhow!("stored filter unreadable: {e}")))?;
        Ok(preview::preview(ctx, &filter, first, after).await?)
    }
}

#[derive(InputObject)]
pub struct CreateSegmentInput {
    pub name: String,
    pub filter: SegmentFilter,
}

#[derive(Default)]
pub struct SegmentsQuery;

#[Object]
impl SegmentsQuery {
    /// Saved segments, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn segments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Conn<Segment>> {
        let select = tenant::scoped::<segment::Entity>(ctx.tenant()?);
        Ok(paginate(
            ctx.db(),
            select,
            segment::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            Segment,
        )
        .await?)
    }

    /// Who matches a filter: total, facets and a page of members (best
    /// first), answered by the search index.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 200) as usize * child_complexity + 1")]
    async fn segment_preview(
        &self,
        ctx: &Context<'_>,
        filter: SegmentFilter,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<SegmentResult> {
        Ok(preview::preview(ctx, &filter, first, after).await?)
    }

    /// One saved segment; null when it does not exist in this account.
    async fn segment(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Segment>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<segment::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(s) => Ok(Some(Segment(s))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Default)]
pub struct SegmentsMutation;

#[Object]
impl SegmentsMutation {
    /// Saves a named, validated filter.
    async fn create_segment(
        &self,
        ctx: &Context<'_>,
        input: CreateSegmentInput,
    ) -> GqlResult<Segment> {
        let name = required_text("input.name", &input.name, 128)?;
        validate(&input.filter, "input.filter")?;
        let now = Utc::now();
        let filter = serde_json::to_value(&input.filter).map_err(anyhow::Error::from)?;
        Ok(Segment(
            segment::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(ctx.tenant()?),
                name: Set(name),
                filter: Set(filter),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(ctx.db())
            .await?,
        ))
    }

    /// Deletes a saved segment; campaigns using it fall back to all consenting subscribers.
    async fn delete_segment(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        let account_id = ctx.tenant()?;
        tenant::get::<segment::Entity>(ctx.db(), account_id, id).await?;
        let db = ctx.db();
        entity::campaign::Entity::update_many()
            .col_expr(
                entity::campaign::Column::SegmentId,
                sea_orm::sea_query::Expr::value(Option::<Uuid>::None),
            )
            .filter(entity::campaign::Column::AccountId.eq(account_id))
            .filter(entity::campaign::Column::SegmentId.eq(id))
            .exec(db)
            .await?;
        segment::Entity::delete_many()
            .filter(segment::Column::AccountId.eq(account_id))
            .filter(segment::Column::Id.eq(id))
            .exec(db)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(field: &str, op: FilterOp, value: Value) -> SegmentFilter {
        SegmentFilter {
            field: Some(field.into()),
            op: Some(op),
            value: Some(Json(value)),
            ..Default::default()
        }
    }

    #[test]
    fn valid_filters_pass() {
        let f = SegmentFilter {
            and: Some(vec![
                cond("city", FilterOp::Eq, json!("上海")),
                cond("age", FilterOp::Gte, json!(25)),
                cond("interests", FilterOp::Contains, json!("美妆护肤")),
                SegmentFilter {
                    not: Some(Box::new(cond("gender", FilterOp::In, json!(["male"])))),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        validate(&f, "filter").unwrap();
    }

    #[test]
    fn errors_name_the_path() {
        let f = SegmentFilter {
            and: Some(vec![
                cond("city", FilterOp::Eq, json!("x")),
                cond("colour", FilterOp::Eq, json!("x")),
            ]),
            ..Default::default()
        };
        match validate(&f, "filter") {
            Err(AppError::BadInput { field, .. }) => assert_eq!(field, "filter.and[1].field"),
            other => panic!("{other:?}"),
        }
        match validate(&cond("age", FilterOp::Gt, json!("old")), "filter") {
            Err(AppError::BadInput { field, .. }) => assert_eq!(field, "filter.value"),
            other => panic!("{other:?}"),
        }
        assert!(validate(&cond("tags", FilterOp::Gt, json!(1)), "filter").is_err());
        assert!(validate(&SegmentFilter::default(), "filter").is_err());
    }
}
