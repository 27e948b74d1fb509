//! The model runtime: loads the models listed in `manifest.json`, keeps
//! ONNX Runtime sessions for the life of the process, and embeds texts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use tokenizers::Tokenizer;

use super::e5;
use super::manifest::{self, Entry, Manifest};
use super::windows;

/// The command that installs or repairs the models.
pub const FIX: &str = "make setup";

/// Errors of the model runtime. The first three mean the models directory
/// is not as `make setup` leaves it; their message says so.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Nothing (or not everything) installed.
    #[error(
        "models are not installed in {dir}: {detail}; run `make setup` (scripts/setup.sh) to install them"
    )]
    NotInstalled { dir: PathBuf, detail: String },
    /// A file is there but is not the file the manifest describes.
    #[error(
        "model file {path} is corrupt or out of date ({detail}); run `make setup` to reinstall it"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The ONNX Runtime shared library cannot be loaded.
    #[error(
        "cannot load the ONNX Runtime library {path}: {detail}; run `make setup` to reinstall it"
    )]
    RuntimeLibrary { path: PathBuf, detail: String },
    /// A `LINGXI_*` model setting does not parse.
    #[error("invalid model setting: {0}")]
    Config(String),
    /// ONNX Runtime failed to create a session or to run one.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl ModelError {
    /// True for the errors that `make setup` fixes.
    pub fn needs_setup(&self) -> bool {
        matches!(
            self,
            ModelError::NotInstalled { .. }
                | ModelError::Corrupt { .. }
                | ModelError::RuntimeLibrary { .. }
        )
    }
}

fn rt<E: std::fmt::Display>(e: E) -> ModelError {
    ModelError::Runtime(e.to_string())
}

/// Which e5 graph to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingVariant {
    /// Int8 weights through `MatMulInteger` (default: smaller, faster).
    Int8,
    /// Fp32 weights (the reference).
    Fp32,
}

impl EmbeddingVariant {
    pub fn manifest_key(self) -> &'static str {
        match self {
            EmbeddingVariant::Int8 => manifest::E5_INT8,
            EmbeddingVariant::Fp32 => manifest::E5_FP32,
        }
    }
}

impl std::str::FromStr for EmbeddingVariant {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "int8" => Ok(EmbeddingVariant::Int8),
            "fp32" => Ok(EmbeddingVariant::Fp32),
            other => Err(ModelError::Config(format!(
                "LINGXI_EMBEDDING_VARIANT={other:?}: expected int8 or fp32"
            ))),
        }
    }
}

/// Runtime knobs; [`Options::from_env`] reads them from `LINGXI_*`.
#[derive(Clone, Debug)]
pub struct Options {
    /// `LINGXI_EMBEDDING_VARIANT`: `int8` (default) or `fp32`.
    pub variant: EmbeddingVariant,
    /// `LINGXI_ORT_THREADS`: ONNX Runtime intra-op threads for the whole
    /// process (one global pool shared by every session); default 2, or 1
    /// on a one-core machine. Fixed by the first `Models::load` of the
    /// process.
    pub threads: usize,
    /// `LINGXI_ORT_SESSIONS`: sessions kept per model, i.e. batches that can
    /// run at once (default 1; each session holds its own weights).
    pub sessions: usize,
    /// `LINGXI_EMBED_BATCH`: texts per ONNX Runtime call (default 32).
    pub batch_size: usize,
    /// `LINGXI_ORT_SPIN=1`: let idle ONNX Runtime threads spin (a little
    /// faster under constant load, burns CPU otherwise; default off).
    /// Fixed by the first load of the process, like `threads`.
    pub spin: bool,
}

impl Default for Options {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Options {
            variant: EmbeddingVariant::Int8,
            threads: cores.clamp(1, 2),
            sessions: 1,
            batch_size: 32,
            spin: false,
        }
    }
}

fn env_usize(name: &str, default: usize) -> Result<usize, ModelError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ModelError::Config(format!(
                "{name}={v:?}: expected a positive integer"
            ))),
        },
        _ => Ok(default),
    }
}

