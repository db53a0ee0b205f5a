//! Liveness, readiness and the metrics scrape.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::error::Data;
use crate::state::AppState;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "alive")))]
pub async fn live() -> impl IntoResponse {
    Json(json!({"data": {"status": "ok"}}))
}

/// Ready for traffic: PostgreSQL answers and this node holds a good cluster lease (a node
/// without one decides nothing, so a load balancer should send it nothing), and Redis
/// answers when configured. A missing Redis degrades caching but not correctness, so it is
/// reported without failing readiness.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, description = "ready; `redis` is ok, degraded or not configured"),
              (status = 503, description = "PostgreSQL is unreachable, or this node holds no cluster lease")))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let timeout = Duration::from_secs(2);
    let database = matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&state.pool)).await,
        Ok(Ok(_))
    );
    let lease = state.engine.incarnation().is_some();
    let redis = state.cache.redis_status().await;
    let ready = database && lease;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"data": {
        "status": if ready { "ready" } else { "not ready" },
        "database": if database { "ok" } else { "down" },
        "lease": if lease { "held" } else { "none" },
        "node": state.engine.node_id(),
        "redis": redis,
    }});
    (status, Json(body))
}

/// This node's place in the cluster: its id, the incarnation it decides under (absent
/// while it holds no lease) and the events whose actors live on it now. For operators and
/// tests; `boxoffice cluster status` gives the whole cluster as PostgreSQL records it.
#[utoipa::path(get, path = "/health/cluster", tag = "health",
    responses((status = 200, body = inline(Data<NodeView>), description = "this node's view")))]
pub async fn cluster(State(state): State<AppState>) -> Json<Data<NodeView>> {
    Data::json(NodeView {
        node_id: state.engine.node_id().to_string(),
        incarnation: state.engine.incarnation(),
        live_events: state.engine.live_events(),
    })
}

/// One node's view of itself.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// `NODE_ID`.
    #[schema(example = "web-1:3000")]
    pub node_id: String,
    /// The incarnation it decides under; absent while it holds no lease.
    #[schema(example = 7)]
    pub incarnation: Option<i64>,
    /// Events whose actors live on this node now, ascending.
    #[schema(example = json!([1, 42]))]
    pub live_events: Vec<i64>,
}

/// The Prometheus scrape. Pool gauges are sampled at scrape time.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let size = state.pool.size() as f64;
    let idle = state.pool.num_idle() as f64;
    metrics::gauge!("boxoffice_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("boxoffice_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("boxoffice_cluster_lease_held").set(if state.engine.incarnation().is_some() {
        1.0
    } else {
        0.0
    });
    let body = crate::telemetry::metrics_handle().render();
    ([("content-type", "text/plain; version=0.0.4")], body)
}
