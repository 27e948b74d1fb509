//! Loading the language models for a process, per configuration: the e5
//! embedding model (`ml::Models`) and the sentiment head (`sentiment::Head`,
//! the shipped one or the active retrained version).
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

use crate::{
    Config,
    analysis::{DynModels, Scored, TextModels},
    ml::{self, Output},
    registry::{self, NewVersion, kind},
    sentiment::{self, EmbeddingPrefix, Head, Thresholds},
};

pub type SharedModels = Arc<LoadedModels>;

mod account_heads;

use account_heads::{AccountHeads, Lookup};

pub struct LoadedModels {
    pub embed: ml::Models,
    head: RwLock<Arc<Head>>,
    /// The heads retrained for one account on its own examples; accounts
    /// without one use `head`.
    accounts: AccountHeads,
    /// One head load at a time: a page of messages asks for the same
    /// account's head at once, and it is read from disk or the database once.
    loading: tokio::sync::Mutex<()>,
    /// The platform's active sentiment version as the last registry
    /// refresh read it (loaded or not): what [`Self::follow_registry`]
    /// compares with.
    platform_seen: RwLock<Option<String>>,
}

impl LoadedModels {
    /// The platform's sentiment head.
    pub fn head(&self) -> Arc<Head> {
        self.head
            .read()
            .map(|h| Arc::clone(&h))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// The head that reads `account`'s texts: its own (loaded on first
    /// use), else the platform's.
    pub async fn head_for(&self, db: &DatabaseConnection, account: Uuid) -> Arc<Head> {
        match self.accounts.lookup(account) {
            Lookup::Loaded(head) => return head,
            Lookup::Platform => return self.head(),
            Lookup::Load(_) => {}
        }
        let _one = self.loading.lock().await;
        // Another caller may have loaded it while this one waited.
        let row = match self.accounts.lookup(account) {
            Lookup::Loaded(head) => return head,
            Lookup::Platform => return self.head(),
            Lookup::Load(row) => row,
        };
        match load_head(db, &row).await {
            Ok(head) if !self.reads_loaded_embeddings(&head) => {
                // Trained on the vectors of an earlier model or adapter: its
                // weights mean nothing on these. The account reads with the
                // platform's head until it retrains.
                tracing::warn!(
                    version = head.version(),
                    trained_on = %head.spec().embedding_model,
                    "account sentiment head not used: trained on other embeddings; run RETRAIN_SENTIMENT with accountExamples"
                );
                self.accounts.refuse(&row, true);
                self.head()
            }
            Ok(head) => {
                tracing::info!(version = head.version(), "account sentiment head loaded");
                let head = Arc::new(head);
                self.accounts.insert(&row, Arc::clone(&head));
                head
            }
            Err(e) => {
                tracing::warn!(version = %row.version, error = %e, "account sentiment head cannot be loaded; the shared head reads its texts");
                self.accounts.refuse(&row, false);
                self.head()
            }
        }
    }

    /// Swaps in another sentiment head (a promoted retrain) without a restart.
    pub fn set_head(&self, head: Head) {
        // what the registry names now: no refresh for it at the next use
        if let Ok(mut seen) = self.platform_seen.write() {
            *seen = Some(head.version().to_owned());
        }
        if let Ok(mut h) = self.head.write() {
            *h = Arc::new(head);
        }
    }

    /// Makes `head` (of `row`, just promoted in this process) the one that
    /// reads its account's texts, before the next registry refresh.
    pub fn set_account_head(&self, row: &entity::model_version::Model, head: Head) {
        self.accounts.promote(row, Arc::new(head));
    }

    /// Own account heads in memory now.
    pub fn account_heads_loaded(&self) -> usize {
        self.accounts.loaded()
    }

    /// The models as `account`'s texts are read (its own sentiment head),
    /// as the registry has them now ([`Self::follow_registry`]).
    pub async fn for_account(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        account: Uuid,
    ) -> DynModels {
        if let Err(e) = self.follow_registry(db, account).await {
            tracing::warn!(error = %e, "sentiment registry not read; the heads in memory read");
        }
        Arc::new(AccountModels {
            head: self.head_for(db, account).await,
            models: Arc::clone(self),
        })
    }

    /// Follows the registry: loads the platform's active head if it is not
    /// the one in memory, and learns which version each account reads with
    /// (their heads load on first use; those no longer active leave
    /// memory). A retrain promoted by another process, or an account sent
    /// back to the platform's head, takes effect here.
    ///
    /// # Errors
    /// Database errors; an active platform head that cannot be read.
    pub async fn refresh_heads(&self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let read_at = self.accounts.epoch();
        let active = registry::all_active(db, kind::SENTIMENT).await?;
        let mut accounts = HashMap::new();
        let mut platform = Ok(());
        for row in active {
            match row.account_id {
                None => {
                    if let Ok(mut seen) = self.platform_seen.write() {
                        *seen = Some(row.version.clone());
                    }
                    if row.version != self.head().version() {
                        // Accounts' versions are followed even if this fails.
                        platform = load_head(db, &row).await.map(|head| {
                            tracing::info!(version = head.version(), "sentiment head loaded");
                            self.set_head(head);
                        });
                    }
                }
                Some(a) => {
                    accounts.insert(a, row);
                }
            }
        }
        self.accounts.set_active(accounts, read_at);
        platform
    }

    /// Reads the account's and the platform's active sentiment versions
    /// (one small indexed query) and refreshes the heads when memory has
    /// others: a head promoted, activated or erased by another process
    /// reads this account's texts from now on, not from the next periodic
    /// refresh ([`Self::watch_registry`]). A platform head that failed to
    /// load is not tried again here (the periodic refresh retries it).
    ///
    /// # Errors
    /// Database errors; an active platform head that cannot be read.
    pub async fn follow_registry(
        &self,
        db: &DatabaseConnection,
        account: Uuid,
    ) -> anyhow::Result<()> {
        let rows = registry::active_for(db, kind::SENTIMENT, account).await?;
        let platform = rows.iter().find(|r| r.1.is_none()).map(|r| r.2.as_str());
        let own = rows.iter().find(|r| r.1.is_some()).map(|r| r.0);
        let seen = self.platform_seen.read().ok().and_then(|s| s.clone());
        if platform.is_some_and(|v| seen.as_deref() != Some(v))
            || own != self.accounts.active_id(account)
        {
            self.refresh_heads(db).await?;
        }
        Ok(())
    }

    /// True when `head` was trained on the vectors the loaded model gives.
    fn reads_loaded_embeddings(&self, head: &Head) -> bool {
        self.embed
            .output_model(head.spec().embedding_output)
            .is_ok_and(|m| m == head.spec().embedding_model)
    }

    /// [`Self::refresh_heads`] every `every`, for as long as the process
    /// runs: processes pick up heads that other processes promoted.
    pub fn watch_registry(self: &Arc<Self>, db: DatabaseConnection, every: Duration) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = me.refresh_heads(&db).await {
                    tracing::warn!(error = %e, "sentiment heads not refreshed");
                }
            }
        });
    }

    /// Records the installed models as model versions (once), and loads the
    /// active sentiment head when it is not the one in memory.
    ///
    /// # Errors
    /// Database errors, or an active head file that cannot be read.
    pub async fn sync_registry(&self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let tx = registry::begin_locked(db).await?;
        self.record_versions(&tx).await?;
        tx.commit().await?;
        self.refresh_heads(db).await?;
        let head = self.head();
        let version = self
            .embed
            .output_model(head.spec().embedding_output)
            .unwrap_or("none (no sentiment adapter installed)");
        if head.spec().embedding_model != version {
            // Still usable (the variants' embeddings are close), but its calibration
            // was measured on the other one: retrain to match.
            tracing::warn!(
                head = head.version(),
                trained_on = %head.spec().embedding_model,
                loaded = %version,
                "the sentiment head was trained on other embeddings than the loaded model; run RETRAIN_SENTIMENT"
            );
        }
        Ok(())
    }

    /// Records the installed models (once) and settles which platform
    /// sentiment head is active. Inside the registry's lock.
    async fn record_versions(&self, db: &impl ConnectionTrait) -> anyhow::Result<()> {
        let m = self.embed.manifest();
        let version = self.embed.embedding_model().to_owned();
        let sha = m
            .models
            .values()
            .find(|e| e.version == version)
            .map(|e| e.sha256.clone())
            .unwrap_or_default();
        registry::ensure(
            db,
            NewVersion {
                account_id: None,
                kind: kind::EMBEDDING,
                version: &version,
                path: "models dir",
                sha256: &sha,
                metrics: serde_json::json!({ "dims": self.embed.dims() }),
            },
            true,
        )
        .await?;
        // The description only: `sync_registry` decodes the weights only if
        // the built-in head becomes active while another one is in memory
        // (at start the built-in one already is).
        let shipped = Head::shipped_meta();
        let builtin = registry::ensure(
            db,
            NewVersion {
                account_id: None,
                kind: kind::SENTIMENT,
                version: &shipped.version,
                path: BUILTIN,
                sha256: &shipped.onnx.sha256,
                metrics: sentiment::registry_metrics(&shipped),
            },
            true,
        )
        .await?;
        let active = registry::active(db, kind::SENTIMENT).await?;
        if let Some(a) = &active
            && a.version != shipped.version
            && (a.path == BUILTIN
                || registry::balanced_accuracy(&shipped.metrics)
                    > registry::balanced_accuracy(&a.metrics))
        {
            // An earlier release's built-in head (its weights left with that
            // release), or a retrained head that this release's built-in one
            // beats on the same validation split: the rule retraining follows.
            tracing::info!(
                from = %a.version,
                to = %shipped.version,
                "this release's built-in sentiment head replaces the active one"
            );
            registry::activate(db, builtin.id).await?;
        }
        Ok(())
    }

    /// Each text's `query: ` embedding, its probability of being
    /// positive under `head`, and the vectors `head` read.
    fn embed_and_score_with(&self, head: &Head, texts: &[String]) -> anyhow::Result<Scored> {
        let spec = head.spec();
        if spec.embedding_prefix != EmbeddingPrefix::Query {
            // a head on the other prefix needs a pass of its own
            let head_inputs = sentiment::head_input(&self.embed, spec, texts)?;
            let probs = head.predict(texts, &head_inputs)?;
            let embeddings = self.embed.embed_queries(texts)?;
            return Ok(Scored {
                embeddings,
                probs,
                head_inputs,
            });
        }
        let mut outputs = vec![Output::Embedding];
        if spec.embedding_output != Output::Embedding {
            outputs.push(spec.embedding_output);
        }
        let mut vectors = self.embed.embed_outputs(texts, true, &outputs)?.into_iter();
        let embeddings = vectors.next().unwrap_or_default();
        let head_inputs = vectors.next().unwrap_or_else(|| embeddings.clone());
        let probs = head.predict(texts, &head_inputs)?;
        Ok(Scored {
            embeddings,
            probs,
            head_inputs,
        })
    }

    /// What `head` reads from the loaded encoder: the output's model id
    /// (the adapter's tag included) and the prefix. A new encoder or
    /// adapter changes it, so vectors stored before are not reused.
    fn head_input_key_of(&self, head: &Head) -> String {
        let spec = head.spec();
        let model = self
            .embed
            .output_model(spec.embedding_output)
            .unwrap_or(spec.embedding_model.as_str());
        format!("{model}#{}", spec.embedding_prefix.as_str())
    }
}

