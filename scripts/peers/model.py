"""What every peer server does per image, so that it does the same work as mammo-serve: decode,
the model's own preprocessing (`mammo.preprocess` steps, reduction, resize, normalisation; the
peers' Python version in preprocess.py beside this file), then ONNX Runtime on a batch. The
peers answer the raw outputs; mammo-serve's softmax and JSON are the only work it does that
they skip."""

import io

import numpy as np
import onnxruntime as ort
from preprocess import parse_steps, to_input


class Model:
    """One ONNX Runtime session (one intra-op thread unless told) and the model's preprocessing."""

    def __init__(self, path: str, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.size = int(meta["mammo.input_size"])
        self.mean = [float(v) for v in meta["mammo.mean"].split(",")]
        self.std = [float(v) for v in meta["mammo.std"].split(",")]
        self.steps = parse_steps(meta.get("mammo.preprocess", ""))
        self.outputs = [o.name for o in self.session.get_outputs()]

    def tensor(self, image: bytes) -> np.ndarray:
        return to_input(io.BytesIO(image), self.size, self.mean, self.std, self.steps)

    def run(self, images: list[bytes]) -> dict[str, np.ndarray]:
        x = np.stack([self.tensor(b) for b in images])
        return dict(zip(self.outputs, self.session.run(self.outputs, {"input": x})))
