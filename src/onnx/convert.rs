//! From an ONNX graph to dense layers: walk the nodes in order along the one running value,
//! folding each "matrix product, biases, activation" run into a layer.

use std::collections::HashMap;

use ndarray::{Array1, Array2};

use super::proto::{
    AttributeProto, DATA_LOCATION_EXTERNAL, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto, data_type,
};
use crate::activation::Activation;
use crate::error::{Error, Origin, Result};
use crate::model::{LayerSpec, LayerWeights, Model, ModelSpec};

/// A layer being assembled: its product is known, biases and activation may follow.
struct PendingLayer {
    weight: Array2<f32>,
    bias: Option<Array1<f32>>,
    activation: Option<Activation>,
}

/// The node being converted, for error messages.
struct NodeRef<'a> {
    origin: &'a Origin,
    label: String,
    op: &'a str,
}

impl NodeRef<'_> {
    fn error(&self, msg: impl Into<String>) -> Error {
        Error::OnnxNode {
            origin: self.origin.clone(),
            node: self.label.clone(),
            op: self.op.to_string(),
            msg: msg.into(),
        }
    }
}

/// Everything the walk keeps between nodes.
struct Walk<'a> {
    origin: &'a Origin,
    initializers: HashMap<&'a str, &'a TensorProto>,
    /// Opset of the default domain (some defaults, e.g. Softmax's axis, depend on it).
    opset: i64,
    /// Name of the value carrying the chain.
    current: String,
    /// Its shape where known, batch dimension first.
    current_shape: Vec<Option<usize>>,
    input_width: Option<usize>,
    layers: Vec<LayerWeights>,
    specs: Vec<LayerSpec>,
    pending: Option<PendingLayer>,
}

pub(super) fn convert(model: &ModelProto, origin: &Origin, fallback_name: &str) -> Result<Model> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::format(origin, "the ONNX model has no graph"))?;
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let input = single_input(graph, &initializers, origin)?;
    let output = match graph.output.as_slice() {
        [output] => output,
        outputs => {
            return Err(Error::format(
                origin,
                format!(
                    "the graph has {} outputs; a dense model has exactly one",
                    outputs.len()
                ),
            ));
        }
    };
    let current_shape = value_shape(input, origin)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let mut walk = Walk {
        origin,
        initializers,
        opset,
        current: input.name.clone(),
        input_width: match current_shape.as_slice() {
            [_, width] => *width,
            _ => None,
        },
        current_shape,
        layers: Vec::new(),
        specs: Vec::new(),
        pending: None,
    };
    for (index, node) in graph.node.iter().enumerate() {
        walk.node(index, node)?;
    }
    walk.finish_layer();
    if walk.current != output.name {
        return Err(Error::format(
            origin,
            format!(
                "the graph's output `{}` is not the end of the chain of dense layers (`{}`)",
                output.name, walk.current
            ),
        ));
    }
    let Some(first) = walk.specs.first() else {
        return Err(Error::format(
            origin,
            "the graph has no MatMul or Gemm node",
        ));
    };
    let input_width = walk.input_width.unwrap_or(first.input);
    let name = if graph.name.is_empty() {
        fallback_name.to_string()
    } else {
        graph.name.clone()
    };
    let spec = ModelSpec {
        name,
        version: if model.model_version != 0 {
            model.model_version.to_string()
        } else {
            String::new()
        },
        input_width,
        weights: "model.safetensors".to_string(),
        layers: walk.specs,
    };
    Model::with_origin(spec, walk.layers, origin)
}

