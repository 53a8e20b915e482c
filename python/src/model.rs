//! `Model` and `CompiledModel`: load, compile and predict from numpy.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use densebatch::ndarray::Axis;
use densebatch::{
    Activation, CompileOptions, KernelKind, Model, NonFiniteInput, Precision, Session,
};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::arrays::{check_out, input_f32, output_f32};
use crate::errors;
use crate::threads;

/// A model as data (spec + weights), validated; compile it to predict.
#[pyclass(frozen, name = "Model", module = "densebatch._densebatch")]
pub(crate) struct PyModel {
    pub(crate) inner: Arc<Model>,
}

#[pymethods]
impl PyModel {
    /// Loads `model.json` (file or folder), a reference-harness folder, or an `.onnx` file or
    /// folder holding one.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let model = py
            .detach(|| Model::load(&path))
            .map_err(|e| errors::engine(py, e))?;
        Ok(PyModel {
            inner: Arc::new(model),
        })
    }

    /// A seeded random model: `widths` is the input width then each layer's output width.
    #[staticmethod]
    #[pyo3(signature = (widths, hidden = "relu", output = "identity", seed = 0))]
    fn random(widths: Vec<usize>, hidden: &str, output: &str, seed: u64) -> PyResult<Self> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(PyValueError::new_err(
                "widths needs an input width and at least one layer width, none zero",
            ));
        }
        let model = Model::random(&widths, activation(hidden)?, activation(output)?, seed);
        Ok(PyModel {
            inner: Arc::new(model),
        })
    }

    /// A model from the bytes of its spec (JSON) and weights (safetensors), as `to_bytes` gives.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, spec: &[u8], weights: &[u8]) -> PyResult<Self> {
        let model = py
            .detach(|| Model::from_bytes(spec, weights))
            .map_err(|e| errors::engine(py, e))?;
        Ok(PyModel {
            inner: Arc::new(model),
        })
    }

    /// `(spec_json, safetensors)` bytes; `Model.from_bytes` gives back an equal model.
    fn to_bytes<'py>(&self, py: Python<'py>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let (spec, weights) = py.detach(|| self.inner.to_bytes());
        (PyBytes::new(py, &spec), PyBytes::new(py, &weights))
    }

    /// Saves the spec at `path` and the weights beside it.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path))
            .map_err(|e| errors::engine(py, e))
    }

    /// Packs the weights for this CPU's kernel and starts `threads` compute threads (None: see
    /// `default_threads()`; 1: compute on the calling thread).
    #[pyo3(signature = (*, threads = None, kernel = None, non_finite = "reject", precision = "f32"))]
    fn compile(
        &self,
        py: Python<'_>,
        threads: Option<usize>,
        kernel: Option<&str>,
        non_finite: &str,
        precision: &str,
    ) -> PyResult<PyCompiledModel> {
        PyCompiledModel::build(
            py,
            self.inner.clone(),
            CompileArgs::new(threads, kernel, non_finite, precision)?,
        )
    }

    /// The plain reference path (no SIMD, one thread): the oracle the kernels are tested against.
    fn predict_reference<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = input_f32(x, false)?;
        let x = x.try_readonly()?;
        let view = x.as_array();
        let y = py
            .detach(|| self.inner.predict_reference(view))
            .map_err(|e| errors::engine(py, e))?;
        Ok(y.into_pyarray(py))
    }

    #[getter]
    fn name(&self) -> &str {
        &self.inner.spec().name
    }

    #[getter]
    fn input_width(&self) -> usize {
        self.inner.spec().input_width
    }

    #[getter]
    fn output_width(&self) -> usize {
        self.inner.spec().output_width()
    }

    /// Layer widths: the input width then each layer's output width.
    #[getter]
    fn widths(&self) -> Vec<usize> {
        let spec = self.inner.spec();
        std::iter::once(spec.input_width)
            .chain(spec.layers.iter().map(|l| l.output))
            .collect()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let (spec, weights) = slf.get().to_bytes(py);
        let rebuild = slf.get_type().getattr("from_bytes")?;
        PyTuple::new(
            py,
            [
                rebuild.into_any(),
                PyTuple::new(py, [spec, weights])?.into_any(),
            ],
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(name={:?}, widths={:?})",
            self.inner.spec().name,
            self.widths()
        )
    }
}

/// What `compile` was asked for, kept so a pickled model compiles the same way where it lands
/// (`threads=None` resolves again there, e.g. to a Ray worker's CPUs).
#[derive(Clone, Debug)]
pub(crate) struct CompileArgs {
    threads: Option<usize>,
    kernel: Option<KernelKind>,
    non_finite: NonFiniteInput,
    precision: Precision,
}