impl Options {
    pub fn from_env() -> Result<Options, ModelError> {
        let d = Options::default();
        let variant = match std::env::var("LINGXI_EMBEDDING_VARIANT") {
            Ok(v) if !v.trim().is_empty() => v.parse()?,
            _ => d.variant,
        };
        Ok(Options {
            variant,
            threads: env_usize("LINGXI_ORT_THREADS", d.threads)?,
            sessions: env_usize("LINGXI_ORT_SESSIONS", d.sessions)?,
            batch_size: env_usize("LINGXI_EMBED_BATCH", d.batch_size)?,
            spin: match std::env::var("LINGXI_ORT_SPIN").as_deref().map(str::trim) {
                Err(_) | Ok("" | "0" | "false" | "no" | "off") => false,
                Ok("1" | "true" | "yes" | "on") => true,
                Ok(v) => {
                    return Err(ModelError::Config(format!(
                        "LINGXI_ORT_SPIN={v:?}: expected 0 or 1"
                    )));
                }
            },
        })
    }
}

/// Upper bound on `batch × padded length` per call, so a batch of long
/// texts does not allocate huge attention tensors.
const MAX_BATCH_TOKENS: usize = 16 * 512;

// ONNX Runtime allows one environment per process, and `ort` refuses to
// build a second one even after the first is dropped: keep it forever.
static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static ENV_INIT: Mutex<()> = Mutex::new(());

/// This process's ONNX Runtime environment (ONNX Runtime allows one per
/// process), created on first use from the `libonnxruntime` listed in
/// `dir`'s manifest (sha256-checked) with one global intra-op thread pool
/// of `LINGXI_ORT_THREADS` threads. [`Models::load`] uses the same one, so
/// other sessions (the trained heads) share its library and threads:
/// `Session::builder(ml::environment(dir)?)`.
///
/// # Errors
/// As [`Models::load`] for the library; [`ModelError::Runtime`] if ONNX
/// Runtime refuses (e.g. another environment was built outside `ml`).
pub fn environment(dir: &Path) -> Result<&'static ort::environment::Environment, ModelError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let manifest = read_manifest(dir)?;
    let lib = checked(&manifest, dir, manifest::ORT_LIB)?.path(dir);
    environment_from_lib(&lib, &Options::from_env()?)
}

fn environment_from_lib(
    lib: &Path,
    opts: &Options,
) -> Result<&'static ort::environment::Environment, ModelError> {
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let _guard = ENV_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let builder = ort::init_from(lib).map_err(|e| ModelError::RuntimeLibrary {
        path: lib.to_owned(),
        detail: e.to_string(),
    })?;
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(opts.threads)
        .and_then(|p| p.with_inter_threads(1))
        .and_then(|p| p.with_spin_control(opts.spin))
        .map_err(rt)?;
    let env = builder
        .with_name("lingxi")
        .with_telemetry(false)
        .with_global_thread_pool(pool)
        .build()
        .map_err(rt)?;
    Ok(ENV.get_or_init(|| env))
}

thread_local! {
    static INTERACTIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (on this thread) with the encoder batches it runs ahead of
/// those of jobs: someone waits for the answer (`analyzeText`, a segment
/// preview's similar-to text). A batch that runs is not interrupted, so
/// such a call waits for one job batch at most, not for the job.
pub fn interactive<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            INTERACTIVE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(INTERACTIVE.with(|c| c.replace(true)));
    f()
}

/// Sessions of one model; `Session::run` needs `&mut`, so each call takes
/// one out and puts it back. Interactive calls ([`interactive`]) take the
/// next free session before any job's batch.
struct Pool<S = Session> {
    state: Mutex<PoolState<S>>,
    ready: Condvar,
}

struct PoolState<S> {
    idle: Vec<S>,
    /// Callers waiting for a session, interactive and not.
    interactive_waiting: usize,
    batch_waiting: usize,
    /// Sessions given to interactive calls in a row while a job's batch
    /// waited.
    streak: usize,
}

