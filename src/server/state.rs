//! [`AppState`]: what both protocols share: the scheduler, the models served from the
//! repository folder, readiness and draining, the limits and the statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ndarray::Array2;

use super::ServerConfig;
use super::error::ApiError;
use super::front_lag::FrontLag;
use super::front_metrics::FrontCounters;
use super::stats::{BatchBook, ModelStats, RequestStats};
use crate::{
    CompileOptions, Model, ModelConfig, ModelState, Precision, Request, Scheduler, SchedulerError,
};

/// A model being served, as the protocol describes it.
#[derive(Debug)]
pub(crate) struct ServedModel {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) input_width: usize,
    pub(crate) output_width: usize,
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
    pub(crate) precision: Precision,
    /// Kept across replaces of the same name.
    pub(crate) requests: Arc<RequestStats>,
}

/// One entry of the repository index.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct IndexEntry {
    pub(crate) name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) version: String,
    pub(crate) state: &'static str,
    pub(crate) reason: String,
}

/// The state shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) config: ServerConfig,
    models: RwLock<HashMap<String, Arc<ServedModel>>>,
    /// Set at SIGTERM/SIGINT: not ready from then on.
    pub(crate) draining: AtomicBool,
    /// Set once every model of the repository has loaded and warmed up.
    pub(crate) started: AtomicBool,
    /// One load or unload at a time.
    repository_lock: tokio::sync::Mutex<()>,
    pub(crate) batches: Arc<BatchBook>,
    pub(crate) front: FrontCounters,
    pub(crate) front_lag: Arc<FrontLag>,
}

impl AppState {
    pub(crate) fn new(
        scheduler: Arc<Scheduler>,
        config: ServerConfig,
        batches: Arc<BatchBook>,
    ) -> Self {
        AppState {
            scheduler,
            config,
            models: RwLock::new(HashMap::new()),
            draining: AtomicBool::new(false),
            started: AtomicBool::new(false),
            repository_lock: tokio::sync::Mutex::new(()),
            batches,
            front: FrontCounters::default(),
            front_lag: Arc::new(FrontLag::new()),
        }
    }

