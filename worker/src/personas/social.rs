//! Loading the friend graph a persona build needs: the whole account for a
//! full build (PageRank is global), only the two-hop neighbourhood of the
//! targets for a refresh of a few members (whose influence is kept until
//! the next full build).
use std::collections::{HashMap, HashSet};

use entity::{member, persona, relation};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::graph::Graph;

/// Rows per `IN (…)` list, well under every database's parameter limit.
const CHUNK: usize = 1_000;

pub struct Social {
    /// Openid of every member the build targets (and, for full builds, all).
    pub openids: HashMap<Uuid, String>,
    pub graph: Graph,
    /// PageRank by openid (full builds), or the stored influence by openid.
    pub influence: HashMap<String, f64>,
}

/// `(member id, openid)` of the members matching `cond`.
async fn openids(
    db: &DatabaseConnection,
    cond: Condition,
) -> Result<Vec<(Uuid, String)>, sea_orm::DbErr> {
    member::Entity::find()
        .select_only()
        .column(member::Column::Id)
        .column(member::Column::Openid)
        .filter(cond)
        .into_tuple()
        .all(db)
        .await
}

/// `(member id, friend openid)` of the account's friend edges matching `cond`.
async fn edges(
    db: &DatabaseConnection,
    account_id: Uuid,
    cond: Condition,
) -> Result<Vec<(Uuid, String)>, sea_orm::DbErr> {
    relation::Entity::find()
        .select_only()
        .column(relation::Column::MemberId)
        .column(relation::Column::FriendOpenid)
        .filter(relation::Column::AccountId.eq(account_id))
        .filter(cond)
        .into_tuple()
        .all(db)
        .await
}

fn in_account(account_id: Uuid) -> Condition {
    Condition::all().add(member::Column::AccountId.eq(account_id))
}

/// The whole account.
pub async fn full(db: &DatabaseConnection, account_id: Uuid) -> Result<Social, sea_orm::DbErr> {
    let openids: HashMap<Uuid, String> = openids(db, in_account(account_id))
        .await?
        .into_iter()
        .collect();
    let all = edges(db, account_id, Condition::all()).await?;
    let graph = Graph::new(
        all.into_iter()
            .filter_map(|(m, f)| openids.get(&m).map(|o| (o.clone(), f))),
    );
    let influence = graph
        .influence()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Ok(Social {
        openids,
        graph,
        influence,
    })
}

/// Edges with one end among `openids`, as openid pairs.
async fn edges_touching(
    db: &DatabaseConnection,
    account_id: Uuid,
    openids_set: &HashSet<String>,
) -> Result<Vec<(String, String)>, sea_orm::DbErr> {
    let list: Vec<&str> = openids_set.iter().map(String::as_str).collect();
    let mut ids: HashMap<Uuid, String> = HashMap::new();
    let mut raw: Vec<(Uuid, String)> = Vec::new();
    for chunk in list.chunks(CHUNK) {
        let cond = in_account(account_id).add(member::Column::Openid.is_in(chunk.iter().copied()));
        let found = openids(db, cond).await?;
        let member_ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
        ids.extend(found);
        raw.extend(
            edges(
                db,
                account_id,
                Condition::any()
                    .add(relation::Column::MemberId.is_in(member_ids))
                    .add(relation::Column::FriendOpenid.is_in(chunk.iter().copied())),
            )
            .await?,
        );
    }
    // The member side of reverse edges may be anyone: resolve their openids.
    let unknown: Vec<Uuid> = raw
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| !ids.contains_key(m))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for chunk in unknown.chunks(CHUNK) {
        let cond = in_account(account_id).add(member::Column::Id.is_in(chunk.iter().copied()));
        ids.extend(openids(db, cond).await?);
    }
    Ok(raw
        .into_iter()
        .filter_map(|(m, f)| ids.get(&m).map(|o| (o.clone(), f)))
        .collect())
}

/// The two-hop neighbourhood of `targets`: exact degree and 2-hop reach for
/// them; influence is what their personas already hold.
pub async fn local(
    db: &DatabaseConnection,
    account_id: Uuid,
    targets: &[Uuid],
) -> Result<Social, sea_orm::DbErr> {
    let mut target_openids: HashMap<Uuid, String> = HashMap::new();
    let mut stored: HashMap<Uuid, f64> = HashMap::new();
    for chunk in targets.chunks(CHUNK) {
        let cond = in_account(account_id).add(member::Column::Id.is_in(chunk.iter().copied()));
        target_openids.extend(openids(db, cond).await?);
        stored.extend(
            persona::Entity::find()
                .select_only()
                .column(persona::Column::MemberId)
                .column(persona::Column::Influence)
                .filter(persona::Column::AccountId.eq(account_id))
                .filter(persona::Column::MemberId.is_in(chunk.iter().copied()))
                .into_tuple::<(Uuid, f64)>()
                .all(db)
                .await?,
        );
    }
    let hop0: HashSet<String> = target_openids.values().cloned().collect();
    let first = edges_touching(db, account_id, &hop0).await?;
    let hop1: HashSet<String> = first
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .filter(|o| !hop0.contains(o))
        .collect();
    let second = edges_touching(db, account_id, &hop1).await?;
    let graph = Graph::new(first.into_iter().chain(second));
    let influence = target_openids
        .iter()
        .filter_map(|(id, o)| stored.get(id).map(|v| (o.clone(), *v)))
        .collect();
    Ok(Social {
        openids: target_openids,
        graph,
        influence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbourhood_gives_the_same_reach_as_the_whole_graph() {
        let edges = [
            ("a", "b"),
            ("b", "c"),
            ("c", "d"),
            ("d", "e"),
            ("x", "a"),
            ("b", "y"),
        ];
        let whole = Graph::new(edges.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        // The 2-hop neighbourhood of "a": edges touching a, then touching a's friends.
        let local = Graph::new(
            edges
                .iter()
                .filter(|(p, q)| ["a", "b", "x"].contains(p) || ["a", "b", "x"].contains(q))
                .map(|(a, b)| (a.to_string(), b.to_string())),
        );
        assert_eq!(whole.degree("a"), local.degree("a"));
        assert_eq!(whole.two_hop("a"), local.two_hop("a"));
        assert_eq!(local.two_hop("a"), 4); // b, x, c, y
    }
}
