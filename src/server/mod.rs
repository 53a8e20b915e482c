//! The network server (feature `server`): the Open Inference Protocol (KServe V2, which Triton
//! speaks too) over HTTP and gRPC, in front of a [`crate::Scheduler`], so that
//! `tritonclient`, the `kserve` SDK and KServe itself work with densebatch unchanged.
//!
//! Every subfolder of the model repository is a model named after it (anything
//! [`crate::Model::load`] reads). [`serve`] binds both ports, reports live at once,
//! loads and warms every model, reports ready only then, and serves until SIGTERM or SIGINT:
//! then it reports not ready, finishes every accepted request and returns.
//!
//! Under load it refuses rather than queue without bound: a full model queue answers 503 with
//! `Retry-After` (429 if configured; gRPC UNAVAILABLE), a body over the limit 413, and every
//! request carries a deadline (the client's `timeout` parameter or `grpc-timeout`, else
//! [`ServerConfig::default_timeout`]) after which it is answered 504 / DEADLINE_EXCEEDED and,
//! if still queued, never computed. A client that disconnects cancels its request. When the
//! front itself falls behind (decoding costs more than it has), inference requests are refused
//! before decoding until it catches up ([`ServerConfig::max_front_lag`]).
//!
//! ```no_run
//! use densebatch::server::{ServerConfig, serve};
//!
//! let config = ServerConfig::new("models");
//! serve(config, |started| println!("{started}"))?;
//! # Ok::<(), densebatch::server::ServerError>(())
//! ```

mod error;
mod front_lag;
mod front_metrics;
mod grpc;
mod http;
mod state;
mod stats;
mod tensor;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;

use crate::{Precision, Scheduler, SchedulerConfig, SchedulerError, ThreadBudget};
use state::AppState;
use stats::BatchBook;

/// The gRPC messages, client and server generated from `src/server/proto/inference.proto`
/// (package `inference`, service `GRPCInferenceService`): a client in Rust uses
/// `proto::grpc_inference_service_client::GrpcInferenceServiceClient`.
#[doc(hidden)]
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod proto {
    tonic::include_proto!("inference");
}

/// The platform name the metadata and configuration report.
const PLATFORM: &str = "densebatch_mlp";
/// The protocol extensions served, as `GET /v2` lists them.
const EXTENSIONS: [&str; 4] = [
    "binary_tensor_data",
    "model_repository",
    "statistics",
    "model_configuration",
];

/// How the server is set up. [`ServerConfig::new`] gives the defaults of `densebatch serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The folder whose every subfolder is a model.
    pub model_repository: PathBuf,
    /// Address to listen on.
    pub host: IpAddr,
    /// HTTP port (0: any free port; [`Started`] tells which).
    pub http_port: u16,
    /// gRPC port (0: any free port).
    pub grpc_port: u16,
    /// Most rows per batch, and per request.
    pub max_batch: usize,
    /// Longest a batch waits to fill.
    pub max_wait: Duration,
    /// Requests each model may hold queued before refusing.
    pub queue_capacity: usize,
    /// Deadline of a request whose client set none.
    pub default_timeout: Duration,
    /// Compute pool threads (`None`: one per CPU the process may use).
    pub threads: Option<usize>,
    /// Weight precision every model is compiled in (`F32` by default); each model's
    /// configuration reports it.
    pub precision: Precision,
    /// Threads of the async front (HTTP and gRPC).
    pub front_threads: usize,
    /// Largest request body accepted, in bytes (HTTP; gRPC messages too).
    pub body_limit: usize,
    /// Status of an overload refusal over HTTP: 503 (default) or 429.
    pub overload_status: u16,
    /// Inference requests are refused as overload while the async front runs this far behind
    /// (its run queue and sockets hold the backlog the model queues cannot see);
    /// `Duration::MAX` never refuses for it.
    pub max_front_lag: Duration,
    /// After SIGTERM, how long to keep accepting (reporting not ready) before closing, so a
    /// load balancer has seen the readiness change.
    pub drain_delay: Duration,
    /// Longest wait for open connections to finish after closing.
    pub shutdown_timeout: Duration,
}

