//! The REST face of the Open Inference Protocol (KServe V2) with Triton's extensions: binary
//! tensors, model configuration, model repository, statistics; plus `/metrics`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::front_metrics::Protocol;
use super::state::{AppState, ServedModel};
use super::tensor::{self, FP32, INPUT_NAME, OUTPUT_NAME};
use super::{EXTENSIONS, PLATFORM};

type Shared = State<Arc<AppState>>;
type Params = Path<HashMap<String, String>>;

/// The header that says how long the JSON part of a binary-extension body is.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// Every route, each model route also under `/versions/{version}`.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .route("/metrics", get(metrics));
    for prefix in [
        "/v2/models/{model}",
        "/v2/models/{model}/versions/{version}",
    ] {
        router = router
            .route(prefix, get(model_metadata))
            .route(&format!("{prefix}/ready"), get(model_ready))
            .route(&format!("{prefix}/infer"), post(infer))
            .route(&format!("{prefix}/config"), get(model_config))
            .route(&format!("{prefix}/stats"), get(model_stats));
    }
    router
        .fallback(|| async { error_body(&ApiError::NotFound("no such endpoint".into()), 503) })
        .with_state(state)
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).expect("plain structs serialise");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"error": "..."}` with the error's status, and `Retry-After` when overloaded.
fn error_body(error: &ApiError, overload_status: u16) -> Response {
    let status = StatusCode::from_u16(error.http_status(overload_status))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_reply(status, &json!({ "error": error.to_string() }));
    if let ApiError::Unavailable { retry_after, .. } = error {
        let seconds = retry_after.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

fn error_reply(state: &AppState, error: &ApiError) -> Response {
    error_body(error, state.config.overload_status)
}

fn model_of(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Arc<ServedModel>, ApiError> {
    let name = params.get("model").map_or("", String::as_str);
    state.model(name, params.get("version").map(String::as_str))
}

async fn live() -> Response {
    json_reply(StatusCode::OK, &json!({ "live": true }))
}

async fn ready(State(state): Shared) -> Response {
    let ready = state.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_reply(status, &json!({ "ready": ready }))
}

async fn server_metadata() -> Response {
    json_reply(
        StatusCode::OK,
        &json!({ "name": "densebatch", "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }),
    )
}

async fn model_metadata(State(state): Shared, Path(params): Params) -> Response {
    match model_of(&state, &params) {
        Ok(m) => json_reply(
            StatusCode::OK,
            &json!({
                "name": m.name,
                "versions": [m.version],
                "platform": PLATFORM,
                "inputs": [{ "name": INPUT_NAME, "datatype": FP32, "shape": [-1, m.input_width as i64] }],
                "outputs": [{ "name": OUTPUT_NAME, "datatype": FP32, "shape": [-1, m.output_width as i64] }],
            }),
        ),
        Err(e) => error_reply(&state, &e),
    }
}

async fn model_ready(State(state): Shared, Path(params): Params) -> Response {
    match model_of(&state, &params) {
        Ok(m) => {
            let ready = state.model_ready(&m.name);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(status, &json!({ "name": m.name, "ready": ready }))
        }
        Err(e) => error_reply(&state, &e),
    }
}

/// Triton's model configuration (perf_analyzer and Triton tools read it).
async fn model_config(State(state): Shared, Path(params): Params) -> Response {
    match model_of(&state, &params) {
        Ok(m) => json_reply(
            StatusCode::OK,
            &json!({
                "name": m.name,
                "platform": PLATFORM,
                "backend": "densebatch",
                "max_batch_size": m.max_batch,
                "input": [{ "name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": [m.input_width] }],
                "output": [{ "name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [m.output_width] }],
                "dynamic_batching": { "max_queue_delay_microseconds": m.max_wait.as_micros() as u64 },
                "parameters": { "precision": { "string_value": m.precision.name() } },
            }),
        ),
        Err(e) => error_reply(&state, &e),
    }
}

async fn model_stats(State(state): Shared, Path(params): Params) -> Response {
    let name = params.get("model").map(String::as_str);
    match state.stats(name, params.get("version").map(String::as_str)) {
        Ok(stats) => json_reply(StatusCode::OK, &json!({ "model_stats": stats })),
        Err(e) => error_reply(&state, &e),
    }
}

async fn all_stats(State(state): Shared) -> Response {
    match state.stats(None, None) {
        Ok(stats) => json_reply(StatusCode::OK, &json!({ "model_stats": stats })),
        Err(e) => error_reply(&state, &e),
    }
}

async fn repository_index(State(state): Shared, body: Bytes) -> Response {
    // tritonclient posts an empty body; `{"ready": true}` lists only the ready models.
    let ready_only = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ready").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    match state.index(ready_only) {
        Ok(entries) => json_reply(StatusCode::OK, &entries),
        Err(e) => error_reply(&state, &e),
    }
}

async fn repository_load(State(state): Shared, Path(model): Path<String>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return error_reply(
            &state,
            &ApiError::unavailable("the server is shutting down"),
        );
    }
    match state.load(&model).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_reply(&state, &e),
    }
}

async fn repository_unload(State(state): Shared, Path(model): Path<String>) -> Response {
    match state.unload(&model).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error_reply(&state, &e),
    }
}

async fn metrics(State(state): Shared) -> Response {
    let mut text = state.scheduler.metrics().to_prometheus();
    text.push_str(&state.front.to_prometheus(
        state.ready(),
        state.draining.load(Ordering::Acquire),
        state.front_lag.now(),
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn infer(
    State(state): Shared,
    Path(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let response = match infer_reply(&state, &params, &headers, body, received).await {
        Ok(response) => response,
        Err(e) => error_reply(&state, &e),
    };
    state
        .front
        .count(Protocol::Http, response.status().as_u16());
    response
}

async fn infer_reply(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    received: Instant,
) -> Result<Response, ApiError> {
    let model = model_of(state, params)?;
    let body = read_body(state, headers, body).await?;
    state.admit()?;
    let header_length = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::bad("Inference-Header-Content-Length is not a byte count")
                })?,
        ),
    };
    let mut input = tensor::decode_http(&body, header_length)?;
    drop(body);
    let rows = std::mem::replace(&mut input.rows, ndarray::Array2::zeros((0, 0)));
    let deadline = state.deadline(received, input.timeout);
    let output = state.infer(&model, rows, received, deadline).await?;
    let reply = tensor::encode_http(&model.name, &model.version, &input, output);
    let mut response = Response::new(Body::from(reply.body));
    let headers = response.headers_mut();
    match reply.header_length {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(response)
}

/// Reads the body within the byte limit: 413 from `Content-Length` before reading anything, or
/// as soon as a body without one goes over.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.body_limit;
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && encoding.as_bytes() != b"identity"
    {
        return Err(ApiError::bad(format!(
            "Content-Encoding {encoding:?} is not supported: send the body uncompressed"
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(size) = declared
        && size > limit as u64
    {
        return Err(ApiError::TooLarge {
            size,
            limit: limit as u64,
        });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::TooLarge {
            size: declared.unwrap_or(limit as u64 + 1),
            limit: limit as u64,
        }),
        Err(e) => Err(ApiError::bad(format!("reading the request body: {e}"))),
    }
}
