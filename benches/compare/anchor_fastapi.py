"""Serving anchor: FastAPI + uvicorn + ONNX Runtime answering the Open Inference Protocol's V2
JSON (health, model ready, infer), with pydantic request models, as the Python serving guides
build it.

Usage: anchor_fastapi.py MODEL.onnx MODEL_NAME PORT   (serves on 127.0.0.1 only)
"""

import sys
from typing import Any, Optional

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from anchor_ort import one_thread_session


class InputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]
    parameters: Optional[dict[str, Any]] = None


class InferenceRequest(BaseModel):
    id: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    inputs: list[InputTensor]
    outputs: Optional[list[dict[str, Any]]] = None


def make_app(model_path, model_name):
    session, input_name = one_thread_session(model_path)
    app = FastAPI()

    @app.get("/v2/health/live")
    def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str):
        if name != model_name:
            raise HTTPException(404, f"unknown model {name}")
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, request: InferenceRequest):
        if name != model_name:
            raise HTTPException(404, f"unknown model {name}")
        tensor = request.inputs[0]
        if tensor.datatype != "FP32":
            raise HTTPException(400, f"datatype {tensor.datatype}: only FP32")
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        y = session.run(None, {input_name: x})[0]
        response = {
            "model_name": model_name,
            "outputs": [{"name": "output", "shape": list(y.shape), "datatype": "FP32",
                         "data": y.ravel().tolist()}],
        }
        if request.id is not None:
            response["id"] = request.id
        return response

    return app


if __name__ == "__main__":
    model_path, model_name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(make_app(model_path, model_name), host="127.0.0.1", port=port, workers=1,
                log_level="warning", access_log=False)
