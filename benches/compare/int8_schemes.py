#!/usr/bin/env python3
"""How much argmax agreement other 8-bit weight schemes would buy over per-channel int8, before
building any of them: each scheme's dequantised weights run through the model in float64, against
the float64 model, on standard-normal rows.

Usage (from the repository root, after make_models.py):
    target/compare-venv/bin/python benches/compare/int8_schemes.py --models-dir target/compare/models \
        [--models mnist-mlp,wide-mlp] [--rows 10000,2000]

Schemes (all symmetric, codes in -127..127, round to nearest even):
  per-channel      one scale per output column (Precision::Int8)
  block-K          one scale per column and per block of K reduction steps (MatMulNBits' layout)
  zero-sum         per-channel scales, with the roundings nearest to one half flipped until each
                   column's codes sum to within half a step of the exact sum (cancels the error
                   that a layer input's mean, ReLU's for the hidden layers, multiplies)
  clip-C           per-channel scales from C times the column's largest magnitude (codes clamped)

The last layer's softmax is left out: SQNR is on the logits (argmax is the same).
"""
import argparse
import json
import os

import numpy as np


def per_channel(w, clip=1.0):
    scale = np.abs(w).max(axis=0) * clip / 127
    scale[scale == 0] = 1
    return np.clip(np.round(w / scale), -127, 127), scale


def block_wise(w, block):
    out = np.empty_like(w)
    for k0 in range(0, w.shape[0], block):
        codes, scale = per_channel(w[k0:k0 + block])
        out[k0:k0 + block] = codes * scale
    return out


def zero_sum(w):
    codes, scale = per_channel(w)
    exact = w / scale
    for j in range(w.shape[1]):
        excess = (codes[:, j] - exact[:, j]).sum()
        flips = int(np.floor(abs(excess) + 0.5))
        if flips == 0:
            continue
        moved = codes[:, j] - np.sign(excess)
        cost = np.abs(moved - exact[:, j]) - np.abs(codes[:, j] - exact[:, j])
        cost[np.abs(moved) > 127] = np.inf
        chosen = np.argsort(cost, kind="stable")[:flips]
        codes[chosen, j] = moved[chosen]
    return codes * scale


SCHEMES = {
    "per-channel": lambda w: np.multiply(*per_channel(w)),
    "block-32": lambda w: block_wise(w, 32),
    "block-128": lambda w: block_wise(w, 128),
    "zero-sum": zero_sum,
    "clip-0.95": lambda w: np.multiply(*per_channel(w, 0.95)),
}


def load(model_dir):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    return [
        (
            np.load(os.path.join(model_dir, layer["W"])).astype(np.float64),
            np.load(os.path.join(model_dir, layer["b"])).astype(np.float64),
            layer["activation"],
        )
        for layer in manifest["layers"]
    ]


def forward(layers, x):
    for w, b, activation in layers:
        x = x @ w + b
        if activation == "relu":
            x = np.maximum(x, 0)
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--models", default="mnist-mlp,wide-mlp")
    parser.add_argument("--rows", default="10000,2000", help="rows per model, in --models order")
    args = parser.parse_args()
    print("| model | rows | scheme | SQNR dB | argmax = float64 |")
    print("|---|---:|---|---:|---:|")
    for name, rows in zip(args.models.split(","), map(int, args.rows.split(","))):
        layers = load(os.path.join(args.models_dir, name))
        x = np.random.default_rng(7).standard_normal((rows, layers[0][0].shape[0]))
        want = forward(layers, x)
        for scheme, quantise in SCHEMES.items():
            got = forward([(quantise(w.astype(np.float32)), b, a) for w, b, a in layers], x)
            sqnr = 10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2))
            agree = np.mean(got.argmax(axis=1) == want.argmax(axis=1))
            print(f"| {name} | {rows} | {scheme} | {sqnr:.1f} | {100 * agree:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