/// The one graph input that is not an initializer (older files list weights as inputs too).
fn single_input<'a>(
    graph: &'a GraphProto,
    initializers: &HashMap<&str, &TensorProto>,
    origin: &Origin,
) -> Result<&'a ValueInfoProto> {
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_str()))
        .collect();
    match inputs.as_slice() {
        [input] => Ok(input),
        _ => Err(Error::format(
            origin,
            format!(
                "the graph has {} data inputs ({}); a dense model has exactly one",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The declared shape of a graph input (symbolic dimensions as `None`); it must be float32.
fn value_shape(value: &ValueInfoProto, origin: &Origin) -> Result<Vec<Option<usize>>> {
    let Some(tensor) = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Err(Error::format(
            origin,
            format!("graph input `{}` is not a tensor", value.name),
        ));
    };
    if tensor.elem_type != data_type::FLOAT {
        return Err(Error::format(
            origin,
            format!(
                "graph input `{}` has element type {}; the engine takes FLOAT (float32)",
                value.name,
                data_type::name(tensor.elem_type)
            ),
        ));
    }
    Ok(tensor.shape.as_ref().map_or_else(Vec::new, |shape| {
        shape
            .dim
            .iter()
            .map(|d| d.dim_value.filter(|v| *v > 0).map(|v| v as usize))
            .collect()
    }))
}

impl<'a> Walk<'a> {
    fn node(&mut self, index: usize, node: &'a NodeProto) -> Result<()> {
        let label = if node.name.is_empty() {
            format!("#{index}")
        } else {
            node.name.clone()
        };
        let op = node.op_type.as_str();
        let at = NodeRef {
            origin: self.origin,
            label,
            op,
        };
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        let gelu_domain = op == "Gelu" && node.domain == "com.microsoft";
        let known = matches!(
            op,
            "MatMul"
                | "Gemm"
                | "Add"
                | "Relu"
                | "Sigmoid"
                | "Tanh"
                | "Gelu"
                | "Softmax"
                | "Flatten"
                | "Identity"
                | "Cast"
                | "Reshape"
        );
        if !known || !(default_domain || gelu_domain) {
            return Err(Error::UnsupportedOnnxOp {
                origin: self.origin.clone(),
                node: at.label,
                op: if default_domain {
                    op.to_string()
                } else {
                    format!("{}.{op}", node.domain)
                },
            });
        }
        if node.output.len() != 1 {
            return Err(at.error(format!("has {} outputs, expected one", node.output.len())));
        }
        if !node.input.contains(&self.current) {
            return Err(at.error(format!(
                "does not read the running value `{}`; only a single chain of layers is supported",
                self.current
            )));
        }
        match op {
            "MatMul" => self.matmul(&at, node)?,
            "Gemm" => self.gemm(&at, node)?,
            "Add" => self.add(&at, node)?,
            "Flatten" => self.flatten(&at, node)?,
            "Identity" => {}
            "Cast" => {
                let to = attr_i(node, "to").unwrap_or(0);
                if to != i64::from(data_type::FLOAT) {
                    return Err(at.error(format!(
                        "casts to {}; the engine computes in FLOAT only",
                        data_type::name(to as i32)
                    )));
                }
            }
            "Reshape" => self.reshape(&at, node)?,
            _ => self.activation(&at, node)?,
        }
        self.current = node.output[0].clone();
        Ok(())
    }

    /// The operands of a binary node: the running value's position, and the other one, which
    /// must be an initializer.
    fn weight_operand(
        &self,
        at: &NodeRef<'_>,
        node: &NodeProto,
    ) -> Result<(usize, &'a TensorProto)> {
        if node.input.len() != 2 {
            return Err(at.error(format!("has {} inputs, expected two", node.input.len())));
        }
        let data_at = node
            .input
            .iter()
            .position(|i| *i == self.current)
            .expect("checked by the caller");
        let other = &node.input[1 - data_at];
        if *other == self.current {
            return Err(at.error("both operands are the running value"));
        }
        let tensor = self.initializer(at, other)?;
        Ok((data_at, tensor))
    }

    fn initializer(&self, at: &NodeRef<'_>, name: &str) -> Result<&'a TensorProto> {
        self.initializers.get(name).copied().ok_or_else(|| {
            at.error(format!(
                "operand `{name}` is not an initializer (a constant weight)"
            ))
        })
    }

    /// The running value must be 2-D (after any Flatten) where a product reads it.
    fn check_rank(&self, at: &NodeRef<'_>) -> Result<()> {
        if self.current_shape.len() > 2 {
            return Err(at.error(format!(
                "reads `{}` of rank {}; add a Flatten first (only [batch, features] inputs)",
                self.current,
                self.current_shape.len()
            )));
        }
        Ok(())
    }

    fn matmul(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        self.check_rank(at)?;
        let (data_at, tensor) = self.weight_operand(at, node)?;
        if data_at != 0 {
            return Err(at.error(
                "the weight is the left operand; only `running value × weight` is supported",
            ));
        }
        let weight = matrix(at, tensor)?;
        self.start_layer(at, weight)
    }

    fn gemm(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        self.check_rank(at)?;
        if !(2..=3).contains(&node.input.len()) || node.input[0] != self.current {
            return Err(at.error(format!(
                "expects the running value `{}` as input A, and B (and C) as initializers",
                self.current
            )));
        }
        let alpha = attr_f(node, "alpha").unwrap_or(1.0);
        let beta = attr_f(node, "beta").unwrap_or(1.0);
        if attr_i(node, "transA").unwrap_or(0) != 0 {
            return Err(at.error("transA = 1 transposes the batch; not supported"));
        }
        let b = self.initializer(at, &node.input[1])?;
        let mut weight = matrix(at, b)?;
        if attr_i(node, "transB").unwrap_or(0) != 0 {
            weight = weight.t().as_standard_layout().into_owned();
        }
        if alpha != 1.0 {
            // alpha · (A·B) is folded into the weights: one rounding per weight, well inside the
            // float32 tolerance of the product itself.
            weight.mapv_inplace(|w| w * alpha);
        }
        let outputs = weight.ncols();
        self.start_layer(at, weight)?;
        if let Some(c) = node.input.get(2).filter(|c| !c.is_empty()) {
            let c = self.initializer(at, c)?;
            let mut bias = bias_vector(at, c, outputs)?;
            if beta != 1.0 {
                bias.mapv_inplace(|v| v * beta);
            }
            self.pending.as_mut().expect("just started").bias = Some(bias);
        }
        Ok(())
    }

    fn start_layer(&mut self, at: &NodeRef<'_>, weight: Array2<f32>) -> Result<()> {
        if let Some(width) = self.current_width()
            && weight.nrows() != width
        {
            return Err(at.error(format!(
                "the weight is [{}, {}] but `{}` has {width} features",
                weight.nrows(),
                weight.ncols(),
                self.current
            )));
        }
        self.finish_layer();
        self.current_shape = vec![None, Some(weight.ncols())];
        self.pending = Some(PendingLayer {
            weight,
            bias: None,
            activation: None,
        });
        Ok(())
    }

    fn current_width(&self) -> Option<usize> {
        match self.current_shape.as_slice() {
            [_, width] => *width,
            _ => None,
        }
    }

    fn add(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        let (_, tensor) = self.weight_operand(at, node)?;
        let Some(pending) = self.pending.as_mut() else {
            return Err(at.error("adds to a value that no MatMul or Gemm produced"));
        };
        if pending.activation.is_some() {
            return Err(at.error("adds after an activation; only a bias before it can be folded"));
        }
        let bias = bias_vector(at, tensor, pending.weight.ncols())?;
        pending.bias = Some(match pending.bias.take() {
            Some(existing) => existing + bias,
            None => bias,
        });
        Ok(())
    }

    fn flatten(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        let rank = self.current_shape.len();
        let axis = attr_i(node, "axis").unwrap_or(1);
        let axis = if axis < 0 { axis + rank as i64 } else { axis };
        if axis != 1 {
            return Err(at.error(format!(
                "axis {axis} would merge the batch dimension; only axis 1 is supported"
            )));
        }
        if rank > 2 {
            if self.pending.is_some() || !self.layers.is_empty() {
                return Err(at.error("flattens a value inside the chain of layers"));
            }
            let features: Option<usize> = self.current_shape[1..].iter().copied().product();
            let Some(features) = features else {
                return Err(at.error("the input's feature dimensions are not all known"));
            };
            self.input_width = Some(features);
            self.current_shape = vec![None, Some(features)];
        }
        Ok(())
    }

    /// A reshape to `[-1 or 0, features]`: nothing on a 2-D value, a flatten of the input.
    fn reshape(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        if node.input.len() != 2 || node.input[0] != self.current {
            return Err(at.error("expects the running value and a shape initializer"));
        }
        let shape = self.initializer(at, &node.input[1])?;
        let target = int64_values(at, shape)?;
        let features = match (self.current_shape.len(), self.current_width()) {
            (2, width) => width,
            (rank, _) if rank > 2 && self.pending.is_none() && self.layers.is_empty() => {
                self.current_shape[1..].iter().copied().product()
            }
            _ => None,
        };
        match (target.as_slice(), features) {
            ([-1 | 0, n], Some(features)) if *n == features as i64 => {
                if self.current_shape.len() > 2 {
                    self.input_width = Some(features);
                }
                self.current_shape = vec![None, Some(features)];
                Ok(())
            }
            _ => Err(at.error(format!(
                "reshapes `{}` to {target:?}; only a reshape to [-1, {}] (no change) is supported",
                self.current,
                features.map_or("features".to_string(), |f| f.to_string())
            ))),
        }
    }

    fn activation(&mut self, at: &NodeRef<'_>, node: &NodeProto) -> Result<()> {
        if node.input.len() != 1 {
            return Err(at.error(format!("has {} inputs, expected one", node.input.len())));
        }
        let activation = match at.op {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            "Gelu" => {
                let approximate = attr_s(node, "approximate").unwrap_or("none");
                if approximate != "none" {
                    return Err(at.error(format!(
                        "approximate = \"{approximate}\"; only the exact (erf) GELU is supported"
                    )));
                }
                Activation::Gelu
            }
            "Softmax" => {
                // Before opset 13 the default axis was 1; for [batch, features] both mean rows.
                let default_axis = if self.opset >= 13 { -1 } else { 1 };
                let axis = attr_i(node, "axis").unwrap_or(default_axis);
                if axis != -1 && axis != 1 {
                    return Err(at.error(format!(
                        "axis {axis}; only the feature axis (1 or -1) is supported"
                    )));
                }
                Activation::Softmax
            }
            _ => unreachable!("dispatched on known ops"),
        };
        let Some(pending) = self.pending.as_mut() else {
            return Err(at.error(
                "applies an activation to the model's input; a dense layer must come first",
            ));
        };
        if let Some(previous) = pending.activation {
            return Err(at.error(format!(
                "a second activation after {}; one per layer is supported",
                previous.name()
            )));
        }
        pending.activation = Some(activation);
        Ok(())
    }

    fn finish_layer(&mut self) {
        if let Some(layer) = self.pending.take() {
            self.specs.push(LayerSpec {
                input: layer.weight.nrows(),
                output: layer.weight.ncols(),
                bias: layer.bias.is_some(),
                activation: layer.activation.unwrap_or(Activation::Identity),
            });
            self.layers.push(LayerWeights {
                weight: layer.weight,
                bias: layer.bias,
            });
        }
    }
}

fn attribute<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_f(node: &NodeProto, name: &str) -> Option<f32> {
    attribute(node, name).map(|a| a.f)
}

fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).map(|a| a.i)
}

fn attr_s<'n>(node: &'n NodeProto, name: &str) -> Option<&'n str> {
    attribute(node, name).and_then(|a| std::str::from_utf8(&a.s).ok())
}