/// Interactive batches in a row, at most, while a job's batch waits: a
/// steady stream of `analyzeText` calls slows jobs down but cannot stop
/// them.
const MAX_STREAK: usize = 4;

struct Lease<'a, S = Session> {
    pool: &'a Pool<S>,
    session: Option<S>,
}

impl<S> Pool<S> {
    fn new(sessions: Vec<S>) -> Self {
        Self {
            state: Mutex::new(PoolState {
                idle: sessions,
                interactive_waiting: 0,
                batch_waiting: 0,
                streak: 0,
            }),
            ready: Condvar::new(),
        }
    }

    fn take(&self) -> Lease<'_, S> {
        let interactive = INTERACTIVE.with(std::cell::Cell::get);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if interactive {
            st.interactive_waiting += 1;
        } else {
            st.batch_waiting += 1;
        }
        loop {
            let my_turn = if interactive {
                st.batch_waiting == 0 || st.streak < MAX_STREAK
            } else {
                st.interactive_waiting == 0 || st.streak >= MAX_STREAK
            };
            if my_turn && let Some(s) = st.idle.pop() {
                if interactive {
                    st.interactive_waiting -= 1;
                    st.streak = if st.batch_waiting > 0 {
                        st.streak + 1
                    } else {
                        0
                    };
                } else {
                    st.batch_waiting -= 1;
                    st.streak = 0;
                }
                return Lease {
                    pool: self,
                    session: Some(s),
                };
            }
            st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<S> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .idle
                .push(s);
            // all: a job's batch woken alone would wait again while an
            // interactive call waits, and nobody would take the session
            self.pool.ready.notify_all();
        }
    }
}

/// A vector the e5 graph computes per text. Serialised (in a sentiment
/// head's feature spec) as `embedding` / `sentiment`; heads written before
/// the adapter have none and read `embedding`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// `sentence_embedding`: e5's own embedding (search, personas).
    #[default]
    Embedding,
    /// `sentiment_embedding`: the same text through the sentiment adapter
    /// on the top layers (the sentiment head's input).
    Sentiment,
}

impl Output {
    fn graph_name(self) -> &'static str {
        match self {
            Output::Embedding => e5::OUTPUT,
            Output::Sentiment => e5::SENTIMENT_OUTPUT,
        }
    }
}

struct Inner {
    dir: PathBuf,
    manifest: Manifest,
    model_id: String,
    /// Model id of the `sentiment_embedding` output, when the graph has it.
    sentiment_model: Option<String>,
    dims: usize,
    pad_id: i64,
    batch_size: usize,
    /// The encoder's window (512 for e5).
    max_tokens: usize,
    tokenizer: Tokenizer,
    pool: Pool,
}

/// The loaded models. Cheap to clone (an `Arc`); share one per process.
///
/// The embedding calls are synchronous and CPU-bound: from async code call
/// them inside `tokio::task::spawn_blocking`, or use the `*_async`
/// wrappers which do exactly that.
#[derive(Clone)]
pub struct Models {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("dir", &self.inner.dir)
            .field("embedding_model", &self.inner.model_id)
            .finish()
    }
}

fn entry<'m>(m: &'m Manifest, dir: &Path, key: &str) -> Result<&'m Entry, ModelError> {
    m.models.get(key).ok_or_else(|| ModelError::NotInstalled {
        dir: dir.to_owned(),
        detail: format!("manifest.json has no entry {key:?}"),
    })
}

fn checked<'m>(m: &'m Manifest, dir: &Path, key: &str) -> Result<&'m Entry, ModelError> {
    let e = entry(m, dir, key)?;
    e.check(dir).map_err(|problem| match problem {
        manifest::FileProblem::Missing => ModelError::NotInstalled {
            dir: dir.to_owned(),
            detail: format!("{} is missing", e.file),
        },
        other => ModelError::Corrupt {
            path: e.path(dir),
            detail: other.to_string(),
        },
    })?;
    Ok(e)
}

