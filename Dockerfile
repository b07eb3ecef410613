# syntax=docker/dockerfile:1
# mammo-serve images. Two runtime targets:
#   gpu (default): CUDA 13 + cuDNN 9 runtime, TensorRT 10 and onnxruntime-gpu 1.31.1
#       docker build -t mammo-serve:gpu .
#   cpu: Debian slim with onnxruntime 1.31.1
#       docker build --target cpu -t mammo-serve:cpu .
# The model is not baked in: mount a folder holding mammo.onnx at /app/models.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin mammo-serve

# ONNX Runtime comes from the PyPI wheels; only their shared libraries are kept.
FROM python:3.11-slim-bookworm AS ort-cpu
RUN pip install --no-cache-dir --no-deps --target /opt/py onnxruntime==1.31.1 \
 && mkdir -p /opt/ort \
 && cp /opt/py/onnxruntime/capi/libonnxruntime.so.1.31.1 /opt/py/onnxruntime/capi/libonnxruntime_providers_shared.so /opt/ort/ \
 && ln -s libonnxruntime.so.1.31.1 /opt/ort/libonnxruntime.so

FROM python:3.11-slim-bookworm AS ort-gpu
RUN pip install --no-cache-dir --no-deps --target /opt/py onnxruntime-gpu==1.31.1 tensorrt-cu13-libs==10.16.1.11 \
 && mkdir -p /opt/ort /opt/tensorrt \
 && cp /opt/py/onnxruntime/capi/libonnxruntime*.so* /opt/ort/ \
 && ln -s libonnxruntime.so.1.31.1 /opt/ort/libonnxruntime.so \
 && cp -a /opt/py/tensorrt_libs/. /opt/tensorrt/

FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app mammo
COPY --from=ort-cpu /opt/ort /opt/ort
COPY --from=build /src/target/release/mammo-serve /usr/local/bin/mammo-serve
WORKDIR /app
ENV ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so \
    MAMMO_HOST=0.0.0.0 \
    MAMMO_PORT=8080 \
    MAMMO_MODEL=/app/models/mammo.onnx \
    MAMMO_DEVICE=cpu \
    MAMMO_LOG_FORMAT=json
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["mammo-serve"]

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app mammo \
 && mkdir -p /var/cache/mammo/trt \
 && chown mammo /var/cache/mammo/trt
COPY --from=ort-gpu /opt/ort /opt/ort
COPY --from=ort-gpu /opt/tensorrt /opt/tensorrt
COPY --from=build /src/target/release/mammo-serve /usr/local/bin/mammo-serve
WORKDIR /app
ENV ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so \
    LD_LIBRARY_PATH=/opt/ort:/opt/tensorrt \
    MAMMO_HOST=0.0.0.0 \
    MAMMO_PORT=8080 \
    MAMMO_MODEL=/app/models/mammo.onnx \
    MAMMO_DEVICE=auto \
    MAMMO_TRT_CACHE_DIR=/var/cache/mammo/trt \
    MAMMO_LOG_FORMAT=json
USER 10001
EXPOSE 8080
# TensorRT builds its engines on the first start (minutes); later starts read the cache.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["mammo-serve"]
