//! Accounts' own sentiment heads: which version each account reads with
//! (the registry's rows, cheap) and a bounded set of them in memory,
//! loaded on first use. A head takes ≈ 14 MB once used (its weights, the
//! ONNX bytes and an ONNX Runtime session; `examples/head_mem.rs`), so a platform serving many
//! brands keeps only those whose texts it reads now; the least recently
//! used is dropped first.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use entity::model_version;
use uuid::Uuid;

use crate::sentiment::Head;

/// What an account reads with, as far as memory knows.
pub enum Lookup {
    /// Its own head, in memory.
    Loaded(Arc<Head>),
    /// Its own head, not in memory: load this version.
    Load(model_version::Model),
    /// The platform's head (it has none of its own, or its own cannot be
    /// used).
    Platform,
}

pub struct AccountHeads {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The active own version per account.
    active: HashMap<Uuid, model_version::Model>,
    /// Heads in memory and their last use.
    loaded: HashMap<Uuid, (Arc<Head>, u64)>,
    /// Versions that cannot be used (trained on other embeddings, or that
    /// failed to load): the account reads with the platform's head. Load
    /// failures are tried again after the next registry refresh.
    unusable: HashSet<Uuid>,
    failed: HashSet<Uuid>,
    clock: u64,
    /// Counts promotions in this process; a refresh notes it before reading
    /// the registry.
    epoch: u64,
    /// Accounts promoted in this process, at which epoch: a refresh whose
    /// read began before may not see the promotion yet, and keeps it.
    promoted: HashMap<Uuid, u64>,
}

