"""The ONNX Runtime session both serving anchors wrap: one intra-op and one inter-op thread, as
each server process runs pinned to one CPU."""

import onnxruntime as ort


def one_thread_session(model_path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name
