//! `importRelations`: friend edges from a member to any WeChat user (the
//! friend need not follow the account: that is what social reach counts).
use std::collections::HashSet;

use chrono::Utc;
use entity::relation;
use sea_orm::{DatabaseTransaction, Set};
use uuid::Uuid;

use super::{Importer, Outcome, Record, RowError, insert_new, members::ids_by_openid};
use crate::error::AppResult;

pub struct RelationsImport {
    pub account_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct RelationRow {
    pub openid: String,
    pub friend_openid: String,
}

impl Importer for RelationsImport {
    fn account_id(&self) -> Uuid {
        self.account_id
    }

    type Table = entity::relation::Entity;
    type Row = RelationRow;
    const COLUMNS: &'static [&'static str] = &["openid", "friendOpenid"];
    const REQUIRED: &'static [&'static str] = &["openid", "friendOpenid"];

    fn parse(&self, r: &Record) -> Result<RelationRow, String> {
        let openid = super::members::openid(r.get("openid"), "openid")?;
        let friend_openid = super::members::openid(r.get("friendOpenid"), "friendOpenid")?;
        if openid == friend_openid {
            return Err("a member cannot be their own friend".into());
        }
        Ok(RelationRow {
            openid,
            friend_openid,
        })
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, RelationRow)>,
        outcome: &mut Outcome,
    ) -> AppResult<Vec<RowError>> {
        let members = ids_by_openid(
            txn,
            self.account_id,
            rows.iter().map(|(_, r)| r.openid.clone()),
        )
        .await?;
        let now = Utc::now();
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut models = Vec::with_capacity(rows.len());
        for (line, r) in rows {
            let Some(&member_id) = members.get(&r.openid) else {
                errors.push(RowError { line, message: format!("openid {:?} is not a member of this account; import members first / 未知会员", r.openid) });
                continue;
            };
            if !seen.insert((member_id, r.friend_openid.clone())) {
                continue;
            }
            models.push(relation::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(self.account_id),
                member_id: Set(member_id),
                friend_openid: Set(r.friend_openid),
                created_at: Set(now),
            });
        }
        let key = [
            relation::Column::AccountId,
            relation::Column::MemberId,
            relation::Column::FriendOpenid,
        ];
        let inserted = insert_new(txn, models, &key, relation::Column::MemberId).await?;
        outcome.touched_members.extend(inserted);
        Ok(errors)
    }
}