fn read_manifest(dir: &Path) -> Result<Manifest, ModelError> {
    let manifest = match Manifest::read(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::NotInstalled {
                dir: dir.to_owned(),
                detail: format!("no {}", manifest::FILE_NAME),
            });
        }
        Err(e) => {
            return Err(ModelError::Corrupt {
                path: dir.join(manifest::FILE_NAME),
                detail: e.to_string(),
            });
        }
    };
    if manifest.format != manifest::FORMAT {
        return Err(ModelError::NotInstalled {
            dir: dir.to_owned(),
            detail: format!(
                "manifest format {} but this build reads format {}",
                manifest.format,
                manifest::FORMAT
            ),
        });
    }
    Ok(manifest)
}

impl Models {
    /// Loads the models in `dir` with the settings from the environment
    /// ([`Options::from_env`]).
    ///
    /// # Errors
    /// [`ModelError::NotInstalled`] / [`ModelError::Corrupt`] /
    /// [`ModelError::RuntimeLibrary`] when `make setup` has not run or a
    /// file does not match `manifest.json` (sha256 checked here);
    /// [`ModelError::Config`] for a bad `LINGXI_*` value.
    pub fn load(dir: &Path) -> Result<Models, ModelError> {
        Models::load_with(dir, &Options::from_env()?)
    }

