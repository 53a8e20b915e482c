#!/usr/bin/env python3
"""Convert a refbench model directory into densebatch's model format.

A refbench directory holds manifest.json, W{i}.npy (float32 [in, out], y = x @ W + b),
b{i}.npy (float32 [out]), x_check.npy (float32 [4, in]) and y_check.npy (float32 [4, out],
computed in float64). This writes, under OUT_DIR:

  model.json          the spec (name from the manifest unless --name is given)
  model.safetensors   layers.{i}.weight F32 [in, out], layers.{i}.bias F32 [out]
  check.safetensors   x F32 [4, in] and y F32 [4, out], copied from x_check / y_check

Usage:  python models/convert_refbench.py REFBENCH_MODEL_DIR OUT_DIR [--name NAME] [--version V]
"""
import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file

ACTIVATIONS = {"relu", "sigmoid", "tanh", "gelu", "softmax", "identity"}


def forward_f64(x, Ws, bs, acts):
    """Float64 forward pass for the activations refbench uses (relu, softmax, identity)."""
    h = x.astype(np.float64)
    for W, b, act in zip(Ws, bs, acts):
        h = h @ W.astype(np.float64) + (0 if b is None else b.astype(np.float64))
        if act == "relu":
            h = np.maximum(h, 0.0)
        elif act == "softmax":
            h = np.exp(h - h.max(axis=1, keepdims=True))
            h /= h.sum(axis=1, keepdims=True)
        elif act != "identity":
            raise ValueError(f"no reference for activation {act!r}")
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", metavar="REFBENCH_MODEL_DIR")
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("--name", help="model name (default: the manifest's)")
    ap.add_argument("--version", default="1.0.0")
    a = ap.parse_args()

    with open(os.path.join(a.src, "manifest.json")) as f:
        manifest = json.load(f)
    load = lambda name: np.load(os.path.join(a.src, name), allow_pickle=False)

    layers, tensors, Ws, bs = [], {}, [], []
    for i, l in enumerate(manifest["layers"]):
        if l["activation"] not in ACTIVATIONS:
            raise SystemExit(f"layer {i}: unsupported activation {l['activation']!r}")
        W = np.ascontiguousarray(load(l["W"]), dtype=np.float32)
        b = np.ascontiguousarray(load(l["b"]), dtype=np.float32) if l.get("b") else None
        if W.shape != (l["in"], l["out"]) or (b is not None and b.shape != (l["out"],)):
            raise SystemExit(f"layer {i}: shapes W{W.shape} b{None if b is None else b.shape} "
                             f"do not match in={l['in']} out={l['out']}")
        layers.append({"in": l["in"], "out": l["out"], "bias": b is not None, "activation": l["activation"]})
        tensors[f"layers.{i}.weight"] = W
        if b is not None:
            tensors[f"layers.{i}.bias"] = b
        Ws.append(W)
        bs.append(b)

    x = np.ascontiguousarray(load(manifest["check"]["x"]), dtype=np.float32)
    y = np.ascontiguousarray(load(manifest["check"]["y"]), dtype=np.float32)
    assert x.shape == (x.shape[0], layers[0]["in"]) and y.shape == (x.shape[0], layers[-1]["out"])
    # Sanity: the weights as written reproduce the reference output.
    ref = forward_f64(x, Ws, bs, [l["activation"] for l in layers])
    err = np.abs(ref - y).max()
    assert np.allclose(ref, y, rtol=1e-5, atol=1e-6), \
        f"converted weights do not reproduce y_check (max error {err:.3g})"

    spec = {"name": a.name or manifest["name"], "version": a.version, "input_width": layers[0]["in"],
            "weights": "model.safetensors", "layers": layers}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.json"), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    save_file(tensors, os.path.join(a.out, "model.safetensors"), metadata={"format": "densebatch"})
    save_file({"x": x, "y": y}, os.path.join(a.out, "check.safetensors"), metadata={"format": "densebatch"})
    print(f"{spec['name']}: {[layers[0]['in']] + [l['out'] for l in layers]} -> {a.out} "
          f"(check max error {err:.3g})")


if __name__ == "__main__":
    main()
