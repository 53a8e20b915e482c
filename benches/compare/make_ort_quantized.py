#!/usr/bin/env python3
"""Write ONNX Runtime's quantized versions of the comparison models, one file per engine.

Usage:  make_ort_quantized.py MODELS_DIR [--models tiny-mlp,mnist-mlp,wide-mlp]

Next to MODELS_DIR/NAME/model.onnx (written by make_models.py) it writes NAME/ENGINE.onnx for each
engine of VARIANTS below, with the pinned onnxruntime and onnx wheels only. Only the MatMul
nodes are quantized (biases, activations and softmax stay float). Files that exist are kept, so a
second run does nothing. run_engines.py times each file as an engine of its own (`--engines
ort,ort-dyn-pt,...`); quant_accuracy.py measures their accuracy.

  ort-dyn-pt   quantize_dynamic with ORT's defaults: int8 weights with one scale per tensor,
               activations uint8 with one scale per call (over the whole batch)
  ort-dyn-pc   the same with per-channel weight scales
  ort-qdq      quantize_static, QDQ format, int8 activations and int8 per-channel weights (S8S8),
               MinMax-calibrated on CALIBRATION_ROWS standard-normal rows drawn with the model's
               seed + CALIBRATION_SEED_OFFSET (make_models.py's check rows use seed + 7)
  ort-nb8-a1   MatMulNBits, 8-bit symmetric weights in K-blocks of 32, accuracy_level 1 (fp32 compute)
  ort-nb8-a4   the same at accuracy_level 4 (int8 compute, activations quantized per row and block)

The MatMulNBits files are what onnxruntime's MatMulNBitsQuantizer writes with
DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=A, bits=8), but that
module imports the onnx-ir package, which the pinned requirements do not hold; so the weights are
packed here by the same ORT routine it calls (quantize_matmul_8bits) and the node gets the same
attributes.
"""
import argparse
import os
import tempfile

import numpy as np

# engine: (what it is, the precision of its weights)
VARIANTS = {
    "ort-dyn-pt": ("ORT dynamic int8, per-tensor weights (quantize_dynamic defaults)", "int8"),
    "ort-dyn-pc": ("ORT dynamic int8, per-channel weights", "int8"),
    "ort-qdq": ("ORT static QDQ S8S8, per-channel weights, MinMax calibration", "int8"),
    "ort-nb8-a1": ("ORT MatMulNBits 8-bit, block 32, accuracy level 1 (fp32 compute)", "int8"),
    "ort-nb8-a4": ("ORT MatMulNBits 8-bit, block 32, accuracy level 4 (int8 compute)", "int8"),
}
BLOCK_SIZE = 32
CALIBRATION_ROWS = 256
CALIBRATION_SEED_OFFSET = 11


class RandomRows:
    """A CalibrationDataReader over standard-normal rows, in batches of 32."""

    def __init__(self, width, seed):
        x = np.random.default_rng(seed).standard_normal((CALIBRATION_ROWS, width), dtype=np.float32)
        self.batches = iter(np.split(x, CALIBRATION_ROWS // 32))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"x": batch}


def matmul_nbits(model, accuracy_level):
    """Replaces each MatMul by a constant weight with an 8-bit MatMulNBits node (in place)."""
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            nodes.append(node)
            continue
        tensor = weights[node.input[1]]
        w = numpy_helper.to_array(tensor).astype(np.float32)
        k, n = w.shape
        blocks = -(-k // BLOCK_SIZE)
        padded = np.zeros((blocks * BLOCK_SIZE, n), dtype=np.float32)
        padded[:k] = w
        packed = np.zeros((n, blocks, BLOCK_SIZE), dtype=np.uint8)
        scales = np.zeros((n, blocks), dtype=np.float32)
        zero_points = np.zeros((n, blocks), dtype=np.uint8)  # not written: symmetric
        quantize_matmul_8bits(packed, padded, scales, zero_points, BLOCK_SIZE, n, k, True)
        graph.initializer.remove(tensor)
        graph.initializer.extend([numpy_helper.from_array(packed, f"{tensor.name}_Q8"),
                                  numpy_helper.from_array(scales, f"{tensor.name}_scales")])
        nodes.append(helper.make_node(
            "MatMulNBits", [node.input[0], f"{tensor.name}_Q8", f"{tensor.name}_scales"], node.output,
            name=f"{node.name}_Q8", domain="com.microsoft", K=k, N=n, bits=8, block_size=BLOCK_SIZE,
            accuracy_level=accuracy_level))
    del graph.node[:]
    graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def quantize(engine, source, pre, out, width, seed):
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if engine in ("ort-dyn-pt", "ort-dyn-pc"):
        quantize_dynamic(pre, out, weight_type=QuantType.QInt8, per_channel=engine == "ort-dyn-pc",
                         op_types_to_quantize=["MatMul"])
    elif engine == "ort-qdq":
        quantize_static(pre, out, RandomRows(width, seed + CALIBRATION_SEED_OFFSET),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    else:
        model = matmul_nbits(onnx.load(source), accuracy_level=int(engine[-1]))
        onnx.checker.check_model(model)
        onnx.save(model, out)


def write_model(models_dir, name):
    import json

    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = os.path.join(models_dir, name)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    source = os.path.join(folder, manifest["onnx"] or "model.onnx")
    if not os.path.isfile(source):
        raise SystemExit(f"{source} is missing: run make_models.py {models_dir} --models {name} first")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # same disk: os.replace works
        pre = os.path.join(scratch, "pre.onnx")
        for engine in VARIANTS:
            out = os.path.join(folder, f"{engine}.onnx")
            if os.path.exists(out):
                print(f"{name}: {engine}.onnx exists, kept")
                continue
            if not os.path.exists(pre):
                # Shape inference only: its graph optimisation would fold MatMul + Add into Gemm,
                # which op_types_to_quantize=["MatMul"] then leaves in float.
                quant_pre_process(source, pre, skip_optimization=True, skip_symbolic_shape=True)
            partial = os.path.join(scratch, f"{engine}.onnx")
            quantize(engine, source, pre, partial, manifest["widths"][0], manifest["seed"])
            os.replace(partial, out)
            print(f"{name}: {engine}.onnx written ({os.path.getsize(out)} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models_dir")
    parser.add_argument("--models", default="tiny-mlp,mnist-mlp,wide-mlp")
    args = parser.parse_args()
    for name in args.models.split(","):
        write_model(args.models_dir, name)


if __name__ == "__main__":
    main()
