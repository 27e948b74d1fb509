//! The end-to-end harness: starts the real `api` binary on a random port
//! against a fresh database (SQLite file, or a new PostgreSQL database when
//! `LINGXI_TEST_BACKEND=postgres`) and talks GraphQL over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "lx_test_operator_key_0123456789abcdefghij";

/// Which database the suite runs on.
pub fn backend() -> &'static str {
    match std::env::var("LINGXI_TEST_BACKEND").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

fn pg_base() -> String {
    std::env::var("LINGXI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The shared model cache (`make setup` fills it), not the test's HOME.
pub fn models_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LINGXI_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
        });
    cache.join("lingxi/models")
}

/// A binary of the workspace (`make test` builds them first).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` (make test does)",
        bin.display()
    );
    bin
}

/// The built `api` binary (`make test` builds it first).
pub fn api_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LINGXI_API_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/api");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` (make test does)",
        bin.display()
    );
    bin
}

#[derive(Default)]
pub struct Options {
    pub demo: bool,
    /// Load the language models (slower start); off by default.
    pub models: bool,
    pub max_body_mb: Option<u32>,
    pub extra_env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Another server's database (`Server::database_url`), for a second
    /// process on the same data; a new database when `None`.
    pub database_url: Option<String>,
}

pub struct Server {
    pub base: String,
    pub database_url: String,
    /// `Options::extra_env`, given to `spawn_worker`'s processes too.
    pub extra_env: Vec<(String, String)>,
    pub client: reqwest::Client,
    pub stdout_lines: Vec<String>,
    child: Child,
    pg_db: Option<String>,
    pub dir: tempfile::TempDir,
}

async fn pg_exec(sql: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(format!("{}/test", pg_base())).await?;
    db.execute_unprepared(sql).await?;
    db.close().await
}

/// A new, empty database on the suite's backend: its URL and, on
/// PostgreSQL, its name (drop it with [`drop_pg_database`]).
async fn new_database(dir: &std::path::Path) -> (String, Option<String>) {
    if backend() == "postgres" {
        let name = format!("lingxi_t_{}", uuid::Uuid::new_v4().simple());
        pg_exec(&format!("CREATE DATABASE {name}"))
            .await
            .expect("PostgreSQL reachable for LINGXI_TEST_BACKEND=postgres");
        (format!("{}/{name}", pg_base()), Some(name))
    } else {
        (
            format!("sqlite://{}?mode=rwc", dir.join("lingxi.db").display()),
            None,
        )
    }
}

/// Drops a test database; callable from `Drop` inside the test's runtime
/// (it uses a thread with its own).
fn drop_pg_database(name: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(pg_exec(&format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
    })
    .join();
}

