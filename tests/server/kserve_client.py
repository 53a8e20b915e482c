"""The kserve SDK's REST client, run in its own process: kserve and tritonclient.grpc each
register an `inference` protobuf package, which cannot share one interpreter.

Usage: kserve_client.py URL MODEL X.npy OUT.npy; prints the response id."""

import asyncio
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(url, model, x_path, out_path):
    x = np.load(x_path)
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, model)
        inp = InferInput(name="input", shape=list(x.shape), datatype="FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        request = InferRequest(model_name=model, infer_inputs=[inp], request_id="k1")
        response = await client.infer(url, request, model_name=model)
        np.save(out_path, np.asarray(response.outputs[0].as_numpy(), dtype=np.float32))
        print(response.id)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
