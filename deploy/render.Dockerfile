# syntax=docker/dockerfile:1
# loraforge render: the render service (gRPC; with LORAFORGE_K8S__RENDER_JOBS it runs each
# render as a GPU Job) and the GPU render worker (`python -m loraforge.render.worker`: the
# queue worker of compose's render-worker, or `--job ID` in a Kubernetes render Job's pod).
# One image for every role; the Deployment runs the default entrypoint, the others override
# the command. Build from the repository root:
#   docker build -f deploy/render.Dockerfile -t loraforge/render:dev .
#
# CUDA: the torch cu128 wheels bring their own CUDA runtime, cuDNN, cuBLAS and NCCL as pip
# packages, so the runtime stage only needs the driver plumbing of the nvidia/cuda "base"
# image (NVIDIA_* env for the container toolkit), not the 3 GB "cudnn-runtime" one.
# Pick that one with --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 if
# something outside torch needs the system CUDA libraries. The host driver must support
# CUDA 12.8 (>= 570).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# ---- builder: a virtualenv with CUDA torch, then the package and its "render" extra ---------
FROM ${CUDA_IMAGE} AS builder
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Ubuntu 24.04's python3 is 3.12 (the package needs >= 3.11); the runtime stage uses the
# same interpreter path, so the venv copies across unchanged.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CUDA torch FIRST, from the PyTorch index: pyproject pins torch==2.13.0 and the
# local version 2.13.0+cu128 satisfies that pin, so the install below keeps it instead of
# pulling the CPU wheel from PyPI.
RUN pip install --upgrade pip \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/loraforge-*.whl)[render]" \
 && python -c "import torch, sys; v = torch.__version__; print(v); sys.exit(0 if '+cu' in v else 'torch is not a CUDA build: ' + v)"

# ---- runtime -----------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# python3 for the venv, ffmpeg for video frames and previews.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 loraforge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/loraforge --create-home \
      --shell /usr/sbin/nologin loraforge
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LORAFORGE_SERVER__HOST=0.0.0.0 \
    LORAFORGE_LOG__FORMAT=json \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /home/loraforge
USER 10001:10001
EXPOSE 50051 9464
# The gRPC check is for the controller; a Job (command overridden) has no gRPC port, and
# Kubernetes ignores Docker HEALTHCHECKs anyway.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "loraforge.runtime.healthcheck", "grpc", "127.0.0.1:50051"]
ENTRYPOINT ["python", "-m", "loraforge.render"]