/// Starts a `worker` process in test directory `dir` on `database_url`
/// with the models directory and `env` on top; its output goes to
/// `worker-N.log` there. Killed when dropped.
fn spawn_worker_in(
    dir: &std::path::Path,
    n: usize,
    database_url: &str,
    env: &[(String, String)],
) -> WorkerProcess {
    let log = std::fs::File::create(dir.join(format!("worker-{n}.log"))).unwrap();
    let child = Command::new(bin("worker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("LINGXI_DATABASE_URL", database_url)
        .env("LINGXI_MODELS_DIR", models_dir())
        .env("RUST_LOG", "worker=debug")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start worker");
    WorkerProcess(child)
}

/// A log file of a test directory, empty when missing.
fn read_log(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Waits until every process's log (by number, from 1) shows `started`,
/// then checks that none has exited; panics with the log otherwise.
pub async fn all_started(
    procs: &mut [WorkerProcess],
    log: impl Fn(usize) -> String,
    started: &str,
) {
    for i in 1..=procs.len() {
        eventually(90, || async { log(i).contains(started).then_some(()) })
            .await
            .unwrap_or_else(|| panic!("process {i} did not start:\n{}", log(i)));
    }
    for (i, p) in procs.iter_mut().enumerate() {
        assert!(
            p.try_wait().unwrap().is_none(),
            "process {} exited:\n{}",
            i + 1,
            log(i + 1)
        );
    }
}

/// A database no process has opened yet, on the suite's backend, for what
/// happens when processes start on it together. Dropped with it.
pub struct FreshDatabase {
    pub url: String,
    pg_db: Option<String>,
    pub dir: tempfile::TempDir,
}

impl FreshDatabase {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_db) = new_database(dir.path()).await;
        Self { url, pg_db, dir }
    }

    /// Starts a `worker` process on it, without models; its output goes
    /// to `worker-N.log`. Killed when dropped.
    pub fn spawn_worker(&self, n: usize) -> WorkerProcess {
        let env = [
            (
                "LINGXI_DATA_DIR".to_owned(),
                format!("{}/data-{n}", self.dir.path().display()),
            ),
            ("LINGXI_MODELS".to_owned(), "off".to_owned()),
        ];
        spawn_worker_in(self.dir.path(), n, &self.url, &env)
    }

    pub fn worker_log(&self, n: usize) -> String {
        read_log(self.dir.path(), &format!("worker-{n}.log"))
    }

    /// Starts an `api` process on it (admin key [`ADMIN_KEY`], no models, no
    /// demo, no in-process workers); its stdout and stderr go to `api-N.log`.
    pub fn spawn_api(&self, n: usize) -> WorkerProcess {
        let log = std::fs::File::create(self.dir.path().join(format!("api-{n}.log"))).unwrap();
        let child = Command::new(api_bin())
            .arg("--no-worker")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("LINGXI_HTTP_ADDR", "127.0.0.1:0")
            .env(
                "LINGXI_DATA_DIR",
                self.dir.path().join(format!("api-data-{n}")),
            )
            .env("LINGXI_DATABASE_URL", &self.url)
            .env("LINGXI_ADMIN_KEY", ADMIN_KEY)
            .env("LINGXI_DEMO", "0")
            .env("LINGXI_MODELS", "off")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start api");
        WorkerProcess(child)
    }

    pub fn api_log(&self, n: usize) -> String {
        read_log(self.dir.path(), &format!("api-{n}.log"))
    }

    /// The number of rows `sql` (a `SELECT COUNT(*) …`) counts.
    pub async fn count(&self, sql: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let db = sea_orm::Database::connect(&self.url).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        let n = row.try_get_by_index::<i64>(0).unwrap();
        db.close().await.unwrap();
        n
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_db.take() {
            drop_pg_database(name);
        }
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg_db) = match &opts.database_url {
            Some(url) => (url.clone(), None),
            None => new_database(dir.path()).await,
        };
        let mut cmd = Command::new(api_bin());
        cmd.args(&opts.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("LINGXI_HTTP_ADDR", "127.0.0.1:0")
            .env("LINGXI_DATA_DIR", dir.path().join("data"))
            .env("LINGXI_DATABASE_URL", &database_url)
            .env("LINGXI_ADMIN_KEY", ADMIN_KEY)
            .env("LINGXI_DEMO", if opts.demo { "1" } else { "0" })
            .env("RUST_LOG", "api=debug,worker=debug")
            .env("LINGXI_MODELS_DIR", models_dir())
            .env("LINGXI_MODELS", if opts.models { "on" } else { "off" })
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap());
        if let Some(mb) = opts.max_body_mb {
            cmd.env("LINGXI_MAX_BODY_MB", mb.to_string());
        }
        for (k, v) in &opts.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start api");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let mut base = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(90)) {
                Ok(line) => {
                    if let Some(b) = line.strip_prefix("Lingxi listening on ") {
                        base = Some(b.to_owned());
                    }
                    let last = line.starts_with("GraphiQL: ");
                    lines.push(line);
                    if last {
                        break;
                    }
                }
                Err(_) => {
                    let log =
                        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                    panic!("api did not start; stdout: {lines:?}\nlog:\n{log}");
                }
            }
        }
        let base = base.expect("the listening line comes before the GraphiQL line");
        Self {
            base,
            database_url,
            extra_env: opts.extra_env,
            client: reqwest::Client::new(),
            stdout_lines: lines,
            child,
            pg_db,
            dir,
        }
    }

    /// Starts a `worker` process on the same database (and the same extra
    /// environment: queue, search); its output goes to `worker-N.log` in the
    /// test's directory. It is killed when dropped.
    pub fn spawn_worker(&self, n: usize) -> WorkerProcess {
        let mut env = vec![(
            "LINGXI_DATA_DIR".to_owned(),
            format!("{}/data", self.dir.path().display()),
        )];
        env.extend(self.extra_env.iter().cloned());
        spawn_worker_in(self.dir.path(), n, &self.database_url, &env)
    }

    pub fn worker_log(&self, n: usize) -> String {
        read_log(self.dir.path(), &format!("worker-{n}.log"))
    }

    /// Stops the process at once (SIGKILL), as a crash would; its
    /// database stays until the server is dropped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits for the process to exit (after a signal), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A GraphQL request with `key`; returns the whole response body.
    pub async fn gql_as(&self, key: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "GraphQL over HTTP answers 200");
        res.json().await.unwrap()
    }

    /// As the operator/admin; panics on GraphQL errors and returns `data`.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.ok_as(ADMIN_KEY, query, variables).await
    }

    pub async fn ok_as(&self, key: &str, query: &str, variables: Value) -> Value {
        let body = self.gql_as(Some(key), query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Expects exactly an error with `code`; returns the body.
    pub async fn err_as(
        &self,
        key: Option<&str>,
        query: &str,
        variables: Value,
        code: &str,
    ) -> Value {
        let body = self.gql_as(key, query, variables).await;
        assert_eq!(
            error_code(&body),
            Some(code.to_owned()),
            "expected {code}: {body}"
        );
        body
    }

    /// A raw SQL scalar (counts) against the server's database.
    pub async fn sql_count(&self, sql: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let db = sea_orm::Database::connect(&self.database_url)
            .await
            .unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get_by_index(0).unwrap();
        db.close().await.unwrap();
        n
    }

    /// Runs one SQL statement on the server's database (to set up states
    /// that only an earlier release could leave).
    pub async fn sql_exec(&self, sql: &str) -> u64 {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&self.database_url)
            .await
            .unwrap();
        let n = db.execute_unprepared(sql).await.unwrap().rows_affected();
        db.close().await.unwrap();
        n
    }

    /// A graphql-transport-ws connection to `/graphql/ws` whose
    /// `connection_init` carries `key` (the answer is left to the caller).
    pub async fn ws(&self, key: &str) -> Ws {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::{
            Message, client::IntoClientRequest, http::HeaderValue,
        };
        let mut req = format!("{}/graphql/ws", self.base.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } });
        ws.send(Message::text(init.to_string())).await.unwrap();
        ws
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Enqueues a job of `kind` (an enum name, no params) as the admin and
    /// waits up to `secs` for it to end; returns the job as
    /// [`Server::wait_job`] does.
    pub async fn run_job(&self, kind: &str, secs: u64) -> Value {
        let d = self
            .gql(
                &format!("mutation {{ enqueueJob(input: {{ kind: {kind} }}) {{ id }} }}"),
                json!({}),
            )
            .await;
        self.wait_job(&d["enqueueJob"]["id"], secs).await
    }

    /// Polls `job(id)` until it is SUCCEEDED, FAILED or CANCELLED (up to
    /// `secs`); returns the job, or panics with the server log.
    pub async fn wait_job(&self, id: &Value, secs: u64) -> Value {
        self.wait_job_as(ADMIN_KEY, id, secs).await
    }

    /// [`Server::wait_job`] for a job of the account `key` belongs to.
    pub async fn wait_job_as(&self, key: &str, id: &Value, secs: u64) -> Value {
        let q = "query($id: ID!) { job(id: $id) { kind status progress result error attempts finishedAt } }";
        eventually(secs, || async {
            let j = self.ok_as(key, q, json!({ "id": id })).await["job"].clone();
            matches!(
                j["status"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            )
            .then_some(j)
        })
        .await
        .unwrap_or_else(|| panic!("job {id} did not finish in {secs}s:\n{}", self.log()))
    }

    /// Creates another account (tenant) and returns its admin key.
    pub async fn new_account(&self, name: &str) -> (String, String) {
        let d = self
            .gql(
                "mutation($n: String!) { createAccount(input: { name: $n }) { account { id name } adminKey } }",
                json!({ "n": name }),
            )
            .await;
        (
            d["createAccount"]["account"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            d["createAccount"]["adminKey"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a key with `role` in the caller's account.
    pub async fn new_key(&self, admin: &str, role: &str) -> String {
        let d = self
            .ok_as(
                admin,
                "mutation($r: Role!) { createApiKey(input: { name: \"t\", role: $r }) { key { id role } secret } }",
                json!({ "r": role }),
            )
            .await;
        d["createApiKey"]["secret"].as_str().unwrap().to_owned()
    }

    pub async fn import(&self, key: &str, what: &str, format: &str, data: &str) -> Value {
        let q = format!(
            "mutation($f: ImportFormat!, $d: String!) {{ {what}(input: {{ format: $f, data: $d }}) {{ accepted rejectedCount rejected {{ line message }} }} }}"
        );
        self.ok_as(key, &q, json!({ "f": format, "d": data })).await[what].clone()
    }

    /// Imports `n` members (openids `{prefix}{i:07}`), each with three chat
    /// messages written on 2026-11-20 ([`chat_text`] `3i` to `3i + 2`):
    /// what the benchmarks analyse.
    pub async fn import_chat(&self, n: usize, prefix: &str) {
        use std::fmt::Write;
        let mut members = String::from("openid\n");
        let mut messages = String::new();
        for i in 0..n {
            let _ = writeln!(members, "{prefix}{i:07}");
            for k in 0..3 {
                let m = json!({ "openid": format!("{prefix}{i:07}"), "text": chat_text(3 * i + k), "at": "2026-11-20T08:00:00Z" });
                let _ = writeln!(messages, "{m}");
            }
        }
        for (what, format, data) in [
            ("importMembers", "CSV", members),
            ("importMessages", "JSONL", messages),
        ] {
            let d = self.import(ADMIN_KEY, what, format, &data).await;
            assert_eq!(d["rejectedCount"], 0, "{d}");
        }
    }
}

/// The start of a benchmark over chat messages: its first argument (a
/// number of members, `default` without one) and a server with the
/// language models, announced on stdout.
pub async fn chat_bench(default: usize) -> (Server, usize) {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default);
    let s = Server::start_with(Options {
        models: true,
        ..Default::default()
    })
    .await;
    println!(
        "api binary: {}; database: {}; members: {n}; messages: {}",
        api_bin().display(),
        backend(),
        3 * n
    );
    (s, n)
}

/// Chat-length texts for the benchmarks.
pub const CHAT_TEXTS: &[&str] = &[
    "这款面霜很滋润，秋冬用刚刚好",
    "外卖等了一个半小时，送到都凉了",
    "周末去三亚旅游，酒店海景太美了",
    "请问这款精华适合敏感肌吗",
    "快递到哪了？单号发我一下",
    "跑鞋穿了一个月就开胶，质量太差了",
    "客服回复很及时，问题都解决了",
    "价格还行吧，效果一般般",
];

/// The `i`th benchmark text: one of [`CHAT_TEXTS`] with `i` appended, so
/// no two are alike and no dedup applies.
pub fn chat_text(i: usize) -> String {
    format!("{}（{i}）", CHAT_TEXTS[i % CHAT_TEXTS.len()])
}

/// A `worker` process that does not outlive its test, even a failed one.
pub struct WorkerProcess(Child);

impl std::ops::Deref for WorkerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for WorkerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A job queue of its own in Redis (`LINGXI_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379/9`) for one test: a unique queue name, so tests
/// running in parallel and leftovers of earlier runs never meet. Its keys are
/// deleted when it is dropped (declare it before the `Server`, which must
/// stop first).
pub struct RedisQueue {
    pub url: String,
    pub name: String,
}

impl RedisQueue {
    /// `None`, after printing a "skipped" line, when Redis does not answer.
    pub fn new(test: &str) -> Option<Self> {
        let url = std::env::var("LINGXI_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/9".into());
        let ping = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
        if let Err(e) = ping {
            eprintln!("skipped {test}: Redis does not answer at {url} ({e})");
            return None;
        }
        let name = format!("lingxi-test-{}", uuid::Uuid::new_v4().simple());
        Some(Self { url, name })
    }

    /// The environment that puts a server's (and its workers') queue here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LINGXI_QUEUE_URL".into(), self.url.clone()),
            ("LINGXI_QUEUE_NAME".into(), self.name.clone()),
        ]
    }

    /// Runs one command on this Redis.
    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut con = redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        cmd.query(&mut con).unwrap()
    }

    /// The Redis key `{queue name}:{suffix}` (apalis-redis's naming).
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.name)
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        let cleanup = || -> redis::RedisResult<()> {
            let mut con = redis::Client::open(self.url.as_str())?
                .get_connection_with_timeout(Duration::from_secs(2))?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.name))
                .query(&mut con)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).exec(&mut con)?;
            }
            // apalis-redis lists every queue it has seen here.
            redis::cmd("ZREM")
                .arg("core:apalis:queues:list")
                .arg(self.key("workers"))
                .exec(&mut con)
        };
        if let Err(e) = cleanup() {
            eprintln!("could not remove the Redis queue {}: {e}", self.name);
        }
    }
}

pub fn error_code(body: &Value) -> Option<String> {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(name) = self.pg_db.take() {
            drop_pg_database(name);
        }
    }
}

/// A client WebSocket to the API ([`Server::ws`]).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The value of one series (`name` or `name{labels}`) in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `f` until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