    /// [`Models::load`] with explicit options.
    pub fn load_with(dir: &Path, opts: &Options) -> Result<Models, ModelError> {
        let manifest = read_manifest(dir)?;
        let lib = checked(&manifest, dir, manifest::ORT_LIB)?.path(dir);
        let tok_entry = checked(&manifest, dir, manifest::TOKENIZER)?;
        let model = checked(&manifest, dir, opts.variant.manifest_key())?.clone();

        let env = environment_from_lib(&lib, opts)?;

        let mut tokenizer =
            Tokenizer::from_file(tok_entry.path(dir)).map_err(|e| ModelError::Corrupt {
                path: tok_entry.path(dir),
                detail: e.to_string(),
            })?;
        let max_tokens = model
            .params
            .get("max_tokens")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(512) as usize;
        // No truncation: longer texts are embedded in windows (`windows`).
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let pad_id = model
            .params
            .get("pad_id")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(1);

        let mut sessions = Vec::with_capacity(opts.sessions);
        for _ in 0..opts.sessions {
            let s = Session::builder(env)
                .map_err(rt)?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(rt)?
                .commit_from_file(model.path(dir))
                .map_err(|e| ModelError::Corrupt {
                    path: model.path(dir),
                    detail: format!("ONNX Runtime cannot load it: {e}"),
                })?;
            sessions.push(s);
        }
        let sentiment_model = model
            .outputs
            .iter()
            .any(|t| t.name == e5::SENTIMENT_OUTPUT)
            .then(|| model.params.get("sentiment_model"))
            .flatten()
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Models {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                model_id: model.version.clone(),
                sentiment_model,
                dims: model.dims.unwrap_or(384),
                pad_id,
                batch_size: opts.batch_size.max(1),
                max_tokens: max_tokens.max(8),
                manifest,
                tokenizer,
                pool: Pool::new(sessions),
            }),
        })
    }

    /// Embeds documents ("passage: " is prepended here): one L2-normalised
    /// vector of [`Models::dims`] floats per text, in input order.
    pub fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed_one(texts, "passage: ", Output::Embedding)
    }

    /// Embeds search queries ("query: " is prepended here).
    pub fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed_one(texts, "query: ", Output::Embedding)
    }

    /// Computes `outputs` for `texts` in one pass of the encoder (the
    /// layers below the adapter run once): `result[o][i]` is output
    /// `outputs[o]` of `texts[i]`, L2-normalised. `query` picks the
    /// "query: " prefix, else "passage: ".
    ///
    /// # Errors
    /// As [`Models::output_model`] for an output the graph lacks.
    pub fn embed_outputs(
        &self,
        texts: &[String],
        query: bool,
        outputs: &[Output],
    ) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        for &o in outputs {
            self.output_model(o)?;
        }
        self.embed(texts, if query { "query: " } else { "passage: " }, outputs)
    }

    fn embed_one(
        &self,
        texts: &[String],
        prefix: &str,
        output: Output,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self
            .embed(texts, prefix, &[output])?
            .pop()
            .unwrap_or_default())
    }

    /// [`Models::embed_passages`] on the blocking thread pool.
    pub async fn embed_passages_async(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let m = self.clone();
        tokio::task::spawn_blocking(move || m.embed_passages(&texts))
            .await
            .map_err(|e| ModelError::Runtime(format!("embedding task failed: {e}")))?
    }

    /// [`Models::embed_queries`] on the blocking thread pool.
    pub async fn embed_queries_async(
        &self,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let m = self.clone();
        tokio::task::spawn_blocking(move || m.embed_queries(&texts))
            .await
            .map_err(|e| ModelError::Runtime(format!("embedding task failed: {e}")))?
    }

    /// The embedding model's identity, stored next to vectors so a model
    /// change is detectable: e.g. `multilingual-e5-small-int8@1`.
    pub fn embedding_model(&self) -> &str {
        &self.inner.model_id
    }

    /// The id of [`Output::Sentiment`] (e.g.
    /// `multilingual-e5-small-int8@1+lora-dc23ead7`), `None` when the
    /// installed graph has no sentiment adapter.
    pub fn sentiment_model(&self) -> Option<&str> {
        self.inner.sentiment_model.as_deref()
    }

    /// The id of `output`'s vectors.
    ///
    /// # Errors
    /// [`ModelError::NotInstalled`] (names `make setup`) for
    /// [`Output::Sentiment`] from a graph without the adapter, i.e. one
    /// installed by an older setup.
    pub fn output_model(&self, output: Output) -> Result<&str, ModelError> {
        match output {
            Output::Embedding => Ok(self.embedding_model()),
            Output::Sentiment => self.sentiment_model().ok_or_else(|| ModelError::NotInstalled {
                dir: self.inner.dir.clone(),
                detail: format!(
                    "the embedding graph has no {} output (installed before the sentiment adapter)",
                    e5::SENTIMENT_OUTPUT
                ),
            }),
        }
    }

    /// Embedding dimensions (384).
    pub fn dims(&self) -> usize {
        self.inner.dims
    }

    /// The models directory this was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The manifest this was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// A session for another ONNX graph (e.g. a head exported with
    /// [`super::onnx::Graph`]) in the same ONNX Runtime environment and
    /// thread pool. `Session::run` takes `&mut self`: keep it behind a
    /// `Mutex` to share it.
    pub fn session_from_memory(&self, onnx: &[u8]) -> Result<Session, ModelError> {
        let env = ENV
            .get()
            .ok_or_else(|| ModelError::Runtime("no environment".into()))?;
        Session::builder(env)
            .map_err(rt)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(rt)?
            .commit_from_memory(onnx)
            .map_err(rt)
    }

    /// Token count (with `<s>`/`</s>`) of `prefix + text`; texts over
    /// [`Models::max_tokens`] are embedded in windows of that size.
    pub fn token_count(&self, text: &str, query: bool) -> Result<usize, ModelError> {
        let prefix = if query { "query: " } else { "passage: " };
        let enc = self
            .inner
            .tokenizer
            .encode_fast(format!("{prefix}{text}"), true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.len())
    }

    fn embed(
        &self,
        texts: &[String],
        prefix: &str,
        outputs: &[Output],
    ) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        if texts.is_empty() || outputs.is_empty() {
            return Ok(vec![Vec::new(); outputs.len()]);
        }
        // Identical texts are embedded once.
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(texts.len());
        let mut unique: Vec<String> = Vec::new();
        let slots: Vec<usize> = texts
            .iter()
            .map(|t| {
                *seen.entry(t.as_str()).or_insert_with(|| {
                    unique.push(format!("{prefix}{t}"));
                    unique.len() - 1
                })
            })
            .collect();
        let encodings = self
            .inner
            .tokenizer
            .encode_batch_fast(unique, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // Each unique text becomes one sequence, or several windows when it
        // is longer than the encoder's window (the prefix's ids are needed
        // only then).
        let mut prefix_ids: Option<Vec<u32>> = None;
        let mut seqs: Vec<std::borrow::Cow<'_, [u32]>> = Vec::with_capacity(encodings.len());
        let mut owner: Vec<usize> = Vec::with_capacity(encodings.len());
        for (u, e) in encodings.iter().enumerate() {
            let ids = e.get_ids();
            if ids.len() <= self.inner.max_tokens {
                seqs.push(std::borrow::Cow::Borrowed(ids));
                owner.push(u);
                continue;
            }
            if prefix_ids.is_none() {
                prefix_ids = Some(self.prefix_ids(prefix)?);
            }
            let prefix_ids = prefix_ids.as_deref().unwrap_or_default();
            for w in windows::split(ids, prefix_ids, self.inner.max_tokens) {
                seqs.push(std::borrow::Cow::Owned(w));
                owner.push(u);
            }
        }

        // Shortest first, so each batch pads to similar lengths.
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].len());

        let names: Vec<&str> = outputs.iter().map(|o| o.graph_name()).collect();
        let mut rows: Vec<Vec<Vec<f32>>> = vec![vec![Vec::new(); seqs.len()]; outputs.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end < order.len() && end - start < self.inner.batch_size {
                let len = seqs[order[end]].len();
                if end > start && (end - start + 1) * len > MAX_BATCH_TOKENS {
                    break;
                }
                end += 1;
            }
            let batch = &order[start..end];
            let out = self.run_batch(batch.iter().map(|&i| &*seqs[i]), &names)?;
            for (o, out) in out.into_iter().enumerate() {
                for (&i, row) in batch.iter().zip(out) {
                    rows[o][i] = row;
                }
            }
            start = end;
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        Ok(rows
            .into_iter()
            .map(|rows| {
                let vectors = combine_windows(rows, &lens, &owner, encodings.len());
                slots.iter().map(|&s| vectors[s].clone()).collect()
            })
            .collect())
    }

    /// The token ids of `prefix` (without `<s>`/`</s>`), as they start the
    /// encoding of `prefix + text`; repeated at the head of every window.
    fn prefix_ids(&self, prefix: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .inner
            .tokenizer
            .encode_fast(prefix.trim_end(), false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The encoder's window in tokens (512 for e5); longer texts are
    /// embedded as overlapping windows whose vectors are averaged.
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// Pads one batch, runs it, returns the rows of the graph outputs
    /// `names`. (ONNX Runtime computes every output of the graph whichever
    /// are asked for, docs/models.md, so the run asks for none in
    /// particular.)
    fn run_batch<'a>(
        &self,
        seqs: impl Iterator<Item = &'a [u32]> + Clone,
        names: &[&str],
    ) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        let b = seqs.clone().count();
        let l = seqs.clone().map(<[u32]>::len).max().unwrap_or(0).max(1);
        let mut input_ids = vec![self.inner.pad_id; b * l];
        let mut mask = vec![0i64; b * l];
        for (r, s) in seqs.enumerate() {
            for (c, &id) in s.iter().enumerate() {
                input_ids[r * l + c] = i64::from(id);
                mask[r * l + c] = 1;
            }
        }
        let ids_t = TensorRef::from_array_view(([b, l], input_ids.as_slice())).map_err(rt)?;
        let mask_t = TensorRef::from_array_view(([b, l], mask.as_slice())).map_err(rt)?;
        let mut lease = self.inner.pool.take();
        let session = lease.session.as_mut().expect("leased session");
        let outputs = session
            .run(ort::inputs!["input_ids" => ids_t, "attention_mask" => mask_t])
            .map_err(rt)?;
        let dims = self.inner.dims;
        names
            .iter()
            .map(|name| {
                let (shape, data) = outputs[*name].try_extract_tensor::<f32>().map_err(rt)?;
                if shape.len() != 2 || shape[0] as usize != b || shape[1] as usize != dims {
                    return Err(ModelError::Runtime(format!(
                        "{name}: model returned shape {:?}, expected [{b}, {dims}]",
                        &shape[..]
                    )));
                }
                Ok(data.chunks_exact(dims).map(<[f32]>::to_vec).collect())
            })
            .collect()
    }
}

