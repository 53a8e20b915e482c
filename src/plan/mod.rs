//! Planning: turning a validated [`crate::Model`] into a [`CompiledModel`] (options, the
//! measured tuning constants, weight packing). Nothing here runs a batch; `run/` does.

mod cache;
mod compile;
mod options;
mod tuning;

pub use compile::CompiledModel;
pub(crate) use compile::{CompiledLayer, workspace_stride};
pub use options::{CompileOptions, NonFiniteInput, Tuning};
pub(crate) use tuning::{COLUMN_PATH_SLACK_PERCENT, L3_MIN_CHUNK_ROWS, MIN_CHUNK_ROWS};
