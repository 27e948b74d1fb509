//! Relay connections over keyset pagination by UUIDv7 id.
use async_graphql::{
    SimpleObject,
    connection::{Connection, CursorType, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 500;

/// An opaque cursor: the row id, base64url.
pub struct IdCursor(pub Uuid);

impl CursorType for IdCursor {
    type Error = AppError;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| Uuid::from_slice(&b).ok())
            .map(IdCursor)
            .ok_or_else(|| AppError::bad_input("after", "not a cursor returned by this API"))
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }
}

#[derive(SimpleObject)]
pub struct Total {
    /// Rows matching, across all pages.
    pub total_count: u64,
}

pub type Conn<N> = Connection<IdCursor, N, Total>;

/// Validated paging arguments.
pub struct PageArgs {
    pub first: u64,
    pub after: Option<Uuid>,
}

impl PageArgs {
    /// # Errors
    /// `BAD_USER_INPUT` for a negative or too large `first`, or a foreign cursor.
    pub fn new(first: Option<i32>, after: Option<String>) -> AppResult<Self> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if n < 0 => return Err(AppError::bad_input("first", "must not be negative")),
            Some(n) if n as u64 > MAX_PAGE => {
                return Err(AppError::bad_input("first", format!("at most {MAX_PAGE}")));
            }
            Some(n) => n as u64,
        };
        let after = after
            .map(|a| IdCursor::decode_cursor(&a).map(|c| c.0))
            .transpose()?;
        Ok(Self { first, after })
    }
}

/// Pages `select` by `id_col`, oldest first or newest first.
///
/// # Errors
/// Database errors.
pub async fn paginate<E, N>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    id_col: E::Column,
    args: PageArgs,
    newest_first: bool,
    id_of: impl Fn(&E::Model) -> Uuid,
    node: impl Fn(E::Model) -> N,
) -> AppResult<Conn<N>>
where
    E: EntityTrait,
    E::Model: Sync,
    N: async_graphql::OutputType,
{
    let total = select.clone().count(db).await?;
    let mut page = select;
    if let Some(after) = args.after {
        page = if newest_first {
            page.filter(id_col.lt(after))
        } else {
            page.filter(id_col.gt(after))
        };
    }
    page = if newest_first {
        page.order_by_desc(id_col)
    } else {
        page.order_by_asc(id_col)
    };
    let mut rows = page.limit(args.first + 1).all(db).await?;
    let has_next = rows.len() as u64 > args.first;
    rows.truncate(args.first as usize);
    let mut conn = Connection::with_additional_fields(
        args.after.is_some(),
        has_next,
        Total { total_count: total },
    );
    conn.edges.extend(
        rows.into_iter()
            .map(|m| Edge::new(IdCursor(id_of(&m)), node(m))),
    );
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        let c = IdCursor(id).encode_cursor();
        assert_eq!(IdCursor::decode_cursor(&c).unwrap().0, id);
        assert!(IdCursor::decode_cursor("not a cursor").is_err());
        assert!(PageArgs::new(Some(-1), None).is_err());
        assert!(PageArgs::new(Some(10_000), None).is_err());
    }
}
