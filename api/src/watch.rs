//! One change watcher per process for the rows that subscriptions follow.
//!
//! Every open `jobUpdated` / `campaignUpdated` subscription registers the
//! row it follows here. A single task reads `(id, updated_at)` of all
//! watched rows once per tick, in chunks, and wakes only the subscriptions
//! whose row changed; they then re-read their row, tenant-scoped. So the
//! database sees one narrow query per table and tick whatever the number of
//! subscribers, instead of one full-row read per subscriber. Polling rather
//! than an in-process signal because the writers may be other processes
//! (`worker` binaries on PostgreSQL). The task starts with the first watch
//! and stops when the last one is dropped.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::{campaign, job_run};
use futures::{Stream, stream};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::watch;
use uuid::Uuid;

/// How often the watched rows are read: the latency of a subscription.
pub const EVERY: Duration = Duration::from_millis(250);

/// Rows per `IN (...)` list: well under SQLite's bound-parameter limit.
const CHUNK: usize = 500;

/// The tables whose rows can be watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    JobRun,
    Campaign,
}

/// What the watcher last saw of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not read yet.
    Unknown,
    /// Present, last written at (None for rows older than the column).
    At(Option<DateTime<Utc>>),
    /// No longer there.
    Gone,
}

struct Slot {
    tx: watch::Sender<Seen>,
    watchers: usize,
}

#[derive(Default)]
struct State {
    slots: HashMap<(Table, Uuid), Slot>,
    running: bool,
}

struct Inner {
    db: DatabaseConnection,
    every: Duration,
    state: Mutex<State>,
    queries: AtomicU64,
}

/// Cheap to clone; all clones share one task.
#[derive(Clone)]
pub struct RowWatcher(Arc<Inner>);

/// A registration: `changed()` resolves when the row was written (or
/// removed) since the last call. Dropping it unregisters.
pub struct Watch {
    rx: watch::Receiver<Seen>,
    key: (Table, Uuid),
    owner: Arc<Inner>,
}

impl Watch {
    /// Waits for the next change and returns what was seen; `None` when
    /// the watcher is gone (the process is shutting down).
    pub async fn changed(&mut self) -> Option<Seen> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut st = lock(&self.owner.state);
        if let Some(slot) = st.slots.get_mut(&self.key) {
            slot.watchers -= 1;
            if slot.watchers == 0 {
                st.slots.remove(&self.key);
            }
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The state stays consistent across a panic (plain map updates).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RowWatcher {
    pub fn new(db: DatabaseConnection, every: Duration) -> Self {
        Self(Arc::new(Inner {
            db,
            every,
            state: Mutex::new(State::default()),
            queries: AtomicU64::new(0),
        }))
    }

    /// Follows one row. Register before the first read of the row, so a
    /// write between that read and the first tick is not missed.
    pub fn watch(&self, table: Table, id: Uuid) -> Watch {
        let key = (table, id);
        let mut st = lock(&self.0.state);
        let slot = st.slots.entry(key).or_insert_with(|| Slot {
            tx: watch::channel(Seen::Unknown).0,
            watchers: 0,
        });
        slot.watchers += 1;
        let rx = slot.tx.subscribe();
        if !st.running {
            st.running = true;
            let inner = Arc::clone(&self.0);
            tokio::spawn(async move { run(inner).await });
        }
        Watch {
            rx,
            key,
            owner: Arc::clone(&self.0),
        }
    }

    /// Rows currently followed (for `/metrics`).
    pub fn watched(&self) -> usize {
        lock(&self.0.state).slots.len()
    }

    /// Queries issued since start (for `/metrics`).
    pub fn queries(&self) -> u64 {
        self.0.queries.load(Ordering::Relaxed)
    }

    /// One pass over every watched row; what the task runs each tick.
    ///
    /// # Errors
    /// Database errors (the task logs them and tries again next tick).
    pub async fn tick(&self) -> Result<(), DbErr> {
        tick(&self.0).await
    }
}

/// The row now, then again whenever it changed in what `key` picks out;
/// ends after a row for which `is_final` holds, or after an error (the
/// row is gone or the database is unreachable).
pub fn follow<T, K, E, R, Fut>(
    watch: Watch,
    read: R,
    key: fn(&T) -> K,
    is_final: fn(&T) -> bool,
) -> impl Stream<Item = Result<T, E>> + Send + 'static
where
    T: Send + 'static,
    K: PartialEq + Send + 'static,
    E: Send + 'static,
    R: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
{
    struct St<K, R> {
        watch: Watch,
        read: R,
        last: Option<K>,
        done: bool,
    }
    let start = St {
        watch,
        read,
        last: None,
        done: false,
    };
    stream::unfold(start, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.last.is_some() {
                st.watch.changed().await?;
            }
            match (st.read)().await {
                Ok(row) => {
                    let k = key(&row);
                    if st.last.as_ref() != Some(&k) {
                        st.last = Some(k);
                        st.done = is_final(&row);
                        return Some((Ok(row), st));
                    }
                }
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
    })
}

async fn run(inner: Arc<Inner>) {
    // Logged when reads start and stop failing, not four times a second.
    let mut failing = false;
    loop {
        tokio::time::sleep(inner.every).await;
        {
            let mut st = lock(&inner.state);
            if st.slots.is_empty() {
                st.running = false;
                return;
            }
        }
        match tick(&inner).await {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "subscription watcher cannot read its rows; retrying");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("subscription watcher reads its rows again");
            }
            _ => {}
        }
    }
}