/// Rows per sequence → one vector per text: a text embedded in several
/// windows (`owner` maps sequence → text) gets their length-weighted mean.
fn combine_windows(
    rows: Vec<Vec<f32>>,
    lens: &[usize],
    owner: &[usize],
    texts: usize,
) -> Vec<Vec<f32>> {
    if rows.len() == texts {
        return rows;
    }
    let mut parts: Vec<(Vec<Vec<f32>>, Vec<usize>)> = vec![Default::default(); texts];
    for ((row, &len), &u) in rows.into_iter().zip(lens).zip(owner) {
        parts[u].0.push(row);
        parts[u].1.push(len);
    }
    parts
        .into_iter()
        .map(|(vs, ws)| {
            if vs.len() == 1 {
                vs.into_iter().next().unwrap_or_default()
            } else {
                windows::combine(&vs, &ws)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_names_make_setup() {
        let dir = std::env::temp_dir().join("lingxi-no-models-here");
        let err = Models::load_with(&dir, &Options::default()).unwrap_err();
        assert!(err.needs_setup(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("make setup"), "{msg}");
        assert!(msg.contains("manifest.json"), "{msg}");
    }

    #[test]
    fn interactive_calls_go_before_waiting_job_batches_but_not_forever() {
        use std::sync::Arc;
        use std::time::Duration;
        let pool = Arc::new(Pool::new(vec![0u8]));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = pool.take();
        let waiting = |pool: &Pool<u8>, n: usize| {
            while pool.state.lock().unwrap().interactive_waiting != n {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let spawn = |name: &'static str, interactive_call: bool| {
            let (pool, order) = (Arc::clone(&pool), Arc::clone(&order));
            std::thread::spawn(move || {
                let take = || {
                    let _lease = pool.take();
                    order.lock().unwrap().push(name);
                    std::thread::sleep(Duration::from_millis(10));
                };
                if interactive_call {
                    interactive(take);
                } else {
                    take();
                }
            })
        };
        // a job's batch waits first, then an interactive call
        let job = spawn("job", false);
        std::thread::sleep(Duration::from_millis(50));
        let call = spawn("interactive", true);
        waiting(&pool, 1);
        drop(held);
        call.join().unwrap();
        job.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["interactive", "job"]);
        assert_eq!(
            pool.state.lock().unwrap().idle.len(),
            1,
            "the session is back"
        );

        // a stream of interactive calls lets a waiting job's batch through
        // after MAX_STREAK of them
        order.lock().unwrap().clear();
        let held = pool.take();
        let job = spawn("job", false);
        while pool.state.lock().unwrap().batch_waiting != 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let calls: Vec<_> = (0..=MAX_STREAK)
            .map(|_| spawn("interactive", true))
            .collect();
        waiting(&pool, MAX_STREAK + 1);
        drop(held);
        for c in calls {
            c.join().unwrap();
        }
        job.join().unwrap();
        let mut expected = vec!["interactive"; MAX_STREAK];
        expected.extend(["job", "interactive"]);
        assert_eq!(*order.lock().unwrap(), expected);
        // the flag ends with the call
        assert!(!INTERACTIVE.with(std::cell::Cell::get));
        assert!(interactive(|| INTERACTIVE.with(std::cell::Cell::get)));
        assert!(!INTERACTIVE.with(std::cell::Cell::get));
    }

    #[test]
    fn models_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Models>();
    }

    #[test]
    fn variant_parses() {
        assert_eq!(
            "INT8".parse::<EmbeddingVariant>().unwrap(),
            EmbeddingVariant::Int8
        );
        assert_eq!(
            " fp32".parse::<EmbeddingVariant>().unwrap(),
            EmbeddingVariant::Fp32
        );
        assert!(matches!(
            "fp16".parse::<EmbeddingVariant>(),
            Err(ModelError::Config(_))
        ));
    }
}