/// An initializer's values as float32, checked against its dims.
fn tensor_values(at: &NodeRef<'_>, tensor: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
    let name = &tensor.name;
    if tensor.data_location == DATA_LOCATION_EXTERNAL {
        return Err(at.error(format!(
            "initializer `{name}` keeps its data in an external file; not supported"
        )));
    }
    let dims = tensor
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| at.error(format!("initializer `{name}` has a negative dimension")))?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| at.error(format!("initializer `{name}` is too large")))?;
    let values: Vec<f32> = match tensor.data_type {
        data_type::FLOAT if !tensor.raw_data.is_empty() => {
            check_len(at, name, tensor.raw_data.len(), count.saturating_mul(4))?;
            tensor
                .raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        data_type::FLOAT => {
            check_len(at, name, tensor.float_data.len(), count)?;
            tensor.float_data.clone()
        }
        data_type::DOUBLE if !tensor.raw_data.is_empty() => {
            check_len(at, name, tensor.raw_data.len(), count.saturating_mul(8))?;
            tensor
                .raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect()
        }
        data_type::DOUBLE => {
            check_len(at, name, tensor.double_data.len(), count)?;
            tensor.double_data.iter().map(|&v| v as f32).collect()
        }
        other => {
            return Err(at.error(format!(
                "initializer `{name}` has data type {}; weights must be FLOAT or DOUBLE",
                data_type::name(other)
            )));
        }
    };
    Ok((dims, values))
}

