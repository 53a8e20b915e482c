#!/usr/bin/env python3
"""Train the bundled digits classifier and export it in densebatch's model format.

Trains a 64->128->64->10 MLP (relu hidden, softmax output) on scikit-learn's bundled
8x8 digits data set (no download), then writes, under models/digits/ (or OUT_DIR):

  model.json          the spec (name "digits-mlp", version "1.0.0")
  model.safetensors   layers.{i}.weight F32 [in, out], layers.{i}.bias F32 [out]
  test.safetensors    the held-out set: x F32 [n, 64] (already scaled: pixels / 16),
                      labels I32 [n], sklearn_pred I32 [n], sklearn_proba F32 [n, 10],
                      y_check F32 [n, 10] (float64 forward pass of x with the f32 weights)

Checks that the float32 forward pass picks the same class as scikit-learn on every
held-out sample and reports near-ties. Deterministic: reruns give identical files.

Usage:  python models/make_digits.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

SEED = 0
TEST_SIZE = 0.25
NEAR_TIE = 1e-3  # top-2 logit margin below which a sample is reported as a near-tie


def forward(x, Ws, bs):
    """Dense relu MLP with a softmax output, in the dtype of its arguments; returns (logits, probs)."""
    h = x
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W + b
        if i < len(Ws) - 1:
            h = np.maximum(h, 0)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return h, e / e.sum(axis=1, keepdims=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "digits")
    os.makedirs(out, exist_ok=True)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixels are 0..16; k/16 is exact in float32, so x is exported unchanged
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=TEST_SIZE, stratify=y, random_state=SEED)

    clf = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam",
                        alpha=1e-4, max_iter=300, random_state=SEED)
    clf.fit(X_tr, y_tr)
    assert list(clf.classes_) == list(range(10)) and clf.out_activation_ == "softmax"

    Ws = [np.ascontiguousarray(W, dtype=np.float32) for W in clf.coefs_]
    bs = [np.ascontiguousarray(b, dtype=np.float32) for b in clf.intercepts_]
    x = X_te.astype(np.float32)
    assert np.array_equal(x.astype(np.float64), X_te)
    pred = clf.predict(X_te).astype(np.int32)
    proba = clf.predict_proba(X_te)
    acc = float((pred == y_te).mean())

    # Parity: float32 weights, forward pass in float32 and in float64.
    logits32, _ = forward(x, Ws, bs)
    logits64, y_check = forward(x.astype(np.float64), [W.astype(np.float64) for W in Ws],
                                [b.astype(np.float64) for b in bs])
    top2 = np.sort(logits64, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    for i in np.flatnonzero(margin < NEAR_TIE):
        print(f"near-tie: test sample {i}: top-2 logit margin {margin[i]:.3g}")
    mism32 = np.flatnonzero(logits32.argmax(axis=1) != pred)
    mism64 = np.flatnonzero(logits64.argmax(axis=1) != pred)
    for i in np.union1d(mism32, mism64):
        print(f"MISMATCH: test sample {i}: sklearn {pred[i]}, f32 {logits32[i].argmax()}, "
              f"f64 {logits64[i].argmax()}, margin {margin[i]:.3g}")

    layers = [{"in": W.shape[0], "out": W.shape[1], "bias": True,
               "activation": "relu" if i < len(Ws) - 1 else "softmax"} for i, W in enumerate(Ws)]
    spec = {"name": "digits-mlp", "version": "1.0.0", "input_width": Ws[0].shape[0],
            "weights": "model.safetensors", "layers": layers}
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    tensors = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        tensors[f"layers.{i}.weight"] = W
        tensors[f"layers.{i}.bias"] = b
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "densebatch"})
    save_file({
        "x": x,
        "labels": y_te.astype(np.int32),
        "sklearn_pred": pred,
        "sklearn_proba": proba.astype(np.float32),
        "y_check": y_check.astype(np.float32),
    }, os.path.join(out, "test.safetensors"), metadata={"format": "densebatch"})

    params = sum(W.size + b.size for W, b in zip(Ws, bs))
    print(f"digits-mlp: {params} params, {clf.n_iter_} epochs, train accuracy "
          f"{clf.score(X_tr, y_tr):.4f}, test accuracy {acc:.4f} ({int((pred == y_te).sum())}/{len(y_te)})")
    print(f"argmax parity with sklearn: f32 {len(pred) - len(mism32)}/{len(pred)}, "
          f"f64 {len(pred) - len(mism64)}/{len(pred)}; smallest top-2 logit margin {margin.min():.4g}; "
          f"max |y_check - sklearn_proba| {np.abs(y_check - proba).max():.3g}")
    if len(mism32) or len(mism64):
        sys.exit("float32 forward pass disagrees with sklearn on some samples")


if __name__ == "__main__":
    main()
