"""NVIDIA Triton Inference Server (through PyTriton 0.7.0, which bundles Triton 2.51) serving the
model as a peer in scripts/bench_peers.sh: dynamic batcher on (max batch 8, a few ms of queue
delay), two model instances, each with its own single-threaded ONNX Runtime session. Requests
are KServe v2: the JPEG as one BYTES element.

python triton_peer.py MODEL.onnx PORT [QUEUE_DELAY_US]"""

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from model import Model

INSTANCES = 2
MAX_BATCH = 8


def infer_fn(model: Model):
    @batch
    def infer(image: np.ndarray):
        out = model.run([bytes(row[0]) for row in image])
        return {"logits": out["logits"], "ood_score": out["ood_score"]}
    return infer


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    delay_us = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    config = TritonConfig(http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="mammo",
            infer_func=[infer_fn(Model(path)) for _ in range(INSTANCES)],
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(8,)),
                     Tensor(name="ood_score", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=MAX_BATCH,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us)),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