    /// The model `name` (and `version`, if given: it must be the model's own).
    pub(crate) fn model(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<ServedModel>, ApiError> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let model = models
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("unknown model '{name}'")))?;
        match version {
            Some(v) if !v.is_empty() && v != model.version => Err(ApiError::NotFound(format!(
                "model '{name}' has no version '{v}' (it serves version '{}')",
                model.version
            ))),
            _ => Ok(Arc::clone(model)),
        }
    }

    /// Every served model, by name.
    pub(crate) fn served(&self) -> Vec<Arc<ServedModel>> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = models.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn scheduler_state(&self, name: &str) -> Option<ModelState> {
        self.scheduler
            .models()
            .into_iter()
            .filter(|m| m.name == name)
            .max_by_key(|m| m.generation)
            .map(|m| m.state)
    }

    /// Whether `name` is served and warm.
    pub(crate) fn model_ready(&self, name: &str) -> bool {
        !self.draining.load(Ordering::Acquire)
            && self.model(name, None).is_ok()
            && matches!(
                self.scheduler_state(name),
                Some(ModelState::Ready | ModelState::Degraded)
            )
    }

    /// Ready: started (every model of the repository warm), not draining, and every served
    /// model warm.
    pub(crate) fn ready(&self) -> bool {
        self.started.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && self.served().iter().all(|m| self.model_ready(&m.name))
    }

    /// Refuses an inference request as overload while the front runs too far behind; called
    /// before decoding, so a refusal costs the front little.
    pub(crate) fn admit(&self) -> Result<(), ApiError> {
        let lag = self.front_lag.now();
        if lag > self.config.max_front_lag {
            return Err(ApiError::unavailable(format!(
                "the server's front is {} ms behind",
                lag.as_millis()
            )));
        }
        Ok(())
    }

    /// The deadline of a request received at `received`: the client's timeout, else the default.
    pub(crate) fn deadline(&self, received: Instant, client: Option<Duration>) -> Instant {
        received + client.unwrap_or(self.config.default_timeout)
    }

    /// Runs `rows` through `model` by `deadline`. Never blocks the runtime: a full queue is
    /// refused at once and the reply is awaited. Dropping this future (the client went away)
    /// drops the reply handle, and the scheduler then drops the request before computing it.
    pub(crate) async fn infer(
        &self,
        model: &ServedModel,
        rows: Array2<f32>,
        received: Instant,
        deadline: Instant,
    ) -> Result<Array2<f32>, ApiError> {
        let outcome = self.submit_and_wait(model, rows, deadline).await;
        model.requests.record(outcome.is_ok(), received.elapsed());
        outcome
    }

    async fn submit_and_wait(
        &self,
        model: &ServedModel,
        rows: Array2<f32>,
        deadline: Instant,
    ) -> Result<Array2<f32>, ApiError> {
        if Instant::now() >= deadline {
            return Err(ApiError::Deadline);
        }
        let reply = self
            .scheduler
            .try_submit(&model.name, Request::new(rows).with_deadline(deadline))?;
        // The scheduler answers an expired queued request itself; the timer covers a request
        // stuck behind a long batch, whose caller is told at its deadline.
        match tokio::time::timeout_at(deadline.into(), reply).await {
            Ok(reply) => Ok(reply?),
            Err(_) => Err(ApiError::Deadline),
        }
    }

    /// The subfolder `name` of the repository, if `name` is a plain folder name.
    fn model_dir(&self, name: &str) -> Result<PathBuf, ApiError> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\'])
            && !name.starts_with('.');
        let dir = self.config.model_repository.join(name);
        if plain && dir.is_dir() {
            Ok(dir)
        } else {
            Err(ApiError::NotFound(format!(
                "no model '{name}' in the model repository"
            )))
        }
    }

    /// Loads (or, if served, replaces) the model `name` from its folder: reads, compiles and
    /// warms it on a blocking thread. A replaced model keeps serving until the new one is warm,
    /// and finishes every request it accepted.
    pub(crate) async fn load(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let dir = self.model_dir(name)?;
        let _one_at_a_time = self.repository_lock.lock().await;
        let state = Arc::clone(self);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || state.load_blocking(&name, &dir))
            .await
            .map_err(|e| ApiError::Internal(format!("loading panicked: {e}")))?
    }

    fn load_blocking(&self, name: &str, dir: &Path) -> Result<(), ApiError> {
        let fail =
            |e: &dyn std::fmt::Display| ApiError::bad(format!("loading model '{name}': {e}"));
        let options = CompileOptions::default().precision(self.config.precision);
        let compiled = Model::load(dir)
            .and_then(|m| m.compile_with(&options))
            .map_err(|e| fail(&e))?;
        let served = ServedModel {
            name: name.to_string(),
            // Triton's versions are numbers; a model that names none is version 1.
            version: match compiled.version() {
                "" => "1".to_string(),
                v => v.to_string(),
            },
            input_width: compiled.input_width(),
            output_width: compiled.output_width(),
            max_batch: self.config.max_batch,
            max_wait: self.config.max_wait,
            precision: compiled.precision(),
            requests: self
                .model(name, None)
                .map_or_else(|_| Arc::default(), |m| Arc::clone(&m.requests)),
        };
        let config = ModelConfig::default()
            .max_batch_size(self.config.max_batch)
            .max_wait(self.config.max_wait)
            .queue_capacity(self.config.queue_capacity);
        let compiled = Arc::new(compiled);
        let installed = match self.scheduler.load(name, compiled.clone(), config) {
            Err(SchedulerError::AlreadyLoaded(_)) => self.scheduler.replace(name, compiled, config),
            other => other,
        };
        installed.map_err(|e| match e {
            SchedulerError::ShuttingDown => ApiError::unavailable("the server is shutting down"),
            e => fail(&e),
        })?;
        self.models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(served));
        Ok(())
    }

    /// Unloads `name`: new requests get 404 at once; the ones it accepted are answered first.
    pub(crate) async fn unload(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let _one_at_a_time = self.repository_lock.lock().await;
        let removed = self
            .models
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed.is_none() {
            return Err(ApiError::NotFound(format!("model '{name}' is not loaded")));
        }
        let state = Arc::clone(self);
        let name = name.to_string();
        tokio::task::spawn_blocking(move || state.scheduler.unload(&name))
            .await
            .map_err(|e| ApiError::Internal(format!("unloading panicked: {e}")))?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The models of the repository folder (sorted), served or not.
    pub(crate) fn repository_names(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.config.model_repository)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `is_dir` on the path follows symbolic links: a repository may link its models.
            if entry.path().is_dir() && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The repository index: every folder, with its state (Triton's names).
    pub(crate) fn index(&self, ready_only: bool) -> Result<Vec<IndexEntry>, ApiError> {
        let names = self
            .repository_names()
            .map_err(|e| ApiError::Internal(format!("reading the model repository: {e}")))?;
        let mut entries = Vec::new();
        for name in names {
            let served = self.model(&name, None).ok();
            let (state, reason) = match (served.is_some(), self.scheduler_state(&name)) {
                (true, Some(ModelState::Ready)) => ("READY", String::new()),
                (true, Some(ModelState::Degraded)) => {
                    ("READY", "degraded: a batch panicked".to_string())
                }
                (true, Some(ModelState::Warming)) => ("LOADING", String::new()),
                (true, Some(ModelState::Draining)) => ("UNLOADING", String::new()),
                (_, Some(ModelState::Draining)) => ("UNLOADING", String::new()),
                _ => ("UNAVAILABLE", "unloaded".to_string()),
            };
            if ready_only && state != "READY" {
                continue;
            }
            entries.push(IndexEntry {
                version: served.map(|m| m.version.clone()).unwrap_or_default(),
                name,
                state,
                reason,
            });
        }
        Ok(entries)
    }

    /// Statistics of `name`, or of every served model.
    pub(crate) fn stats(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<ModelStats>, ApiError> {
        let models = match name {
            Some(name) => vec![self.model(name, version)?],
            None => self.served(),
        };
        let snapshot = self.scheduler.metrics();
        Ok(models
            .iter()
            .map(|m| {
                self.batches
                    .model_stats(&m.name, &m.version, &m.requests, snapshot.model(&m.name))
            })
            .collect())
    }
}
