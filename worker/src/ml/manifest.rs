//! `manifest.json` in the models directory: one entry per installed file
//! with its sha256, version, and (for graphs) inputs, outputs and dims.
//! Written by `lingxi-models setup`, read by [`super::Models::load`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the layout of the models directory changes.
pub const FORMAT: u32 = 1;
pub const FILE_NAME: &str = "manifest.json";

/// Manifest keys.
pub const ORT_LIB: &str = "onnxruntime";
pub const TOKENIZER: &str = "e5-small-tokenizer";
pub const E5_FP32: &str = "e5-small-fp32";
pub const E5_INT8: &str = "e5-small-int8";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    /// `lingxi-models <version>` that wrote it.
    pub created_by: String,
    pub models: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: String,
    /// Dimensions: a number or a symbolic name (`"batch"`).
    pub shape: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct Entry {
    /// Path relative to the models directory.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// The model's identity as the product records it next to vectors
    /// (e.g. `multilingual-e5-small-int8@1`), or the library version.
    pub version: String,
    /// Where it came from (PyPI artifact and member).
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Tensor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Tensor>,
    /// Output dimensions of an embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// Free-form facts: max_tokens, pad_id, prefixes, pooling, …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Why a manifest entry does not match its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Missing,
    Size { expected: u64, found: u64 },
    Sha { expected: String, found: String },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing => write!(f, "file missing"),
            FileProblem::Size { expected, found } => {
                write!(f, "size {found} bytes, manifest says {expected}")
            }
            FileProblem::Sha { expected, found } => {
                write!(f, "sha256 {found}, manifest says {expected}")
            }
        }
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256_bytes(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl Entry {
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }

    /// Checks the file's size and sha256 against the entry.
    pub fn check(&self, dir: &Path) -> Result<(), FileProblem> {
        let path = self.path(dir);
        let meta = std::fs::metadata(&path).map_err(|_| FileProblem::Missing)?;
        if meta.len() != self.bytes {
            return Err(FileProblem::Size {
                expected: self.bytes,
                found: meta.len(),
            });
        }
        let found = sha256_file(&path).map_err(|_| FileProblem::Missing)?;
        if found != self.sha256 {
            return Err(FileProblem::Sha {
                expected: self.sha256.clone(),
                found,
            });
        }
        Ok(())
    }
}

impl Manifest {
    pub fn read(dir: &Path) -> std::io::Result<Manifest> {
        let text = std::fs::read_to_string(dir.join(FILE_NAME))?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Writes `manifest.json` and a `SHA256SUMS` (for `sha256sum -c`)
    /// atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("manifest serialises") + "\n";
        write_atomic(&dir.join(FILE_NAME), json.as_bytes())?;
        let sums: String = self
            .models
            .values()
            .map(|e| format!("{}  {}\n", e.sha256, e.file))
            .collect();
        write_atomic(&dir.join("SHA256SUMS"), sums.as_bytes())
    }
}

/// Writes through a temporary file in the same directory and renames.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_detects_missing_size_and_sha() {
        let dir = std::env::temp_dir().join(format!("lingxi-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_atomic(&dir.join("a.bin"), b"abc").unwrap();
        let mut e = Entry {
            file: "a.bin".into(),
            sha256: sha256_bytes(b"abc"),
            bytes: 3,
            ..Default::default()
        };
        assert_eq!(e.check(&dir), Ok(()));
        e.sha256 = sha256_bytes(b"abd");
        assert!(matches!(e.check(&dir), Err(FileProblem::Sha { .. })));
        e.bytes = 4;
        assert!(matches!(e.check(&dir), Err(FileProblem::Size { .. })));
        e.file = "missing.bin".into();
        assert_eq!(e.check(&dir), Err(FileProblem::Missing));

        let mut m = Manifest {
            format: FORMAT,
            created_by: "test".into(),
            models: BTreeMap::new(),
        };
        m.models.insert(
            "a".into(),
            Entry {
                file: "a.bin".into(),
                sha256: sha256_bytes(b"abc"),
                bytes: 3,
                ..Default::default()
            },
        );
        m.write(&dir).unwrap();
        assert_eq!(Manifest::read(&dir).unwrap(), m);
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        assert!(sums.ends_with("  a.bin\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