async fn tick(inner: &Inner) -> Result<(), DbErr> {
    for table in [Table::JobRun, Table::Campaign] {
        let ids: Vec<Uuid> = lock(&inner.state)
            .slots
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| *id)
            .collect();
        for chunk in ids.chunks(CHUNK) {
            inner.queries.fetch_add(1, Ordering::Relaxed);
            let found: HashMap<Uuid, Option<DateTime<Utc>>> = match table {
                Table::JobRun => job_run::Entity::find()
                    .select_only()
                    .column(job_run::Column::Id)
                    .column(job_run::Column::UpdatedAt)
                    .filter(job_run::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<(Uuid, Option<DateTime<Utc>>)>()
                    .all(&inner.db)
                    .await?
                    .into_iter()
                    .collect(),
                Table::Campaign => campaign::Entity::find()
                    .select_only()
                    .column(campaign::Column::Id)
                    .column(campaign::Column::UpdatedAt)
                    .filter(campaign::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<(Uuid, DateTime<Utc>)>()
                    .all(&inner.db)
                    .await?
                    .into_iter()
                    .map(|(id, at)| (id, Some(at)))
                    .collect(),
            };
            let st = lock(&inner.state);
            for id in chunk {
                let Some(slot) = st.slots.get(&(table, *id)) else {
                    continue; // unwatched meanwhile
                };
                let now = found.get(id).map_or(Seen::Gone, |at| Seen::At(*at));
                slot.tx.send_if_modified(|seen| {
                    let changed = *seen != now;
                    *seen = now;
                    changed
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use migration::MigratorTrait;
    use sea_orm::{ActiveModelTrait, ConnectOptions, Database, Set};

    async fn db() -> DatabaseConnection {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        // One connection: every connection to :memory: is its own database.
        opts.max_connections(1).sqlx_logging(false);
        let db = Database::connect(opts).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        db
    }

    async fn job(db: &DatabaseConnection, account: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let now = Utc::now();
        job_run::ActiveModel {
            id: Set(id),
            account_id: Set(account),
            kind: Set("BUILD_PERSONAS".into()),
            status: Set("QUEUED".into()),
            params: Set(serde_json::json!({})),
            result: Set(None),
            error: Set(None),
            progress: Set(0.0),
            attempts: Set(0),
            run_at: Set(now),
            created_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            max_attempts: Set(3),
            schedule_key: Set(None),
            updated_at: Set(Some(now)),
            staged: Set(false),
            heartbeat_at: Set(None),
        }
        .insert(db)
        .await
        .unwrap();
        id
    }

    async fn touch(db: &DatabaseConnection, id: Uuid, secs: i64) {
        job_run::ActiveModel {
            id: Set(id),
            updated_at: Set(Some(Utc::now() + TimeDelta::seconds(secs))),
            ..Default::default()
        }
        .update(db)
        .await
        .unwrap();
    }

    /// Whether `w` has a change waiting, without blocking.
    fn pending(w: &Watch) -> bool {
        w.rx.has_changed().unwrap()
    }

    #[tokio::test]
    async fn wakes_only_the_watchers_of_a_changed_row_with_one_query_per_tick() {
        let db = db().await;
        let account = Uuid::now_v7();
        entity::account::ActiveModel {
            id: Set(account),
            name: Set("t".into()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        let ids = [job(&db, account).await, job(&db, account).await];
        // A long interval: the test drives the ticks itself.
        let watcher = RowWatcher::new(db.clone(), Duration::from_secs(3600));
        let mut a1 = watcher.watch(Table::JobRun, ids[0]);
        let mut a2 = watcher.watch(Table::JobRun, ids[0]);
        let mut b = watcher.watch(Table::JobRun, ids[1]);
        let mut missing = watcher.watch(Table::JobRun, Uuid::now_v7());
        assert_eq!(watcher.watched(), 3);

        watcher.tick().await.unwrap();
        assert_eq!(watcher.queries(), 1, "one query for all watched job rows");
        // The first sight of each row counts as a change (the subscriber
        // re-reads and compares).
        assert!(matches!(a1.changed().await, Some(Seen::At(Some(_)))));
        assert!(matches!(b.changed().await, Some(Seen::At(Some(_)))));
        assert_eq!(missing.changed().await, Some(Seen::Gone));
        a2.changed().await.unwrap();

        touch(&db, ids[0], 1).await;
        watcher.tick().await.unwrap();
        assert_eq!(watcher.queries(), 2);
        assert!(
            pending(&a1) && pending(&a2),
            "both watchers of the row wake"
        );
        assert!(!pending(&b), "an unchanged row does not wake its watcher");
        assert!(!pending(&missing), "still gone is no change");

        drop(a1);
        drop(a2);
        assert_eq!(watcher.watched(), 2, "the last watcher's drop unregisters");
        drop(b);
        drop(missing);
        watcher.tick().await.unwrap();
        assert_eq!(watcher.queries(), 2, "nothing watched, nothing read");
    }

    #[tokio::test]
    async fn many_rows_are_read_in_chunks_and_tables_apart() {
        let db = db().await;
        let watcher = RowWatcher::new(db, Duration::from_secs(3600));
        let mut jobs: Vec<Watch> = (0..CHUNK * 2 + 1)
            .map(|_| watcher.watch(Table::JobRun, Uuid::now_v7()))
            .collect();
        let mut campaign = watcher.watch(Table::Campaign, Uuid::now_v7());
        watcher.tick().await.unwrap();
        assert_eq!(
            watcher.queries(),
            3 + 1,
            "three chunks of job rows, one of campaigns"
        );
        for w in &mut jobs {
            assert_eq!(w.changed().await, Some(Seen::Gone));
        }
        assert_eq!(campaign.changed().await, Some(Seen::Gone));
    }
}