/// A recorded head: from its files where this process can read them (the
/// machine that trained it), else from the bytes stored with its row.
async fn load_head(
    db: &DatabaseConnection,
    row: &entity::model_version::Model,
) -> anyhow::Result<Head> {
    if row.path == BUILTIN {
        return Ok(Head::shipped());
    }
    let onnx = std::path::PathBuf::from(&row.path);
    let version = row.version.clone();
    let context = move || format!("active sentiment head {version} cannot be loaded");
    let head = if onnx.exists() {
        tokio::task::spawn_blocking(move || {
            Head::from_files(&onnx, &onnx.with_extension("json")).with_context(context)
        })
        .await??
    } else {
        let (bytes, meta) = registry::load_files(db, row.id)
            .await?
            .with_context(|| format!("{} is missing and its bytes are not stored", row.path))
            .with_context(context.clone())?;
        tokio::task::spawn_blocking(move || Head::from_bytes(bytes, &meta).with_context(context))
            .await??
    };
    anyhow::ensure!(
        head.meta().onnx.sha256 == row.sha256,
        "sentiment head {}: its ONNX sha256 is not the registry's",
        row.version
    );
    Ok(head)
}

/// The models as one account's texts are read: the shared encoder and
/// that account's sentiment head.
struct AccountModels {
    models: SharedModels,
    head: Arc<Head>,
}

