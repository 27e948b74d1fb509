//! The campaign status machine, shared by the API (explicit moves) and the
//! scheduler tick (time-driven moves).
use chrono::Utc;
use entity::campaign;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};

/// `DRAFT → SCHEDULED → RUNNING ⇄ PAUSED → COMPLETED`, and `ARCHIVED` from any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Archived,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Draft,
        Status::Scheduled,
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "DRAFT",
            Status::Scheduled => "SCHEDULED",
            Status::Running => "RUNNING",
            Status::Paused => "PAUSED",
            Status::Completed => "COMPLETED",
            Status::Archived => "ARCHIVED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether `self → to` is a legal move.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Draft, Scheduled)
                | (Scheduled, Running)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, Completed)
                | (Paused, Completed)
        ) || (to == Archived && self != Archived)
    }

    /// Settings (segment, contents, budget, caps) may change only before the end.
    pub fn editable(self) -> bool {
        !matches!(self, Status::Completed | Status::Archived)
    }
}

/// Moves scheduled campaigns whose start has come to RUNNING, and running or
/// paused ones whose end has passed to COMPLETED. Conditional updates keep it
/// safe to run from several processes at once.
///
/// # Errors
/// Database errors.
pub async fn tick(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let now = Utc::now();
    let started = campaign::Entity::update_many()
        .col_expr(
            campaign::Column::Status,
            Expr::value(Status::Running.as_str()),
        )
        .col_expr(campaign::Column::UpdatedAt, Expr::value(now))
        .filter(campaign::Column::Status.eq(Status::Scheduled.as_str()))
        .filter(campaign::Column::StartAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    let ended = campaign::Entity::update_many()
        .col_expr(
            campaign::Column::Status,
            Expr::value(Status::Completed.as_str()),
        )
        .col_expr(campaign::Column::UpdatedAt, Expr::value(now))
        .filter(campaign::Column::Status.is_in([Status::Running.as_str(), Status::Paused.as_str()]))
        .filter(campaign::Column::EndAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(started + ended)
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn legal_moves_follow_the_documented_machine() {
        assert!(Draft.can_move_to(Scheduled));
        assert!(Scheduled.can_move_to(Running));
        assert!(Running.can_move_to(Paused));
        assert!(Paused.can_move_to(Running));
        assert!(Paused.can_move_to(Completed));
        assert!(!Draft.can_move_to(Running));
        assert!(!Draft.can_move_to(Paused));
        assert!(!Completed.can_move_to(Running));
        assert!(!Scheduled.can_move_to(Draft));
        for s in Status::ALL {
            assert_eq!(s.can_move_to(Archived), s != Archived, "{s:?}");
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
