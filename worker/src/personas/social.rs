//! Loading the friend graph a persona build needs: the whole account for a
//! full build (PageRank is global), only the two-hop neighbourhood of the
//! targets for a refresh of a few members (whose influence is kept until
//! the next full build).
use std::collections::{HashMap, HashSet};

use entity::{member, persona, relation};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
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

/// The whole account.
pub async fn full(db: &DatabaseConnection, account_id: Uuid) -> Result<Social, sea_orm::DbErr> {
    let openids: HashMap<Uuid, String> = member::Entity::find()
        .select_only()
        .column(member::Column::Id)
        .column(member::Column::Openid)
        .filter(member::Column::AccountId.eq(account_id))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let edges: Vec<(Uuid, String)> = relation::Entity::find()
        .select_only()
        .column(relation::Column::MemberId)
        .column(relation::Column::FriendOpenid)
        .filter(relation::Column::AccountId.eq(account_id))
        .into_tuple()
        .all(db)
        .await?;
    let graph = Graph::new(
        edges
            .into_iter()
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

/// Edges with one end among `members` (by id) or `openids`, as openid pairs.
async fn edges_touching(
    db: &DatabaseConnection,
    account_id: Uuid,
    openids: &HashSet<String>,
) -> Result<Vec<(String, String)>, sea_orm::DbErr> {
    let list: Vec<&String> = openids.iter().collect();
    let mut ids: HashMap<Uuid, String> = HashMap::new();
    for chunk in list.chunks(CHUNK) {
        ids.extend(
            member::Entity::find()
                .select_only()
                .column(member::Column::Id)
                .column(member::Column::Openid)
                .filter(member::Column::AccountId.eq(account_id))
                .filter(member::Column::Openid.is_in(chunk.iter().map(|s| s.as_str())))
                .into_tuple::<(Uuid, String)>()
                .all(db)
                .await?,
        );
    }
    let mut raw: Vec<(Uuid, String)> = Vec::new();
    let keys: Vec<Uuid> = ids.keys().copied().collect();
    for chunk in keys.chunks(CHUNK) {
        raw.extend(
            relation::Entity::find()
                .select_only()
                .column(relation::Column::MemberId)
                .column(relation::Column::FriendOpenid)
                .filter(relation::Column::AccountId.eq(account_id))
                .filter(relation::Column::MemberId.is_in(chunk.iter().copied()))
                .into_tuple::<(Uuid, String)>()
                .all(db)
                .await?,
        );
    }
    for chunk in list.chunks(CHUNK) {
        raw.extend(
            relation::Entity::find()
                .select_only()
                .column(relation::Column::MemberId)
                .column(relation::Column::FriendOpenid)
                .filter(relation::Column::AccountId.eq(account_id))
                .filter(relation::Column::FriendOpenid.is_in(chunk.iter().map(|s| s.as_str())))
                .into_tuple::<(Uuid, String)>()
                .all(db)
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
        ids.extend(
            member::Entity::find()
                .select_only()
                .column(member::Column::Id)
                .column(member::Column::Openid)
                .filter(member::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple::<(Uuid, String)>()
                .all(db)
                .await?,
        );
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
    let mut openids: HashMap<Uuid, String> = HashMap::new();
    let mut stored: HashMap<Uuid, f64> = HashMap::new();
    for chunk in targets.chunks(CHUNK) {
        openids.extend(
            member::Entity::find()
                .select_only()
                .column(member::Column::Id)
                .column(member::Column::Openid)
                .filter(member::Column::AccountId.eq(account_id))
                .filter(member::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple::<(Uuid, String)>()
                .all(db)
                .await?,
        );
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
    let hop0: HashSet<String> = openids.values().cloned().collect();
    let first = edges_touching(db, account_id, &hop0).await?;
    let hop1: HashSet<String> = first
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .filter(|o| !hop0.contains(o))
        .collect();
    let second = edges_touching(db, account_id, &hop1).await?;
    let graph = Graph::new(first.into_iter().chain(second));
    let influence = openids
        .iter()
        .filter_map(|(id, o)| stored.get(id).map(|v| (o.clone(), *v)))
        .collect();
    Ok(Social {
        openids,
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
