//! The models by name: load, replace, unload at run time, each instance with its own queue
//! and worker; the registry owns the instances' lifecycles (warming, serving, draining).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use super::config::{ModelConfig, SchedulerThread};
use super::error::SchedulerError;
use super::instance::{ModelHandle, ModelShared};
use super::state::ModelState;
use super::worker::{self, WarmupFailure, WorkerContext};
use crate::Predictor;

#[derive(Debug)]
struct Entry {
    handle: Arc<ModelHandle>,
    worker: JoinHandle<()>,
}

impl Entry {
    /// Closes the registry's end of the queue and waits until the worker has answered
    /// everything it accepted.
    fn drain(self) {
        let _ = self.close().join();
    }

    /// Closes the registry's end of the queue; the worker exits once it has drained it.
    fn close(self) -> JoinHandle<()> {
        let Entry { handle, worker } = self;
        handle.shared.set_state(ModelState::Draining);
        drop(handle);
        worker
    }
}

#[derive(Debug, Default)]
struct Inner {
    accepting: bool,
    serving: HashMap<String, Entry>,
    /// Warming or draining instances, for listings and snapshots.
    transitional: Vec<Arc<ModelShared>>,
    /// The models that were serving at shutdown, kept so a snapshot taken after it still
    /// reports their final counters.
    stopped: Vec<Arc<ModelShared>>,
    generations: HashMap<String, u64>,
}

/// Why no model can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    ShuttingDown,
    Unknown,
}

/// The models, by name.
#[derive(Debug)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
    context: WorkerContext,
    ring_capacity: usize,
}

impl Registry {
    pub(crate) fn new(context: WorkerContext, ring_capacity: usize) -> Self {
        Registry {
            inner: RwLock::new(Inner {
                accepting: true,
                ..Inner::default()
            }),
            context,
            ring_capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The model's handle, if it is being served.
    pub(crate) fn handle(&self, name: &str) -> Result<Arc<ModelHandle>, Unavailable> {
        let inner = self.read();
        if !inner.accepting {
            return Err(Unavailable::ShuttingDown);
        }
        inner
            .serving
            .get(name)
            .map(|e| Arc::clone(&e.handle))
            .ok_or(Unavailable::Unknown)
    }

    /// Loads (or, with `replace`, replaces) `name`: starts its worker, waits for warmup, then
    /// routes traffic to it. A replaced instance finishes its accepted requests before this
    /// returns.
    pub(crate) fn install(
        &self,
        name: &str,
        predictor: Arc<dyn Predictor>,
        config: ModelConfig,
        replace: bool,
    ) -> Result<(), SchedulerError> {
        config.validate()?;
        let shared = {
            let mut inner = self.write();
            if !inner.accepting {
                return Err(SchedulerError::ShuttingDown);
            }
            match (replace, inner.serving.contains_key(name)) {
                (false, true) => return Err(SchedulerError::AlreadyLoaded(name.to_string())),
                (true, false) => return Err(SchedulerError::UnknownModel(name.to_string())),
                _ => {}
            }
            let generation = inner.generations.entry(name.to_string()).or_default();
            *generation += 1;
            let shared = Arc::new(ModelShared::new(
                name,
                *generation,
                config,
                self.ring_capacity,
            ));
            inner.transitional.push(Arc::clone(&shared));
            shared
        };
        let (queue, receiver) = crossbeam_channel::bounded(config.queue_capacity);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(format!("densebatch-{name}"))
            .spawn({
                let (context, shared, predictor) = (
                    self.context.clone(),
                    Arc::clone(&shared),
                    Arc::clone(&predictor),
                );
                move || {
                    if let Some(start) = &context.thread_start {
                        start.call(&SchedulerThread::Worker {
                            model: shared.name.to_string(),
                        });
                    }
                    worker::run(context, shared, predictor, receiver, ready_tx)
                }
            });
        let worker = match spawned {
            Ok(w) => w,
            Err(e) => {
                self.forget_transitional(&shared);
                return Err(SchedulerError::Spawn(e));
            }
        };
        let warmup = ready_rx.recv().unwrap_or(Err(WarmupFailure::Panicked));
        if let Err(failure) = warmup {
            self.forget_transitional(&shared);
            let _ = worker.join();
            return Err(match failure {
                WarmupFailure::Model(source) => SchedulerError::Warmup {
                    model: name.to_string(),
                    source: Box::new(source),
                },
                WarmupFailure::Panicked => SchedulerError::WarmupPanicked(name.to_string()),
            });
        }
        let entry = Entry {
            handle: Arc::new(ModelHandle {
                shared: Arc::clone(&shared),
                predictor,
                queue,
            }),
            worker,
        };
        let old = {
            let mut inner = self.write();
            inner.transitional.retain(|s| !Arc::ptr_eq(s, &shared));
            let refused = if !inner.accepting {
                Some(SchedulerError::ShuttingDown)
            } else if !replace && inner.serving.contains_key(name) {
                Some(SchedulerError::AlreadyLoaded(name.to_string()))
            } else {
                None
            };
            if let Some(error) = refused {
                drop(inner);
                entry.drain();
                return Err(error);
            }
            let old = inner.serving.insert(name.to_string(), entry);
            if let Some(old) = &old {
                inner.transitional.push(Arc::clone(&old.handle.shared));
            }
            old
        };
        if let Some(old) = old {
            let old_shared = Arc::clone(&old.handle.shared);
            old.drain();
            self.forget_transitional(&old_shared);
        }
        Ok(())
    }

    fn forget_transitional(&self, shared: &Arc<ModelShared>) {
        self.write()
            .transitional
            .retain(|s| !Arc::ptr_eq(s, shared));
    }

    /// Stops routing to `name` and waits until it has answered everything it accepted.
    pub(crate) fn unload(&self, name: &str) -> Result<(), SchedulerError> {
        let entry = {
            let mut inner = self.write();
            let entry = inner
                .serving
                .remove(name)
                .ok_or_else(|| SchedulerError::UnknownModel(name.to_string()))?;
            inner.transitional.push(Arc::clone(&entry.handle.shared));
            entry
        };
        let shared = Arc::clone(&entry.handle.shared);
        entry.drain();
        self.forget_transitional(&shared);
        Ok(())
    }

    /// Stops accepting, then drains and joins every model. Idempotent.
    pub(crate) fn shutdown(&self) {
        let entries: Vec<Entry> = {
            let mut inner = self.write();
            inner.accepting = false;
            let entries: Vec<Entry> = inner.serving.drain().map(|(_, e)| e).collect();
            let shared = entries.iter().map(|e| Arc::clone(&e.handle.shared));
            inner.stopped.extend(shared);
            entries
        };
        // Close every queue first so all models drain in parallel, then wait for each.
        let workers: Vec<JoinHandle<()>> = entries.into_iter().map(Entry::close).collect();
        for worker in workers {
            let _ = worker.join();
        }
    }

    /// Every instance known: serving, warming or draining, with its queue depth.
    pub(crate) fn instances(&self) -> Vec<(Arc<ModelShared>, usize)> {
        let inner = self.read();
        let mut all: Vec<(Arc<ModelShared>, usize)> = inner
            .serving
            .values()
            .map(|e| (Arc::clone(&e.handle.shared), e.handle.queue.len()))
            .chain(inner.transitional.iter().map(|s| (Arc::clone(s), 0)))
            .chain(inner.stopped.iter().map(|s| (Arc::clone(s), 0)))
            .collect();
        all.sort_by(|a, b| (&a.0.name, a.0.generation).cmp(&(&b.0.name, b.0.generation)));
        all
    }
}
