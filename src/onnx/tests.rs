//! Conversion rules and refusals, on graphs built in memory.

use prost::Message;

use super::proto::*;
use crate::{Activation, Error, import_onnx_bytes};

fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: (d > 0).then_some(d),
                            dim_param: (d <= 0).then(|| "N".to_string()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// A graph `x [N, 2] → nodes → y`, with a 2×3 weight `w`, a bias `b` [3] and `w2` [3, 2].
fn model(nodes: Vec<NodeProto>, output: &str) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: vec![
                floats("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                floats("b", &[3], &[0.5, -0.5, 0.25]),
                floats("w2", &[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
            ],
            input: vec![value("x", &[0, 2])],
            output: vec![value(output, &[0, 3])],
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node_error(bytes: &[u8]) -> (String, String, String) {
    match import_onnx_bytes(bytes).unwrap_err() {
        Error::OnnxNode { node, op, msg, .. } => (node, op, msg),
        other => panic!("expected a node error, got {other}"),
    }
}

#[test]
fn gemm_attributes_fold_into_weights_and_bias() {
    // Gemm(x, wT, b) with transB: B is stored [out, in] = [3, 2].
    let mut bytes_model = ModelProto::decode(model(vec![], "x").as_slice()).unwrap();
    let graph = bytes_model.graph.as_mut().unwrap();
    graph
        .initializer
        .push(floats("wt", &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
    graph.node = vec![
        node(
            "Gemm",
            "gemm",
            &["x", "wt", "b"],
            "h",
            vec![
                int_attr("transB", 1),
                AttributeProto {
                    name: "alpha".into(),
                    f: 2.0,
                    ..Default::default()
                },
                AttributeProto {
                    name: "beta".into(),
                    f: 4.0,
                    ..Default::default()
                },
            ],
        ),
        node("Tanh", "t", &["h"], "y", vec![]),
    ];
    graph.output = vec![value("y", &[0, 3])];
    let model = import_onnx_bytes(&bytes_model.encode_to_vec()).unwrap();
    let layer = &model.layers()[0];
    assert_eq!(
        layer.weight,
        ndarray::array![[2.0f32, 4.0, 6.0], [8.0, 10.0, 12.0]]
    );
    assert_eq!(layer.bias.as_ref().unwrap().to_vec(), vec![2.0, -2.0, 1.0]);
    assert_eq!(model.spec().layers[0].activation, Activation::Tanh);
}

#[test]
fn matmul_with_two_adds_and_no_activation() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "w"], "m", vec![]),
            node("Add", "a1", &["m", "b"], "a", vec![]),
            node("Add", "a2", &["b", "a"], "h", vec![]),
            node("MatMul", "mm2", &["h", "w2"], "y", vec![]),
        ],
        "y",
    );
    let model = import_onnx_bytes(&bytes).unwrap();
    assert_eq!(model.spec().layers.len(), 2);
    assert_eq!(model.spec().layers[0].activation, Activation::Identity);
    assert_eq!(
        model.layers()[0].bias.as_ref().unwrap().to_vec(),
        vec![1.0, -1.0, 0.5]
    );
    assert!(model.layers()[1].bias.is_none());
}

#[test]
fn refusals_name_the_node_and_op() {
    let (node_name, op, msg) = node_error(&model(
        vec![node(
            "Gemm",
            "g0",
            &["x", "w"],
            "y",
            vec![int_attr("transA", 1)],
        )],
        "y",
    ));
    assert_eq!((node_name.as_str(), op.as_str()), ("g0", "Gemm"));
    assert!(msg.contains("transA"), "{msg}");

    let (_, op, msg) = node_error(&model(
        vec![node("MatMul", "mm", &["x", "x"], "y", vec![])],
        "y",
    ));
    assert_eq!(op, "MatMul");
    assert!(msg.contains("both operands"), "{msg}");

    let (_, _, msg) = node_error(&model(
        vec![node("MatMul", "mm", &["x", "nope"], "y", vec![])],
        "y",
    ));
    assert!(msg.contains("`nope` is not an initializer"), "{msg}");

    let (name, op, msg) = node_error(&model(
        vec![
            node("MatMul", "mm", &["x", "w"], "m", vec![]),
            node("Relu", "r", &["m"], "h", vec![]),
            node("Sigmoid", "", &["h"], "y", vec![]),
        ],
        "y",
    ));
    assert_eq!((name.as_str(), op.as_str()), ("#2", "Sigmoid"));
    assert!(msg.contains("second activation"), "{msg}");

    let (_, _, msg) = node_error(&model(
        vec![
            node("MatMul", "mm", &["x", "w"], "m", vec![]),
            node("Relu", "r", &["m"], "h", vec![]),
            node("Add", "late", &["h", "b"], "y", vec![]),
        ],
        "y",
    ));
    assert!(msg.contains("after an activation"), "{msg}");

    let (_, _, msg) = node_error(&model(
        vec![node("MatMul", "mm", &["x", "w2"], "y", vec![])],
        "y",
    ));
    assert!(msg.contains("has 2 features"), "{msg}");

    let (_, _, msg) = node_error(&model(
        vec![node("Cast", "c", &["x"], "y", vec![int_attr("to", 7)])],
        "y",
    ));
    assert!(msg.contains("INT64"), "{msg}");
}

#[test]
fn graph_level_problems_are_format_errors() {
    // Output that is not the chain's end, no layer at all, and garbage bytes.
    let bytes = model(vec![node("MatMul", "mm", &["x", "w"], "m", vec![])], "y");
    assert!(matches!(
        import_onnx_bytes(&bytes),
        Err(Error::Format { .. })
    ));
    let bytes = model(vec![], "x");
    assert!(matches!(
        import_onnx_bytes(&bytes),
        Err(Error::Format { .. })
    ));
    assert!(matches!(import_onnx_bytes(&[]), Err(Error::Format { .. })));
}

#[test]
fn bad_initializers_are_refused() {
    let mut m = ModelProto::decode(
        model(vec![node("MatMul", "mm", &["x", "w"], "y", vec![])], "y").as_slice(),
    )
    .unwrap();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.float_data.pop();
    let (_, _, msg) = node_error(&m.encode_to_vec());
    assert!(msg.contains("holds 5 data entries"), "{msg}");
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.float_data = vec![];
    w.data_type = 6;
    let (_, _, msg) = node_error(&m.encode_to_vec());
    assert!(msg.contains("INT32"), "{msg}");
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.data_type = data_type::FLOAT;
    w.raw_data = [1.0f32, 2.0, 3.0, 4.0, 5.0, f32::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert!(matches!(
        import_onnx_bytes(&m.encode_to_vec()),
        Err(Error::NonFiniteWeight { index: 5, .. })
    ));
}
