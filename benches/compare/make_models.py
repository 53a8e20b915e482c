#!/usr/bin/env python3
"""Generate the comparison models: dense MLPs as ONNX graphs and as .npy weights.

Usage:  make_models.py OUT_DIR [--models tiny-mlp,mnist-mlp,wide-mlp] [--no-onnx]
        (also mnist-sigmoid, mnist-tanh, mnist-gelu: mnist-mlp's weights, other hidden activations)

Each model NAME gets a folder OUT_DIR/NAME holding
  manifest.json     widths, activations, weight file names, FLOPs and parameter counts
  W{i}.npy, b{i}.npy  float32 weights, W of shape [in, out] (y = x @ W + b), b of shape [out]
  model.onnx        the same network as MatMul -> Add -> activation nodes, input "x" [N, in],
                    output "y" [N, out] (opset 17; 20 with Gelu)
  x_check.npy, y_check.npy  four fixed inputs and their outputs computed in float64

The engine loads the folder directly (`Model::load`), ONNX Runtime loads model.onnx, numpy the
.npy files: the three run the same weights. Weights are He-normal from numpy's PCG64 seeded per
model, so the files are the same on every machine.
"""
import argparse
import json
import math
import os

import numpy as np

# name: (widths, hidden activation, output activation, seed)
MODELS = {
    "tiny-mlp": ([16, 32, 4], "relu", "identity", 1003),
    "mnist-mlp": ([784, 512, 512, 10], "relu", "softmax", 1001),
    "wide-mlp": ([1024, 4096, 4096, 1024], "relu", "identity", 1002),
    # mnist-mlp's weights with other hidden activations (not generated unless asked for)
    "mnist-sigmoid": ([784, 512, 512, 10], "sigmoid", "softmax", 1001),
    "mnist-tanh": ([784, 512, 512, 10], "tanh", "softmax", 1001),
    "mnist-gelu": ([784, 512, 512, 10], "gelu", "softmax", 1001),
}
DEFAULT_MODELS = ["tiny-mlp", "mnist-mlp", "wide-mlp"]


def weights(widths, seed):
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        layers.append((np.ascontiguousarray(w), b))
    return layers


def activations(n_layers, hidden, output):
    return [hidden] * (n_layers - 1) + [output]


def forward_float64(x, layers, acts):
    h = x.astype(np.float64)
    for (w, b), act in zip(layers, acts):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if act == "relu":
            h = np.maximum(h, 0.0)
        elif act == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
        elif act == "tanh":
            h = np.tanh(h)
        elif act == "gelu":
            h = 0.5 * h * (1.0 + np.vectorize(math.erf)(h / math.sqrt(2.0)))
        elif act == "softmax":
            h = np.exp(h - h.max(axis=1, keepdims=True))
            h /= h.sum(axis=1, keepdims=True)
    return h.astype(np.float32)


ONNX_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "gelu": "Gelu"}


def onnx_graph(name, widths, layers, acts):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    value = "x"
    for i, ((w, b), act) in enumerate(zip(layers, acts)):
        last = i == len(layers) - 1
        initializers += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [value, f"W{i}"], [f"mm{i}"], name=f"MatMul_{i}"))
        biased = "y" if last and act == "identity" else f"add{i}"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [biased], name=f"Add_{i}"))
        value = biased
        if act in ONNX_OPS:
            value = "y" if last else f"{act}{i}"
            op = ONNX_OPS[act]
            nodes.append(helper.make_node(op, [biased], [value], name=f"{op}_{i}"))
        elif act == "softmax":
            value = "y" if last else f"softmax{i}"
            nodes.append(helper.make_node("Softmax", [biased], [value], name=f"Softmax_{i}", axis=-1))
    graph = helper.make_graph(
        nodes, name.replace("-", "_"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", widths[-1]])],
        initializer=initializers)
    opset = 20 if "gelu" in acts else 17  # Gelu is an ONNX operator from opset 20
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="densebatch benches/compare")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model(out_dir, name, with_onnx):
    widths, hidden, output, seed = MODELS[name]
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    layers = weights(widths, seed)
    acts = activations(len(layers), hidden, output)
    for i, (w, b) in enumerate(layers):
        np.save(os.path.join(folder, f"W{i}.npy"), w)
        np.save(os.path.join(folder, f"b{i}.npy"), b)
    x = np.random.default_rng(seed + 7).standard_normal((4, widths[0])).astype(np.float32)
    np.save(os.path.join(folder, "x_check.npy"), x)
    np.save(os.path.join(folder, "y_check.npy"), forward_float64(x, layers, acts))
    if with_onnx:
        import onnx
        onnx.save(onnx_graph(name, widths, layers, acts), os.path.join(folder, "model.onnx"))
    macs = sum(i * o for i, o in zip(widths[:-1], widths[1:]))
    manifest = {
        "name": name,
        "widths": widths,
        "hidden_activation": hidden,
        "output_activation": output,
        "seed": seed,
        "layers": [{"W": f"W{i}.npy", "b": f"b{i}.npy", "in": widths[i], "out": widths[i + 1],
                    "activation": act} for i, act in enumerate(acts)],
        "weight_layout": "W[i] is row-major [in, out]; y = x @ W + b",
        "onnx": "model.onnx" if with_onnx else None,
        "check": {"x": "x_check.npy", "y": "y_check.npy", "computed_in": "float64"},
        "flops_per_sample": 2 * macs,
        "param_count": macs + sum(widths[1:]),
        "param_bytes_f32": 4 * (macs + sum(widths[1:])),
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"{name}: {widths}, {manifest['param_count']} parameters -> {folder}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument("--no-onnx", action="store_true", help="write the .npy weights only")
    args = parser.parse_args()
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name}; known: {', '.join(MODELS)}")
        write_model(args.out_dir, name, not args.no_onnx)


if __name__ == "__main__":
    main()