impl CompileArgs {
    fn new(
        threads: Option<usize>,
        kernel: Option<&str>,
        non_finite: &str,
        precision: &str,
    ) -> PyResult<Self> {
        if threads == Some(0) {
            return Err(PyValueError::new_err(
                "threads must be at least 1 (or None)",
            ));
        }
        let kernel = kernel.map(kernel_kind).transpose()?;
        let non_finite = match non_finite {
            "reject" => NonFiniteInput::Reject,
            "propagate" => NonFiniteInput::Propagate,
            other => {
                return Err(PyValueError::new_err(format!(
                    "non_finite must be \"reject\" or \"propagate\"; got {other:?}"
                )));
            }
        };
        let precision = precision
            .parse::<Precision>()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(CompileArgs {
            threads,
            kernel,
            non_finite,
            precision,
        })
    }
}

/// A model compiled for this CPU, with its own compute threads; `predict` releases the GIL.
#[pyclass(frozen, name = "CompiledModel", module = "densebatch._densebatch")]
pub(crate) struct PyCompiledModel {
    session: ForkSafeSession,
    source: Arc<Model>,
    args: CompileArgs,
}

/// A session, started again in a process forked from the one that made it: a fork copies the
/// session's state but not its helper threads, so the child's calls would compute alone, or
/// wait forever for a share a helper was running at the moment of the fork.
struct ForkSafeSession {
    current: RwLock<(u32, Arc<Session>)>,
}

impl ForkSafeSession {
    fn new(session: Session) -> Self {
        ForkSafeSession {
            current: RwLock::new((std::process::id(), Arc::new(session))),
        }
    }

    fn get(&self) -> Result<Arc<Session>, densebatch::Error> {
        let pid = std::process::id();
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == pid {
                return Ok(current.1.clone());
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.0 != pid {
            let fresh = Session::new(current.1.model().clone(), current.1.threads())?;
            let stale = std::mem::replace(&mut *current, (pid, Arc::new(fresh)));
            // Never dropped here: its locks may have been held by parent threads at the fork.
            std::mem::forget(stale);
        }
        Ok(current.1.clone())
    }

    /// The session's fixed facts, which a fork does not change.
    fn any(&self) -> Arc<Session> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

impl PyCompiledModel {
    fn build(py: Python<'_>, source: Arc<Model>, args: CompileArgs) -> PyResult<Self> {
        let threads = args.threads.unwrap_or_else(|| threads::resolve().0);
        let mut options = CompileOptions::default()
            .non_finite_input(args.non_finite)
            .precision(args.precision);
        if let Some(kernel) = args.kernel {
            options = options.kernel(kernel);
        }
        let session = py
            .detach(|| source.compile_with(&options)?.session(threads))
            .map_err(|e| errors::engine(py, e))?;
        Ok(PyCompiledModel {
            session: ForkSafeSession::new(session),
            source,
            args,
        })
    }

    pub(crate) fn compiled(&self) -> Arc<densebatch::CompiledModel> {
        self.session.any().model().clone()
    }

    fn last_activation(&self) -> Activation {
        self.source
            .spec()
            .layers
            .last()
            .map_or(Activation::Identity, |l| l.activation)
    }
}

#[pymethods]
impl PyCompiledModel {
    /// `[rows, output_width]` float32 for `x` (`[rows, input_width]` float32, any strides, read
    /// in place). With `out=`, writes there and returns it. `cast=True` converts other dtypes.
    #[pyo3(signature = (x, *, out = None, cast = false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
        cast: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let x = input_f32(x, cast)?;
        let rows = x.dims()[0];
        let session = self.session.get().map_err(|e| errors::engine(py, e))?;
        let cols = session.output_width();
        let out = match out {
            Some(out) => check_out(out, rows, cols)?,
            None => output_f32(py, rows, cols),
        };
        {
            let x = x.try_readonly()?;
            let mut y = out.try_readwrite().map_err(|e| {
                PyValueError::new_err(format!(
                    "out= cannot be written: {e} (it must not share memory with x)"
                ))
            })?;
            let (x, y) = (x.as_array(), y.as_array_mut());
            py.detach(|| session.predict_into(x, y))
                .map_err(|e| errors::engine(py, e))?;
        }
        Ok(out)
    }

    /// Class probabilities, for a model whose output layer is softmax.
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if self.last_activation() != Activation::Softmax {
            return Err(PyValueError::new_err(format!(
                "predict_proba needs a softmax output layer; this model's is {}",
                self.last_activation().name()
            )));
        }
        self.predict(py, x, None, false)
    }

