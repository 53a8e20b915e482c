//! The crate's one error type. Variants are grouped by the phase that raises them.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a model came from: a file, or memory (a model built in code).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin(Option<PathBuf>);

impl Origin {
    /// The origin of a model read from `path`.
    pub(crate) fn file(path: &Path) -> Self {
        Origin(Some(path.to_path_buf()))
    }

    /// The file, or `None` for a model built in memory.
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("<in-memory model>"),
        }
    }
}

/// Everything that can go wrong in loading, compiling or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- loading -------------------------------------------------------------------------
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file's contents are not what its format requires (bad JSON, truncated or lying header…).
    #[error("{origin}: malformed file: {msg}")]
    Format {
        /// The file.
        origin: Origin,
        /// What is wrong.
        msg: String,
    },
    /// A tensor the spec requires is not in the weights file.
    #[error("{origin}: layer {layer}: tensor `{tensor}` is missing")]
    MissingTensor {
        /// The weights file.
        origin: Origin,
        /// Layer index (0-based).
        layer: usize,
        /// Tensor name.
        tensor: String,
    },
    /// A tensor has a dtype other than float32.
    #[error("{origin}: layer {layer}: tensor `{tensor}` has dtype {dtype}, expected F32")]
    DType {
        /// The weights file.
        origin: Origin,
        /// Layer index (0-based).
        layer: usize,
        /// Tensor name.
        tensor: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor's shape disagrees with the spec.
    #[error(
        "{origin}: layer {layer}: tensor `{tensor}` has shape {got:?}, the spec says {expected:?}"
    )]
    TensorShape {
        /// The weights file.
        origin: Origin,
        /// Layer index (0-based).
        layer: usize,
        /// Tensor name.
        tensor: String,
        /// Shape the spec implies.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// The spec itself is inconsistent: broken width chain, softmax before the last layer, zero widths…
    #[error("{origin}: layer {layer}: {msg}")]
    InvalidSpec {
        /// The spec file.
        origin: Origin,
        /// Layer index (0-based) the problem is found at.
        layer: usize,
        /// What is wrong.
        msg: String,
    },
    /// A weight or bias is NaN or infinite.
    #[error(
        "{origin}: layer {layer}: tensor `{tensor}` holds a non-finite value at flat index {index}"
    )]
    NonFiniteWeight {
        /// The weights file.
        origin: Origin,
        /// Layer index (0-based).
        layer: usize,
        /// Tensor name.
        tensor: String,
        /// Flat (row-major) index of the first bad value.
        index: usize,
    },
    /// The spec asks for more than the model can be (or the file can back).
    #[error("{origin}: layer {layer}: {what} needs {needed} bytes, more than {limit} available")]
    TooLarge {
        /// The file.
        origin: Origin,
        /// Layer index (0-based).
        layer: usize,
        /// What is too large.
        what: &'static str,
        /// Bytes the spec implies.
        needed: u64,
        /// Bytes available (file size, or the engine's limit).
        limit: u64,
    },

    /// The requested kernel cannot run on this CPU.
    #[error("kernel `{kernel}` is not supported by this CPU")]
    UnsupportedKernel {
        /// The kernel's name.
        kernel: &'static str,
    },
    /// A layer's reduction is longer than the requested weight precision can sum exactly.
    #[error(
        "layer {layer}: {inputs} inputs, more than precision {precision} sums exactly (at most {limit})"
    )]
    PrecisionLimit {
        /// The precision's name.
        precision: &'static str,
        /// Layer index (0-based).
        layer: usize,
        /// The layer's input width.
        inputs: usize,
        /// The longest input width the precision accepts.
        limit: usize,
    },

    // ---- ONNX import ---------------------------------------------------------------------
    /// An ONNX node uses an operator the importer does not convert.
    #[error(
        "{origin}: node `{node}`: op {op} is not supported (the importer converts MatMul, Gemm, \
         Add, Relu, Sigmoid, Tanh, Gelu, Softmax and Flatten, and passes over Identity, Cast to \
         float and Reshape to [batch, features])"
    )]
    UnsupportedOnnxOp {
        /// The ONNX file.
        origin: Origin,
        /// The node's name (or `#index` when it has none).
        node: String,
        /// The operator, with its domain when not the default one.
        op: String,
    },
    /// An ONNX node of a supported op is used in a way that cannot become a dense layer.
    #[error("{origin}: node `{node}` ({op}): {msg}")]
    OnnxNode {
        /// The ONNX file.
        origin: Origin,
        /// The node's name (or `#index` when it has none).
        node: String,
        /// The operator.
        op: String,
        /// What is wrong.
        msg: String,
    },

    // ---- prediction ----------------------------------------------------------------------
    /// The input's column count is not the model's input width.
    #[error("input has {got} columns, the model takes {expected}")]
    InputWidth {
        /// The model's input width.
        expected: usize,
        /// Columns given.
        got: usize,
    },
    /// The input is not a matrix (or a single row).
    #[error("input has {got} dimensions, expected 1 (one sample) or 2 (a batch)")]
    InputRank {
        /// Dimensions given.
        got: usize,
    },
    /// The output buffer has the wrong shape.
    #[error("output buffer is {got:?}, expected {expected:?}")]
    OutputShape {
        /// `[rows, output width]`.
        expected: [usize; 2],
        /// Shape given.
        got: [usize; 2],
    },
    /// The input holds NaN or an infinity, and the model rejects those.
    #[error("input row {row}, column {col} is not finite ({value})")]
    NonFiniteInput {
        /// Row (sample) index in the batch.
        row: usize,
        /// Column index.
        col: usize,
        /// The value.
        value: f32,
    },
    /// The workspace was made for another model (narrower, or with fewer rows).
    #[error("workspace holds {got} floats per buffer, this model needs {needed}")]
    WorkspaceTooSmall {
        /// Floats needed per buffer.
        needed: usize,
        /// Floats available per buffer.
        got: usize,
    },
    /// The workspace has no room for a full-int8 model's activation codes (it was made for
    /// another precision, or by hand with [`crate::Workspace::new`]).
    #[error("workspace holds {got} bytes of activation codes, this full-int8 model needs {needed}")]
    WorkspaceWithoutCodes {
        /// Bytes of codes needed.
        needed: usize,
        /// Bytes of codes available.
        got: usize,
    },
    /// Not enough workspaces for the thread pool.
    #[error("{got} workspaces for a pool of {needed} threads")]
    TooFewWorkspaces {
        /// Workspaces needed (one per pool thread).
        needed: usize,
        /// Workspaces given.
        got: usize,
    },
    /// A session's threads could not be started.
    #[error("cannot start a session on {threads} threads: {source}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn format(origin: &Origin, msg: impl Into<String>) -> Self {
        Error::Format {
            origin: origin.clone(),
            msg: msg.into(),
        }
    }

    pub(crate) fn spec(origin: &Origin, layer: usize, msg: impl Into<String>) -> Self {
        Error::InvalidSpec {
            origin: origin.clone(),
            layer,
            msg: msg.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
