//! Prometheus text metrics, kept in-process with atomics and one small map.
use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

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
    /// `watched` and `watch_queries` come from the subscription watcher.
    pub fn render(&self, uptime_secs: f64, watched: usize, watch_queries: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP lingxi_uptime_seconds Seconds since the process started."
        );
        let _ = writeln!(out, "# TYPE lingxi_uptime_seconds gauge");
        let _ = writeln!(out, "lingxi_uptime_seconds {uptime_secs:.3}");
        let _ = writeln!(
            out,
            "# HELP lingxi_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE lingxi_http_requests_total counter");
        if let Ok(m) = self.http.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "lingxi_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lingxi_graphql_requests_total GraphQL operations executed."
        );
        let _ = writeln!(out, "# TYPE lingxi_graphql_requests_total counter");
        let _ = writeln!(
            out,
            "lingxi_graphql_requests_total {}",
            self.graphql_requests.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lingxi_graphql_errors_total GraphQL errors by extensions.code."
        );
        let _ = writeln!(out, "# TYPE lingxi_graphql_errors_total counter");
        if let Ok(m) = self.graphql_errors.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(out, "lingxi_graphql_errors_total{{code=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP lingxi_import_rows_total Imported rows by kind and outcome."
        );
        let _ = writeln!(out, "# TYPE lingxi_import_rows_total counter");
        if let Ok(m) = self.imports.lock() {
            for ((kind, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "lingxi_import_rows_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP lingxi_subscription_rows_watched Rows followed by open subscriptions."
        );
        let _ = writeln!(out, "# TYPE lingxi_subscription_rows_watched gauge");
        let _ = writeln!(out, "lingxi_subscription_rows_watched {watched}");
        let _ = writeln!(
            out,
            "# HELP lingxi_subscription_watch_queries_total Database reads by the subscription watcher (one per table and tick, whatever the number of subscribers)."
        );
        let _ = writeln!(
            out,
            "# TYPE lingxi_subscription_watch_queries_total counter"
        );
        let _ = writeln!(
            out,
            "lingxi_subscription_watch_queries_total {watch_queries}"
        );
        out
    }
}
