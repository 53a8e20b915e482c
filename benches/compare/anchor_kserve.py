"""Serving anchor: the kserve Python model server (its V2 REST server, one worker, no gRPC)
wrapping ONNX Runtime, the way kserve's custom-model guide writes it.

Usage: anchor_kserve.py MODEL.onnx MODEL_NAME PORT   (serves on 127.0.0.1 only)
"""

import logging
import sys

import uvicorn

from anchor_ort import one_thread_session

model_path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
# kserve parses the command line when imported; it must not see ours.
sys.argv = sys.argv[:1]

# kserve binds every interface; the benchmark stays on loopback.
_config_init = uvicorn.Config.__init__


def _loopback_config(self, *args, **kwargs):
    kwargs["host"] = "127.0.0.1"
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402
from kserve.utils.utils import generate_uuid  # noqa: E402


class OnnxMlp(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        self.session, self.input_name = one_thread_session(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        y = self.session.run(None, {self.input_name: x})[0]
        output = InferOutput(name="output", shape=list(y.shape), datatype="FP32", data=y)
        response_id = payload.id or generate_uuid()
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=response_id)


if __name__ == "__main__":
    server = ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False)
    # One line per request would time the logger, not the server.
    for logger in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(logger).disabled = True
    server.start([OnnxMlp(model_name, model_path)])