impl ServerConfig {
    /// The defaults for serving `model_repository`: 127.0.0.1, HTTP 8080, gRPC 8081, f32
    /// weights, 64 rows per batch, 500 µs max wait, 1024 queued requests per model, 10 s default
    /// deadline, a 64 MiB body limit, one front thread, 503 on overload, refused beyond 10 ms of
    /// front lag.
    pub fn new(model_repository: impl Into<PathBuf>) -> Self {
        ServerConfig {
            model_repository: model_repository.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 8080,
            grpc_port: 8081,
            max_batch: 64,
            max_wait: Duration::from_micros(500),
            queue_capacity: 1024,
            default_timeout: Duration::from_secs(10),
            threads: None,
            precision: Precision::F32,
            front_threads: 1,
            body_limit: 64 << 20,
            overload_status: 503,
            max_front_lag: Duration::from_millis(10),
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// What [`serve`] reports once its ports are bound (models may still be warming).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Started {
    /// The HTTP address.
    pub http: SocketAddr,
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The compute side of the thread budget.
    pub budget: ThreadBudget,
    /// Threads of the async front.
    pub front_threads: usize,
    /// Most threads the front may start for loading and unloading models.
    pub blocking_threads: usize,
}

impl fmt::Display for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.budget)?;
        writeln!(
            f,
            "front: {} async threads (HTTP and gRPC), up to {} for model loads, 1 statistics thread",
            self.front_threads, self.blocking_threads
        )?;
        write!(f, "listening: http {} grpc {}", self.http, self.grpc)
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The scheduler could not be built.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// A socket or thread could not be set up.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A model of the repository failed to load at start.
    #[error("{0}")]
    Load(ApiError),
    /// A protocol server failed.
    #[error("{0}")]
    Serve(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// Threads the runtime may start for blocking work (loading, compiling and warming a model).
const BLOCKING_THREADS: usize = 2;

/// Runs the server until SIGTERM or SIGINT, then drains and returns `Ok`. `on_start` is called
/// once both ports are bound, before the models load.
///
/// # Errors
/// [`ServerError`]: a bad configuration, a port that cannot be bound, a model of the repository
/// that does not load (the server then drains and stops).
pub fn serve(config: ServerConfig, on_start: impl FnOnce(&Started)) -> Result<(), ServerError> {
    serve_until(config, on_start, shutdown_signal())
}

/// As [`serve`], stopping when `stop` completes instead of at a signal.
///
/// # Errors
/// As [`serve`].
pub fn serve_until(
    config: ServerConfig,
    on_start: impl FnOnce(&Started),
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    if config.front_threads == 0 || config.max_batch == 0 || config.queue_capacity == 0 {
        return Err(ServerError::Config(
            "front threads, max batch and queue capacity must be at least 1".into(),
        ));
    }
    if ![429, 503].contains(&config.overload_status) {
        return Err(ServerError::Config(format!(
            "overload status {} (use 503 or 429)",
            config.overload_status
        )));
    }
    if !config.model_repository.is_dir() {
        return Err(ServerError::Config(format!(
            "model repository {} is not a folder",
            config.model_repository.display()
        )));
    }
    let (records, record_reader) = crossbeam_channel::bounded(4096);
    let mut scheduler_config = SchedulerConfig::default().record_sink(records);
    if let Some(threads) = config.threads {
        scheduler_config = scheduler_config.threads(threads);
    }
    let scheduler = Arc::new(Scheduler::new(scheduler_config)?);
    let batches = Arc::new(BatchBook::default());
    batches
        .spawn_reader(record_reader)
        .map_err(io("starting the statistics thread"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.front_threads)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("densebatch-front")
        .enable_all()
        .build()
        .map_err(io("starting the async runtime"))?;
    let state = Arc::new(AppState::new(scheduler, config, batches));
    let outcome = runtime.block_on(run(Arc::clone(&state), on_start, stop));
    // Every accepted request has been answered by now; this joins the workers.
    state.scheduler.shutdown();
    outcome
}

async fn run(
    state: Arc<AppState>,
    on_start: impl FnOnce(&Started),
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let config = &state.config;
    let http_listener = TcpListener::bind((config.host, config.http_port))
        .await
        .map_err(io(format!(
            "binding HTTP on {}:{}",
            config.host, config.http_port
        )))?;
    let grpc_listener = TcpListener::bind((config.host, config.grpc_port))
        .await
        .map_err(io(format!(
            "binding gRPC on {}:{}",
            config.host, config.grpc_port
        )))?;
    let started = Started {
        http: http_listener.local_addr().map_err(io("HTTP address"))?,
        grpc: grpc_listener.local_addr().map_err(io("gRPC address"))?,
        budget: *state.scheduler.budget(),
        front_threads: config.front_threads,
        blocking_threads: BLOCKING_THREADS,
    };
    on_start(&started);
    tokio::spawn(Arc::clone(&state.front_lag).probe());

    // Closing the listeners: flipped after the drain delay.
    let (close, closed) = watch::channel(false);
    let closed_signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|closed| *closed).await;
    };

    let http = {
        use axum::serve::ListenerExt;
        let listener = http_listener.tap_io(|socket| {
            // Small replies must not wait for Nagle's algorithm.
            let _ = socket.set_nodelay(true);
        });
        let app = http::router(Arc::clone(&state));
        let signal = closed_signal(closed.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
                .map_err(|e| ServerError::Serve(format!("HTTP: {e}")))
        })
    };
    let grpc = {
        let service =
            proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(grpc::Service {
                state: Arc::clone(&state),
            })
            .max_decoding_message_size(config.body_limit)
            .max_encoding_message_size(usize::MAX);
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let signal = closed_signal(closed.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, signal)
                .await
                .map_err(|e| ServerError::Serve(format!("gRPC: {e}")))
        })
    };

    // Load every model of the repository, then report ready.
    let loader = {
        let state = Arc::clone(&state);
        async move {
            let names = state
                .repository_names()
                .map_err(io("reading the model repository"))?;
            for name in names {
                state.load(&name).await.map_err(ServerError::Load)?;
            }
            state.started.store(true, Ordering::Release);
            Ok::<(), ServerError>(())
        }
    };
    tokio::pin!(stop);
    let mut outcome = tokio::select! {
        loaded = loader => match loaded {
            Ok(()) => { stop.await; Ok(()) }
            Err(e) => Err(e),
        },
        () = &mut stop => Ok(()),
    };

    // Drain: not ready from now on; keep serving for the delay, then close and let every
    // open request finish (each has a deadline).
    state.draining.store(true, Ordering::Release);
    tokio::time::sleep(state.config.drain_delay).await;
    let _ = close.send(true);
    let timeout = state.config.shutdown_timeout;
    for (name, server) in [("HTTP", http), ("gRPC", grpc)] {
        match tokio::time::timeout(timeout, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => outcome = outcome.and(Err(e)),
            Ok(Err(e)) => outcome = outcome.and(Err(ServerError::Serve(format!("{name}: {e}")))),
            Err(_) => {
                outcome = outcome.and(Err(ServerError::Serve(format!(
                    "{name}: connections still open {timeout:?} after shutdown began"
                ))))
            }
        }
    }
    outcome
}

/// Completes at SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Decodes an HTTP infer body as the infer route does (the fuzz target's door): the rows' shape.
pub(crate) fn decode_http_infer(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<(usize, usize), ApiError> {
    let input = tensor::decode_http(&bytes::Bytes::copy_from_slice(body), header_length)?;
    Ok(input.rows.dim())
}

/// Decodes a protobuf `ModelInferRequest` as the gRPC infer call does: the rows' shape.
pub(crate) fn decode_grpc_infer(message: &[u8]) -> Result<(usize, usize), ApiError> {
    let request = <proto::ModelInferRequest as prost::Message>::decode(message)
        .map_err(|e| ApiError::bad(format!("malformed ModelInferRequest: {e}")))?;
    Ok(grpc::decode(request)?.rows.dim())
}