impl TextModels for AccountModels {
    fn embedding_model(&self) -> String {
        self.models.embedding_model()
    }
    fn embed_passages(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        self.models.embed_passages(texts)
    }
    fn embed_queries(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        self.models.embed_queries(texts)
    }
    fn embed_and_score(&self, texts: &[String]) -> anyhow::Result<Scored> {
        self.models.embed_and_score_with(&self.head, texts)
    }
    fn head_input_key(&self) -> String {
        self.models.head_input_key_of(&self.head)
    }
    fn score_head_inputs(&self, texts: &[String], inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        self.head.predict(texts, inputs)
    }
    fn sentiment_model(&self) -> String {
        self.head.version().to_owned()
    }
    fn thresholds(&self) -> Thresholds {
        self.head.thresholds()
    }
}

impl TextModels for LoadedModels {
    fn embedding_model(&self) -> String {
        self.embed.embedding_model().to_owned()
    }
    fn embed_passages(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(self.embed.embed_passages(texts)?)
    }
    fn embed_queries(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(self.embed.embed_queries(texts)?)
    }
    fn embed_and_score(&self, texts: &[String]) -> anyhow::Result<Scored> {
        self.embed_and_score_with(&self.head(), texts)
    }
    fn head_input_key(&self) -> String {
        self.head_input_key_of(&self.head())
    }
    fn score_head_inputs(&self, texts: &[String], inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        self.head().predict(texts, inputs)
    }
    fn sentiment_model(&self) -> String {
        self.head().version().to_owned()
    }
    fn thresholds(&self) -> Thresholds {
        self.head().thresholds()
    }
}

/// How often a process looks for sentiment heads promoted elsewhere.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The registry path of the head compiled into this release.
const BUILTIN: &str = "builtin";

/// The models for this process, or `None` with `LINGXI_MODELS=off`.
///
/// # Errors
/// Models are on but missing or corrupt: the message names `make setup`.
pub fn load(cfg: &Config) -> anyhow::Result<Option<SharedModels>> {
    if !cfg.models_enabled {
        tracing::warn!("LINGXI_MODELS=off: no text analysis; personas use the category lexicon");
        return Ok(None);
    }
    let embed = ml::Models::load(&cfg.models_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let head = Head::shipped();
    // Models installed by a setup from before the sentiment adapter: say so
    // now rather than at the first analysis.
    embed.output_model(head.spec().embedding_output)?;
    tracing::info!(
        embedding = embed.embedding_model(),
        sentiment = head.version(),
        "models loaded"
    );
    Ok(Some(Arc::new(LoadedModels {
        embed,
        head: RwLock::new(Arc::new(head)),
        accounts: AccountHeads::new(cfg.account_heads),
        loading: tokio::sync::Mutex::new(()),
        platform_seen: RwLock::new(None),
    })))
}
