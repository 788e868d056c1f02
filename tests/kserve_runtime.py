"""An MLServer custom runtime for tests: serves an `.onnx` file on ONNX Runtime (CPU).

MLServer imports this module in its own process and venv (see `kserve_server.py`), never in
the test process: its gRPC stubs and tritonclient's register the same protobuf symbols
(`inference.ServerLiveRequest`), so the two cannot be imported together.

The model's `parameters.uri` is the ONNX file; `parameters.extra` may hold
`sleep_seconds` (each request waits that long first: a slow server for timeout tests) and
`threads` (ONNX Runtime intra-op threads, default 1) and `refuse_load` (load() reports not
ready). The advertised metadata (inputs, outputs, -1 for a dynamic axis) is read from the graph
on load, as a real server does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.logging import logger
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri

REQUEST_LOG_PREFIX = "mvrt-test request for "
_DATATYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
              "tensor(uint8)": "UINT8"}  # UINT8: contract 2's `video`


class OnnxRuntimeModel(MLModel):
    """Runs the ONNX file of `parameters.uri`; inputs and outputs are named as in the graph."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self._sleep_seconds = float(extra.get("sleep_seconds", 0.0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("threads", 1))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if extra.get("refuse_load"):
            return False  # loaded but not ready: what a runtime reports when its model cannot serve
        uri = await get_model_uri(self.settings)
        self._session = ort.InferenceSession(uri, sess_options=options, providers=["CPUExecutionProvider"])
        self._settings.inputs = [_metadata(i) for i in self._session.get_inputs()]
        self._settings.outputs = [_metadata(o) for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        logger.info("%s%s", REQUEST_LOG_PREFIX, self.name)  # tests wait for this line (MLServer.requests_seen)
        if self._sleep_seconds:
            await asyncio.sleep(self._sleep_seconds)
        feeds = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        wanted = [o.name for o in payload.outputs] if payload.outputs else [o.name for o in self._session.get_outputs()]
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(None, self._session.run, wanted, feeds)
        outputs = [NumpyCodec.encode_output(name, np.ascontiguousarray(value)) for name, value in zip(wanted, results)]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)


def _metadata(node) -> MetadataTensor:
    shape = [d if isinstance(d, int) else -1 for d in node.shape]
    return MetadataTensor(name=node.name, datatype=_DATATYPES.get(node.type, node.type), shape=shape)
