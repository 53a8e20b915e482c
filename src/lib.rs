//! # densebatch
//!
//! A parallel batch inference engine for dense neural networks (MLPs) on CPUs: fast at every
//! batch size, bit-for-bit reproducible, and explicit about threads and memory.
//!
//! ## Quick start
//!
//! ```
//! use densebatch::prelude::*;
//! use ndarray::Array2;
//!
//! // A model is data: a spec plus weights. Here a seeded random one; `Model::load` reads files
//! // (our `model.json`, a reference-harness folder, `.onnx`).
//! let model = Model::random(&[16, 32, 4], Activation::Relu, Activation::Identity, 42);
//! // Compile once (pick the kernel, pack the weights), then run on two threads.
//! let session = model.compile()?.session(2)?;
//! let x = Array2::from_shape_fn((64, 16), |(i, j)| ((i * 16 + j) as f32).sin());
//! let y = session.predict(x.view())?;
//!
//! // A sample's result is bit-identical whatever batch it came in,
//! let alone = session.predict(x.slice(ndarray::s![5..6, ..]))?;
//! assert_eq!(alone.row(0), y.row(5));
//! // and agrees with the naive reference loops.
//! assert_eq!(model.predict_reference(x.view())?, y);
//! # Ok::<(), densebatch::Error>(())
//! ```
//!
//! [`Session`] owns its threads and workspaces; [`predict_batch`] is the expert path on a pool of your
//! own; [`Scheduler`] batches single requests for several models. How a request flows through the
//! modules: `docs/ARCHITECTURE.md`.
//!
//! ## Determinism
//!
//! Every kernel computes each output as one fused-multiply-add chain in input order, seeded with
//! the bias: `acc = b[n]; for k in 0..K { acc = fma(x[k], W[k, n], acc) }`. Work is split across
//! threads by rows (and, for small batches, by output columns), never inside that chain, so the
//! result bits do not depend on the batch size, the sample's position or the thread count.
//! Weights may be stored in bf16 or int8 ([`Precision`], [`CompileOptions::precision`]); each
//! precision defines its own chain (see [`Precision`]) and keeps the promise within itself.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(unsafe_op_in_unsafe_fn, missing_debug_implementations, unreachable_pub)]

mod accuracy;
mod activation;
mod alloc_count;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod kernels;
mod load;
mod model;
mod onnx;
mod plan;
mod predictor;
mod run;
mod scheduler;
#[cfg(feature = "server")]
pub mod server;
mod workspace;

pub use ndarray;
pub use rayon;

pub use accuracy::OutputError;
pub use activation::Activation;
pub use alloc_count::{AllocScope, AllocUsage, CountingAllocator};
pub use error::{Error, Origin, Result};
pub use kernels::{KernelKind, MAX_INT8_FULL_K, ParsePrecisionError, Precision};
pub use model::{LayerSpec, LayerWeights, Model, ModelSpec};
pub use onnx::{import_onnx, import_onnx_bytes};
pub use plan::{CompileOptions, CompiledModel, NonFiniteInput, Tuning};
pub use predictor::{Predictor, Split};
pub use run::{Session, predict_batch};
#[doc(hidden)]
pub use scheduler::CpuLimits;
pub use scheduler::{
    BatchPolicy, BatchRecord, CloseReason, Counters, HistogramSnapshot, LatencySummary,
    MetricsSnapshot, ModelConfig, ModelSnapshot, ModelState, ModelStatus, Reply, ReplyFuture,
    ReplyHandle, Request, RequestError, Scheduler, SchedulerConfig, SchedulerError,
    SchedulerThread, ServeError, SizeHistogramSnapshot, SubmitError, ThreadBudget,
};
pub use workspace::Workspace;

/// The names most programs need.
pub mod prelude {
    pub use crate::{
        Activation, CompileOptions, CompiledModel, Error, KernelKind, Model, NonFiniteInput,
        Precision, Predictor, Session, Workspace, predict_batch,
    };
}

/// `Arc<dyn Predictor>` must stay shareable across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn Predictor>();
    assert_send_sync::<CompiledModel>();
};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
