#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the project's real files.

Run from the repository root after `tests/run.sh` has made target/refbench/models:
    python3 tests/fuzz/make_seeds.py
"""
import os
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests/fuzz/corpus"
REFBENCH = ROOT / "target/refbench/models"
NAMES = ["manifest.json", "W0.npy", "b0.npy", "W1.npy", "b1.npy", "W2.npy", "b2.npy", "W3.npy", "b3.npy"]
# Seeds larger than this are left out: the fuzzers run with -max_len at this size.
MAX_LEN = 1 << 16


def put(target, name, data):
    if len(data) > MAX_LEN:
        return
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def server_seeds():
    """Infer requests as tritonclient sends them: JSON, binary extension, gRPC with raw contents."""
    values = [0.5, -1.25, 3e-3, 0.0]
    json_body = (
        b'{"id":"r1","parameters":{"timeout":1000},"inputs":[{"name":"input","shape":[2,2],'
        b'"datatype":"FP32","data":[[0.5,-1.25],[0.003,0]]}],"outputs":[{"name":"output"}]}'
    )
    put("server_http", "json", json_body)
    header = (
        b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],'
        b'"outputs":[{"name":"output","parameters":{"binary_data":true}}]}'
    )
    raw = struct.pack("<4f", *values)
    put("server_http", "binary", struct.pack("<H", len(header)) + header + raw)
    tensor = field(1, b"input") + field(2, b"FP32") + field(3, b"".join(varint(d) for d in (1, 4)))
    put("server_grpc", "raw", field(1, b"mnist-mlp") + field(5, tensor) + field(7, raw))


def main():
    server_seeds()
    models = [p for p in (ROOT / "models").iterdir() if (p / "model.json").is_file()]
    for m in models:
        spec = (m / "model.json").read_bytes()
        weights = (m / "model.safetensors").read_bytes()
        put("spec_json", m.name, spec)
        put("safetensors", m.name, weights)
        put("safetensors", m.name + "-with-spec", spec + b"\0" + weights)
        for st in m.glob("*.safetensors"):
            put("cli_input", f"{m.name}-{st.name}", b"\x02" + st.read_bytes())
    for m in sorted(REFBENCH.iterdir()):
        manifest = (m / "manifest.json").read_bytes()
        packed = b""
        for slot, name in enumerate(NAMES):
            if (m / name).is_file():
                data = (m / name).read_bytes()
                packed += struct.pack("<BI", slot, len(data)) + data
                put("npy", f"{m.name}-{name}", data)
        put("refbench_folder", m.name, packed)
        put("onnx", m.name, (m / "model.onnx").read_bytes())
        for name in ["x_check.npy", "y_check.npy"]:
            data = (m / name).read_bytes()
            put("npy", f"{m.name}-{name}", data)
            put("cli_input", f"{m.name}-{name}", b"\x01" + data)
        put("spec_json", m.name + "-manifest", manifest)
    put("cli_input", "rows.csv", b"\x00a,b,c\n1,2,3\n4.5,-6e-3,7\n\n8,9,1e38\n")
    onnx_fixtures = ROOT / "tests/fixtures/onnx"
    for f in onnx_fixtures.glob("*.onnx"):
        put("onnx", f.name, f.read_bytes())
    for target in sorted(os.listdir(CORPUS)):
        print(target, len(os.listdir(CORPUS / target)), "seeds")


if __name__ == "__main__":
    main()
