# syntax=docker/dockerfile:1
# mammo-serve images. Two runtime targets:
#   gpu (default): CUDA 13 + cuDNN 9 runtime, TensorRT 10 and onnxruntime-gpu 1.31.1
#       docker build -t mammo-serve:gpu .
#   cpu: Debian 12 slim with onnxruntime 1.31.1
#       docker build --target cpu -t mammo-serve:cpu .
# The shipped models are in the image (/app/models/mammo.onnx, and mammo-int8.onnx on the CPU
# target, served by default there); to serve another, mount a folder
# holding its mammo.onnx over /app/models or build an image FROM this one that copies it there.
#
# Where the binary comes from (build argument BINARY):
#   build (default) compiles it in the Rust 1.95 image on Debian 12;
#   prebuilt takes target/release/mammo-serve from the build context, built beforehand on a
#       Debian 12 host with the same toolchain (`cargo build --release --bin mammo-serve`):
#       for hosts that reach crates.io but no container registry (scripts/container_test.sh).
ARG BINARY=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin mammo-serve

FROM debian:bookworm-slim AS prebuilt
COPY target/release/mammo-serve /src/target/release/mammo-serve

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

# ONNX Runtime comes from the PyPI wheels; only their shared libraries are kept. Behind a proxy
# that re-signs TLS (common on hospital networks) pass its CA bundle as the build secret
# `ca-bundle`: `--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt`.
FROM debian:bookworm-slim AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*

FROM wheels AS ort-cpu
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && pip download --no-cache-dir --no-deps --only-binary=:all: --dest /tmp/wheels onnxruntime==1.31.1 \
 && python3 -m zipfile -e /tmp/wheels/onnxruntime-*.whl /tmp/py \
 && mkdir -p /opt/ort \
 && cp /tmp/py/onnxruntime/capi/libonnxruntime.so.1.31.1 /tmp/py/onnxruntime/capi/libonnxruntime_providers_shared.so /opt/ort/ \
 && ln -s libonnxruntime.so.1.31.1 /opt/ort/libonnxruntime.so \
 && rm -rf /tmp/wheels /tmp/py

FROM wheels AS ort-gpu
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && pip download --no-cache-dir --no-deps --only-binary=:all: --dest /tmp/wheels onnxruntime-gpu==1.31.1 \
 && python3 -m zipfile -e /tmp/wheels/onnxruntime_gpu-*.whl /tmp/py \
 && mkdir -p /opt/ort \
 && cp /tmp/py/onnxruntime/capi/libonnxruntime*.so* /opt/ort/ \
 && ln -s libonnxruntime.so.1.31.1 /opt/ort/libonnxruntime.so \
 && rm -rf /tmp/wheels /tmp/py

# tensorrt-cu13-libs on PyPI is a stub that fetches the real wheel from pypi.nvidia.com.
FROM wheels AS tensorrt
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && pip install --no-cache-dir --break-system-packages --target /tmp/py tensorrt-cu13-libs==10.16.1.11 \
 && mkdir -p /opt/tensorrt \
 && cp -a /tmp/py/tensorrt_libs/. /opt/tensorrt/ \
 && rm -rf /tmp/py

FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin mammo
COPY --from=ort-cpu /opt/ort /opt/ort
COPY --from=binary /src/target/release/mammo-serve /usr/local/bin/mammo-serve
# On a CPU the INT8 model (README "Precision"; MAMMO_PRECISION=fp32 serves the FP32 one) and
# batches of at most 2, the raw engine's best here (docs/benchmarks.md).
COPY models/mammo.onnx models/mammo.onnx.sha256 models/mammo-int8.onnx models/mammo-int8.onnx.sha256 /app/models/
WORKDIR /app
ENV ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so \
    MAMMO_HOST=0.0.0.0 \
    MAMMO_PORT=8080 \
    MAMMO_MODEL=/app/models/mammo.onnx \
    MAMMO_PRECISION=int8 \
    MAMMO_MAX_BATCH_SIZE=2 \
    MAMMO_DEVICE=cpu \
    MAMMO_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["mammo-serve"]

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin mammo \
 && mkdir -p /var/cache/mammo/trt \
 && chown mammo /var/cache/mammo/trt
COPY --from=ort-gpu /opt/ort /opt/ort
COPY --from=tensorrt /opt/tensorrt /opt/tensorrt
COPY --from=binary /src/target/release/mammo-serve /usr/local/bin/mammo-serve
COPY models/mammo.onnx models/mammo.onnx.sha256 /app/models/
WORKDIR /app
ENV ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so \
    LD_LIBRARY_PATH=/opt/ort:/opt/tensorrt \
    MAMMO_HOST=0.0.0.0 \
    MAMMO_PORT=8080 \
    MAMMO_MODEL=/app/models/mammo.onnx \
    MAMMO_DEVICE=auto \
    MAMMO_TRT_CACHE_DIR=/var/cache/mammo/trt \
    MAMMO_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
# TensorRT builds its engines on the first start (minutes); later starts read the cache.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["mammo-serve"]
