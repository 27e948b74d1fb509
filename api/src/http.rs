//! HTTP: GraphQL (POST), GraphiQL (GET), WebSocket subscriptions, health and metrics.
use std::{path::PathBuf, sync::Arc};

use async_graphql::{BatchRequest, Data, dataloader::DataLoader, http::ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, MatchedPath, Path, Request, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use sea_orm::ConnectionTrait;
use serde_json::json;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer};

use crate::{
    auth::{self, Auth},
    context::AppState,
    error::{classify_engine_error, code},
    graphql::{AppSchema, loaders::Loaders},
};

#[derive(Clone)]
pub struct Http {
    pub state: AppState,
    pub schema: AppSchema,
    pub assets: Arc<PathBuf>,
}

pub fn router(http: Http) -> Router {
    let cfg = http.state.config.clone();
    let timed = Router::new()
        .route("/graphql", get(graphiql).post(graphql_post))
        .route("/graphiql/assets/{file}", get(graphiql_asset))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ));
    Router::new()
        .route("/graphql/ws", get(graphql_ws))
        .merge(timed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(http.clone(), count_requests))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(CatchPanicLayer::new())
        .with_state(http)
}

async fn count_requests(State(http): State<Http>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    http.state.metrics.http(&route, res.status().as_u16());
    res
}

fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        code::NOT_FOUND,
        "no such route / 路径不存在",
    )
}

async fn principal(http: &Http, headers: &HeaderMap) -> Result<Auth, Response> {
    let header = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Ok(Auth::Invalid),
    };
    auth::authenticate(&http.state.db, header)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "authentication lookup failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL,
                "authentication unavailable",
            )
        })
}

/// Per-request data: the principal and, for a key, its tenant-scoped loaders.
fn request_data(http: &Http, auth: Auth) -> Data {
    let mut data = Data::default();
    if let Auth::Key(p) = &auth {
        data.insert(DataLoader::new(
            Loaders {
                db: http.state.db.clone(),
                account_id: p.account_id,
            },
            tokio::spawn,
        ));
    }
    data.insert(auth);
    data
}

async fn graphql_post(State(http): State<Http>, headers: HeaderMap, body: Bytes) -> Response {
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let why = if std::str::from_utf8(&body).is_err() {
                "the body is not valid UTF-8 / 请求体不是有效的 UTF-8".to_owned()
            } else {
                format!("the body is not a GraphQL request: {e}")
            };
            return json_error(StatusCode::BAD_REQUEST, code::BAD_USER_INPUT, why);
        }
    };
    let auth = match principal(&http, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut request = request;
    match &mut request {
        BatchRequest::Single(r) => r.data = request_data(&http, auth),
        BatchRequest::Batch(rs) => {
            if rs.len() > 20 {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    code::QUERY_TOO_COMPLEX,
                    "at most 20 operations per batch",
                );
            }
            // Each operation gets its own loaders; the principal is the same.
            for r in rs.iter_mut() {
                r.data = request_data(&http, auth.clone());
            }
        }
    }
    let mut response = http.schema.execute_batch(request).await;
    let mut codes = Vec::new();
    let mut fix = |r: &mut async_graphql::Response| {
        for e in &mut r.errors {
            classify_engine_error(e);
            if let Some(c) = e.extensions.as_ref().and_then(|x| x.get("code")) {
                codes.push(c.to_string().trim_matches('"').to_owned());
            }
        }
    };
    match &mut response {
        async_graphql::BatchResponse::Single(r) => fix(r),
        async_graphql::BatchResponse::Batch(rs) => rs.iter_mut().for_each(&mut fix),
    }
    http.state.metrics.graphql(codes);
    axum::Json(response).into_response()
}

