//! A member whose data changed and whose persona waits for a refresh
//! (`worker::jobs::refresh`), written with the change.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "member_touch")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub member_id: Uuid,
    /// The first touch since the member's last refresh was queued: bounds
    /// how long the refresh may wait.
    pub first_touched_at: DateTimeUtc,
    /// The latest touch: a refresh waits for a quiet moment after it.
    pub last_touched_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
