//! Prometheus text metrics, kept in-process with atomics and one small map.
use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use worker::jobs::{JobKind, backlog::Backlog};

#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, u16), u64>>,
    graphql_errors: Mutex<BTreeMap<String, u64>>,
    graphql_requests: AtomicU64,
    imports: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn http(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route.to_owned(), status)).or_default() += 1;
        }
    }

    pub fn graphql(&self, error_codes: impl IntoIterator<Item = String>) {
        self.graphql_requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.graphql_errors.lock() {
            for c in error_codes {
                *m.entry(c).or_default() += 1;
            }
        }
    }

    pub fn import_rows(&self, kind: &'static str, accepted: u64, rejected: u64) {
        if let Ok(mut m) = self.imports.lock() {
            *m.entry((kind, "accepted")).or_default() += accepted;
            *m.entry((kind, "rejected")).or_default() += rejected;
        }
    }

    /// The exposition text for `GET /metrics`.
    pub fn render(&self, scrape: &Scrape) -> String {
        let Scrape {
            uptime_secs,
            watched,
            watch_queries,
            jobs,
            account_heads,
        } = scrape;
        let mut out = String::new();
        family(
            &mut out,
            "lingxi_uptime_seconds",
            "gauge",
            "Seconds since the process started.",
        );
        let _ = writeln!(out, "lingxi_uptime_seconds {uptime_secs:.3}");
        family(
            &mut out,
            "lingxi_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        if let Ok(m) = self.http.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "lingxi_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "lingxi_graphql_requests_total",
            "counter",
            "GraphQL operations executed.",
        );
        let _ = writeln!(
            out,
            "lingxi_graphql_requests_total {}",
            self.graphql_requests.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "lingxi_graphql_errors_total",
            "counter",
            "GraphQL errors by extensions.code.",
        );
        if let Ok(m) = self.graphql_errors.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(out, "lingxi_graphql_errors_total{{code=\"{code}\"}} {n}");
            }
        }
        family(
            &mut out,
            "lingxi_import_rows_total",
            "counter",
            "Imported rows by kind and outcome.",
        );
        if let Ok(m) = self.imports.lock() {
            for ((kind, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "lingxi_import_rows_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        family(
            &mut out,
            "lingxi_subscription_rows_watched",
            "gauge",
            "Rows followed by open subscriptions.",
        );
        let _ = writeln!(out, "lingxi_subscription_rows_watched {watched}");
        family(
            &mut out,
            "lingxi_subscription_watch_queries_total",
            "counter",
            "Database reads by the subscription watcher (one per table and tick, whatever the number of subscribers).",
        );
        let _ = writeln!(
            out,
            "lingxi_subscription_watch_queries_total {watch_queries}"
        );
        if let Some(n) = account_heads {
            family(
                &mut out,
                "lingxi_account_sentiment_heads_loaded",
                "gauge",
                "Accounts' own sentiment heads in this process's memory (at most LINGXI_ACCOUNT_HEADS).",
            );
            let _ = writeln!(out, "lingxi_account_sentiment_heads_loaded {n}");
        }
        render_jobs(&mut out, jobs.as_deref());
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// What `/metrics` reads from elsewhere when it is scraped.
pub struct Scrape {
    pub uptime_secs: f64,
    /// Rows followed by the subscription watcher.
    pub watched: usize,
    /// Queries the watcher has made.
    pub watch_queries: u64,
    /// The job backlog of every process; `None` when the database could
    /// not be read (the rest is still served).
    pub jobs: Option<Vec<Backlog>>,
    /// Accounts' own sentiment heads in memory; `None` with models off.
    pub account_heads: Option<usize>,
}

/// Every job kind is listed, with zeros, so an alert sees the series.
fn render_jobs(out: &mut String, jobs: Option<&[Backlog]>) {
    family(
        out,
        "lingxi_jobs_up",
        "gauge",
        "1 when the job backlog below could be read from the database.",
    );
    let _ = writeln!(out, "lingxi_jobs_up {}", u8::from(jobs.is_some()));
    let Some(jobs) = jobs else {
        return;
    };
    let of = |kind: &str| jobs.iter().find(|b| b.kind == kind);
    family(
        out,
        "lingxi_jobs",
        "gauge",
        "Jobs waiting or running, by kind and status, across every process.",
    );
    for k in JobKind::ALL {
        let b = of(k.as_str());
        for (st, n) in [
            ("QUEUED", b.map_or(0, |b| b.queued)),
            ("RUNNING", b.map_or(0, |b| b.running)),
        ] {
            let _ = writeln!(
                out,
                "lingxi_jobs{{kind=\"{}\",status=\"{st}\"}} {n}",
                k.as_str()
            );
        }
    }
    family(
        out,
        "lingxi_job_oldest_due_seconds",
        "gauge",
        "How long the oldest QUEUED job whose run time has come has waited (0: none due).",
    );
    for k in JobKind::ALL {
        let secs = of(k.as_str()).map_or(0.0, |b| b.oldest_due_secs);
        let _ = writeln!(
            out,
            "lingxi_job_oldest_due_seconds{{kind=\"{}\"}} {secs:.3}",
            k.as_str()
        );
    }
}