    /// The index of each row's largest output (the first one on ties), as numpy's `argmax`.
    fn predict_classes<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<isize>>> {
        let y = self.predict(py, x, None, false)?;
        let y = y.readonly();
        let y = y.as_array();
        let classes = py.detach(|| {
            y.map_axis(Axis(1), |row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best as isize
            })
        });
        Ok(classes.into_pyarray(py))
    }

    /// The same model compiled again with other settings (the weights are shared).
    #[pyo3(signature = (*, threads = None, kernel = None, non_finite = "reject", precision = "f32"))]
    fn recompile(
        &self,
        py: Python<'_>,
        threads: Option<usize>,
        kernel: Option<&str>,
        non_finite: &str,
        precision: &str,
    ) -> PyResult<PyCompiledModel> {
        PyCompiledModel::build(
            py,
            self.source.clone(),
            CompileArgs::new(threads, kernel, non_finite, precision)?,
        )
    }

    /// The source model (spec and weights).
    #[getter]
    fn model(&self) -> PyModel {
        PyModel {
            inner: self.source.clone(),
        }
    }

    #[getter]
    fn name(&self) -> String {
        self.compiled().name().to_string()
    }

    #[getter]
    fn version(&self) -> String {
        self.compiled().version().to_string()
    }

    #[getter]
    fn input_width(&self) -> usize {
        self.session.any().input_width()
    }

    #[getter]
    fn output_width(&self) -> usize {
        self.session.any().output_width()
    }

    /// The SIMD kernel chosen for this CPU: "avx512", "avx2-fma" or "portable".
    #[getter]
    fn kernel(&self) -> &'static str {
        self.compiled().kernel().name()
    }

    /// How the weights are stored: "f32", "bf16", "int8" or "int8-full".
    #[getter]
    fn precision(&self) -> &'static str {
        self.compiled().precision().name()
    }

    #[getter]
    fn threads(&self) -> usize {
        self.session.any().threads()
    }

    /// Bytes of packed weights.
    #[getter]
    fn weight_bytes(&self) -> usize {
        self.compiled().weight_bytes()
    }

    /// Bytes of scratch per compute thread.
    #[getter]
    fn workspace_bytes(&self) -> usize {
        self.compiled().workspace_bytes()
    }

    #[getter]
    fn flops_per_sample(&self) -> u64 {
        self.compiled().flops_per_sample()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.get();
        let (spec, weights) = PyModel {
            inner: this.source.clone(),
        }
        .to_bytes(py);
        let rebuild = py.import("densebatch._pickle")?.getattr("compiled_model")?;
        let non_finite = match this.args.non_finite {
            NonFiniteInput::Propagate => "propagate",
            _ => "reject",
        };
        let args = (
            spec,
            weights,
            this.args.threads,
            this.args.kernel.map(|k| k.name()),
            non_finite,
            this.args.precision.name(),
        );
        PyTuple::new(py, [rebuild, args.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "CompiledModel(name={:?}, input_width={}, output_width={}, kernel={:?}, threads={})",
            self.name(),
            self.input_width(),
            self.output_width(),
            self.kernel(),
            self.threads()
        )
    }
}

/// `load(path, *, threads=None, kernel=None, non_finite="reject") -> CompiledModel`.
#[pyfunction]
#[pyo3(signature = (path, *, threads = None, kernel = None, non_finite = "reject", precision = "f32"))]
pub(crate) fn load(
    py: Python<'_>,
    path: PathBuf,
    threads: Option<usize>,
    kernel: Option<&str>,
    non_finite: &str,
    precision: &str,
) -> PyResult<PyCompiledModel> {
    let args = CompileArgs::new(threads, kernel, non_finite, precision)?;
    let model = PyModel::load(py, path)?;
    PyCompiledModel::build(py, model.inner, args)
}

/// Names of the kernels this CPU can run, fastest first.
#[pyfunction]
pub(crate) fn supported_kernels() -> Vec<&'static str> {
    KernelKind::all_supported()
        .into_iter()
        .map(KernelKind::name)
        .collect()
}

fn kernel_kind(name: &str) -> PyResult<KernelKind> {
    KernelKind::all_supported()
        .into_iter()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "kernel {name:?} is not supported on this CPU; supported: {:?}",
                supported_kernels()
            ))
        })
}

fn activation(name: &str) -> PyResult<Activation> {
    Activation::ALL
        .into_iter()
        .find(|a| a.name() == name)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown activation {name:?}; one of {:?}",
                Activation::ALL.map(Activation::name)
            ))
        })
}
