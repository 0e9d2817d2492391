# syntax=docker/dockerfile:1
# loraforge ingest: uploads, probing and clip extraction; needs ffmpeg.
# Build from the repository root:
#   docker build -f deploy/ingest.Dockerfile -t loraforge/ingest:dev .
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a virtualenv with the package and only the "ingest" extra ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first, then the code (services/loraforge is the package).
COPY pyproject.toml README.md ./
COPY services/ services/
RUN pip install --upgrade pip \
 && pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/loraforge-*.whl)[ingest]"

# ---- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# ffmpeg/ffprobe for decoding and clip extraction.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 loraforge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/loraforge --create-home \
      --shell /usr/sbin/nologin loraforge
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LORAFORGE_SERVER__HOST=0.0.0.0 \
    LORAFORGE_LOG__FORMAT=json
WORKDIR /home/loraforge
USER 10001:10001
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "loraforge.runtime.healthcheck", "grpc", "127.0.0.1:50051"]
ENTRYPOINT ["python", "-m", "loraforge.ingest"]