async fn graphql_ws(
    State(http): State<Http>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let db = http.state.db.clone();
            let conn_http = http.clone();
            GraphQLWebSocket::new(socket, http.schema.clone(), protocol)
                .on_connection_init(move |payload| async move {
                    // The token travels in the connection_init payload:
                    // {"Authorization": "Bearer …"} (browsers cannot set WS headers).
                    let header = ["Authorization", "authorization", "token"]
                        .iter()
                        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()).map(str::to_owned));
                    let auth = auth::authenticate(&db, header.as_deref())
                        .await
                        .map_err(|_| async_graphql::Error::new("authentication unavailable"))?;
                    // Refuse the connection itself without a valid key (close 4403).
                    if !matches!(auth, Auth::Key(_)) {
                        return Err(async_graphql::Error::new(
                            "authentication required / 需要有效的 API 密钥",
                        ));
                    }
                    Ok(request_data(&conn_http, auth))
                })
                .serve()
        })
}

async fn healthz(State(http): State<Http>) -> Response {
    match http.state.db.execute_unprepared("SELECT 1").await {
        Ok(_) => axum::Json(json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}

async fn metrics(State(http): State<Http>) -> Response {
    let st = &http.state;
    let jobs = match worker::jobs::backlog::read(&st.db, chrono::Utc::now()).await {
        Ok(j) => Some(j),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the job backlog could not be read");
            None
        }
    };
    let body = st.metrics.render(&crate::metrics::Scrape {
        uptime_secs: st.started.elapsed().as_secs_f64(),
        watched: st.watcher.watched(),
        watch_queries: st.watcher.queries(),
        jobs,
        account_heads: st.models.as_ref().map(|m| m.account_heads_loaded()),
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// GraphiQL's files come from the npm registry at set-up (no CDN at run time).
const ASSETS: &[(&str, &str)] = &[
    ("react.production.min.js", "text/javascript"),
    ("react-dom.production.min.js", "text/javascript"),
    ("graphiql.min.js", "text/javascript"),
    ("graphiql.min.css", "text/css"),
];

async fn graphiql_asset(State(http): State<Http>, Path(file): Path<String>) -> Response {
    let Some((name, mime)) = ASSETS.iter().find(|(n, _)| *n == file) else {
        return not_found().await;
    };
    match tokio::fs::read(http.assets.join(name)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => json_error(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            "GraphiQL assets are not installed: run `make setup` / 请先运行 make setup",
        ),
    }
}

async fn graphiql(State(http): State<Http>) -> Response {
    let installed = ASSETS.iter().all(|(n, _)| http.assets.join(n).exists());
    if !installed {
        return Html(
            "<!doctype html><meta charset=utf-8><title>Lingxi 灵犀</title>\
             <h1>Lingxi GraphQL API</h1><p>POST GraphQL to this URL with \
             <code>Authorization: Bearer &lt;api key&gt;</code>.</p>\
             <p>GraphiQL is not installed: run <code>make setup</code> (or <code>make run</code>) \
             and reload. 请运行 <code>make setup</code> 安装 GraphiQL。</p>",
        )
        .into_response();
    }
    Html(GRAPHIQL_PAGE).into_response()
}

const GRAPHIQL_PAGE: &str = r#"<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>Lingxi 灵犀 · GraphiQL</title>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<style>html,body,#graphiql{height:100%;margin:0}</style>
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script>
const url = location.origin + "/graphql";
const wsUrl = url.replace(/^http/, "ws") + "/ws";
const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl: wsUrl });
const defaultQuery = `# 灵犀 Lingxi — paste the admin key printed at start-up into Headers below.
query Demo {
  viewer { role account { name } }
  campaigns(first: 5) { totalCount edges { node { name status objective channel contents { title } } } }
  members(first: 5) { totalCount edges { node { nickname city age tags persona { sentiment activity } } } }
}
`;
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery,
    defaultHeaders: '{\n  "Authorization": "Bearer <admin key>"\n}',
    shouldPersistHeaders: true,
    defaultEditorToolsVisibility: "headers",
  })
);
</script>
</body>
</html>
"#;