impl AccountHeads {
    /// At most `capacity` heads in memory (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, account: Uuid) -> Lookup {
        let mut s = self.state();
        let Some(row) = s.active.get(&account).cloned() else {
            return Lookup::Platform;
        };
        if s.unusable.contains(&row.id) || s.failed.contains(&row.id) {
            return Lookup::Platform;
        }
        s.clock += 1;
        let now = s.clock;
        match s.loaded.get_mut(&account) {
            Some((head, used)) if head.version() == row.version => {
                *used = now;
                Lookup::Loaded(Arc::clone(head))
            }
            _ => Lookup::Load(row),
        }
    }

    /// The id of the account's active own version, as memory knows it.
    pub fn active_id(&self, account: Uuid) -> Option<Uuid> {
        self.state().active.get(&account).map(|r| r.id)
    }

    /// Keeps `head`, loaded for `row`, in memory if `row` is still the
    /// account's active version (a refresh may have moved on while it
    /// loaded), dropping the least recently used beyond the capacity.
    pub fn insert(&self, row: &model_version::Model, head: Arc<Head>) {
        let Some(account) = row.account_id else {
            return;
        };
        let mut s = self.state();
        if s.active.get(&account).is_none_or(|a| a.id != row.id) {
            return;
        }
        Self::keep(&mut s, account, head, self.capacity);
    }

    /// `row` was just promoted in this process: it is the account's version
    /// from now on, before the next refresh says so.
    pub fn promote(&self, row: &model_version::Model, head: Arc<Head>) {
        let Some(account) = row.account_id else {
            return;
        };
        let mut s = self.state();
        s.active.insert(account, row.clone());
        s.epoch += 1;
        let epoch = s.epoch;
        s.promoted.insert(account, epoch);
        Self::keep(&mut s, account, head, self.capacity);
    }

    /// To call before reading the registry for [`Self::set_active`].
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    fn keep(s: &mut State, account: Uuid, head: Arc<Head>, capacity: usize) {
        s.clock += 1;
        let now = s.clock;
        s.loaded.insert(account, (head, now));
        while s.loaded.len() > capacity {
            let Some(oldest) = s
                .loaded
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(a, _)| *a)
            else {
                break;
            };
            s.loaded.remove(&oldest);
        }
    }

    /// The version cannot be used; with `for_good`, not until it is no
    /// longer active (else until the next refresh).
    pub fn refuse(&self, row: &model_version::Model, for_good: bool) {
        let mut s = self.state();
        if for_good {
            s.unusable.insert(row.id);
        } else {
            s.failed.insert(row.id);
        }
    }

    /// The registry's active own versions, as read after [`Self::epoch`]
    /// gave `read_at`: heads of versions no longer active leave memory,
    /// except promotions in this process the read may have missed.
    pub fn set_active(&self, mut active: HashMap<Uuid, model_version::Model>, read_at: u64) {
        let mut s = self.state();
        s.promoted.retain(|_, e| *e > read_at);
        for a in s.promoted.keys() {
            if let Some(row) = s.active.get(a) {
                active.insert(*a, row.clone());
            }
        }
        s.loaded.retain(|a, (head, _)| {
            let keep = active.get(a).is_some_and(|r| r.version == head.version());
            if !keep {
                tracing::info!(version = head.version(), "account sentiment head retired");
            }
            keep
        });
        let ids: HashSet<Uuid> = active.values().map(|r| r.id).collect();
        s.unusable.retain(|id| ids.contains(id));
        s.failed.clear();
        s.active = active;
    }

    /// Heads in memory now.
    pub fn loaded(&self) -> usize {
        self.state().loaded.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: Uuid, version: &str) -> model_version::Model {
        model_version::Model {
            id: Uuid::now_v7(),
            account_id: Some(account),
            kind: "SENTIMENT".into(),
            version: version.into(),
            path: "builtin".into(),
            sha256: String::new(),
            metrics: serde_json::json!({}),
            active: true,
            created_at: chrono::Utc::now(),
        }
    }

    /// The shipped head under another version name.
    fn head(version: &str) -> Arc<Head> {
        let shipped = Head::shipped();
        let mut meta = shipped.meta().clone();
        meta.version = version.into();
        Arc::new(
            Head::from_bytes(
                shipped.onnx_bytes().to_vec(),
                &serde_json::to_string(&meta).unwrap(),
            )
            .unwrap(),
        )
    }

    fn is_loaded(l: &Lookup, version: &str) -> bool {
        matches!(l, Lookup::Loaded(h) if h.version() == version)
    }

    #[test]
    fn only_the_most_recently_used_heads_stay_in_memory() {
        let heads = AccountHeads::new(2);
        let (a, b, c, none) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let rows: HashMap<Uuid, model_version::Model> =
            [(a, row(a, "a1")), (b, row(b, "b1")), (c, row(c, "c1"))].into();
        heads.set_active(rows.clone(), heads.epoch());
        assert!(matches!(heads.lookup(none), Lookup::Platform));
        assert!(matches!(heads.lookup(a), Lookup::Load(r) if r.version == "a1"));
        heads.insert(&rows[&a], head("a1"));
        heads.insert(&rows[&b], head("b1"));
        assert!(is_loaded(&heads.lookup(a), "a1")); // a is now the most recent
        heads.insert(&rows[&c], head("c1"));
        assert_eq!(heads.loaded(), 2);
        assert!(is_loaded(&heads.lookup(a), "a1"));
        assert!(is_loaded(&heads.lookup(c), "c1"));
        assert!(
            matches!(heads.lookup(b), Lookup::Load(_)),
            "b was least recently used"
        );
    }

    #[test]
    fn a_new_version_or_none_replaces_what_is_in_memory() {
        let heads = AccountHeads::new(4);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (a1, b1) = (row(a, "a1"), row(b, "b1"));
        heads.set_active([(a, a1.clone()), (b, b1.clone())].into(), heads.epoch());
        heads.insert(&a1, head("a1"));
        heads.insert(&b1, head("b1"));
        // a retrained elsewhere, b back to the platform's head
        let a2 = row(a, "a2");
        heads.set_active([(a, a2.clone())].into(), heads.epoch());
        assert_eq!(heads.loaded(), 0);
        assert!(matches!(heads.lookup(a), Lookup::Load(r) if r.version == "a2"));
        assert!(matches!(heads.lookup(b), Lookup::Platform));
        // a load that finishes after a refresh moved on is not kept
        heads.insert(&row(a, "a1"), head("a1"));
        assert!(matches!(heads.lookup(a), Lookup::Load(r) if r.version == "a2"));
        // promoted in this process: used at once, before any refresh
        let a3 = row(a, "a3");
        heads.promote(&a3, head("a3"));
        assert!(is_loaded(&heads.lookup(a), "a3"));
    }

    #[test]
    fn a_refresh_that_read_before_a_promotion_keeps_it() {
        let heads = AccountHeads::new(4);
        let a = Uuid::now_v7();
        let (a1, a2) = (row(a, "a1"), row(a, "a2"));
        heads.set_active([(a, a1.clone())].into(), heads.epoch());
        let before = heads.epoch(); // a refresh starts reading: a1
        heads.promote(&a2, head("a2")); // this process promotes a2
        heads.set_active([(a, a1.clone())].into(), before);
        assert!(is_loaded(&heads.lookup(a), "a2"));
        // a refresh that began after the promotion is the registry's word
        heads.set_active([(a, a1.clone())].into(), heads.epoch());
        assert!(matches!(heads.lookup(a), Lookup::Load(r) if r.version == "a1"));
    }

    #[test]
    fn an_unusable_version_reads_with_the_platform_head() {
        let heads = AccountHeads::new(4);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let (a1, b1) = (row(a, "a1"), row(b, "b1"));
        heads.set_active([(a, a1.clone()), (b, b1.clone())].into(), heads.epoch());
        heads.refuse(&a1, true);
        heads.refuse(&b1, false);
        assert!(matches!(heads.lookup(a), Lookup::Platform));
        assert!(matches!(heads.lookup(b), Lookup::Platform));
        // a refresh tries a failed load again, not a refused version
        heads.set_active([(a, a1.clone()), (b, b1.clone())].into(), heads.epoch());
        assert!(matches!(heads.lookup(a), Lookup::Platform));
        assert!(matches!(heads.lookup(b), Lookup::Load(_)));
    }
}
