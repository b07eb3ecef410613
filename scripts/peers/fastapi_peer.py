"""The hand-written wrapper a team writes first, as a peer in scripts/bench_peers.sh: FastAPI
under uvicorn (one process), POST /predict with the image as the body, one ONNX Runtime session
using every core, one image per run in the thread pool.

python fastapi_peer.py MODEL.onnx PORT"""

import sys

import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from model import Model

app = FastAPI()
model: Model


@app.post("/predict")
async def predict(request: Request):
    body = await request.body()
    out = await run_in_threadpool(model.run, [body])
    return {"logits": out["logits"][0].tolist(), "ood_score": float(out["ood_score"][0])}


@app.get("/health")
def health():
    return {"status": "ready"}


if __name__ == "__main__":
    import os
    model = Model(sys.argv[1], threads=os.cpu_count() or 1)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
