//! `api`: the GraphQL API; with the workers in-process unless `--no-worker`.
use std::io::Write;

use tokio::net::TcpListener;

const USAGE: &str = "usage: api [--no-worker]\n\nServes the Lingxi GraphQL API. Configuration comes from LINGXI_* \
environment variables (see README.md).\n  --no-worker  do not run background workers in this process (scale-out)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut with_worker = true;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-worker" => with_worker = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let cfg = worker::Config::from_env()?;
    worker::config::init_tracing(&cfg);
    let addr = cfg.http_addr;
    let app = api::App::build(cfg, with_worker).await?;
    let listener = TcpListener::bind(addr).await?;
    let shutdown = api::app::shutdown_signal()?;
    let local = listener.local_addr()?;
    // Stdout carries the lines a person (and the test harness) reads; logs go to stderr.
    let mut out = std::io::stdout().lock();
    if let Some(key) = &app.generated_admin_key {
        writeln!(
            out,
            "Admin API key (shown once, store it now / 仅显示一次): {key}"
        )?;
    } else if let (true, Some(key)) = (app.state.config.demo, &app.state.config.admin_key) {
        writeln!(out, "Demo admin API key / 演示管理员密钥: {key}")?;
    }
    writeln!(out, "Lingxi listening on http://{local}")?;
    writeln!(out, "GraphiQL: http://{local}/graphql")?;
    out.flush()?;
    drop(out);
    app.serve_until(listener, shutdown).await
}