/// An INT64 initializer's values (a shape).
fn int64_values(at: &NodeRef<'_>, tensor: &TensorProto) -> Result<Vec<i64>> {
    if tensor.data_type != data_type::INT64 || tensor.dims.len() != 1 {
        return Err(at.error(format!(
            "shape `{}` is not a 1-D INT64 initializer",
            tensor.name
        )));
    }
    let count = usize::try_from(tensor.dims[0]).unwrap_or(usize::MAX);
    if tensor.raw_data.is_empty() {
        check_len(at, &tensor.name, tensor.int64_data.len(), count)?;
        return Ok(tensor.int64_data.clone());
    }
    check_len(
        at,
        &tensor.name,
        tensor.raw_data.len(),
        count.saturating_mul(8),
    )?;
    Ok(tensor
        .raw_data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn check_len(at: &NodeRef<'_>, name: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(at.error(format!(
            "initializer `{name}` holds {got} data entries, its dims need {expected}"
        )));
    }
    Ok(())
}

/// A 2-D initializer as a matrix.
fn matrix(at: &NodeRef<'_>, tensor: &TensorProto) -> Result<Array2<f32>> {
    let (dims, values) = tensor_values(at, tensor)?;
    let [rows, cols] = dims[..] else {
        return Err(at.error(format!(
            "weight `{}` has shape {dims:?}; expected 2-D",
            tensor.name
        )));
    };
    // The length matches the dims; ndarray still refuses an empty matrix whose other axis is
    // past isize::MAX.
    Array2::from_shape_vec((rows, cols), values).map_err(|e| {
        at.error(format!(
            "weight `{}` has shape {dims:?}, which is not a valid matrix: {e}",
            tensor.name
        ))
    })
}

/// A bias initializer broadcast along the rows: shape `[n]`, `[1, n]`, `[1]` or a scalar.
fn bias_vector(at: &NodeRef<'_>, tensor: &TensorProto, n: usize) -> Result<Array1<f32>> {
    let (dims, values) = tensor_values(at, tensor)?;
    match dims[..] {
        [] | [1] | [1, 1] => Ok(Array1::from_elem(n, values[0])),
        [len] | [1, len] if len == n => Ok(Array1::from(values)),
        _ => Err(at.error(format!(
            "bias `{}` has shape {dims:?}; expected [{n}], [1, {n}] or a scalar",
            tensor.name
        ))),
    }
}
