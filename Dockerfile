# nnforge: the API, the worker and the migration job share this image.
#   docker build -t nnforge .
#   CUDA base:  docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 -t nnforge:cuda .
# TORCH_INDEX, when set, is an extra package index for torch wheels (PyTorch publishes CPU-only and
# per-CUDA indexes; a CPU-only index keeps the CPU image small).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# The CUDA base images bring no Python of their own choice; install one that matches the CPU image.
RUN if ! command -v python3.11 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 NNFORGE_HOME=/data
RUN python3.11 -m venv $VIRTUAL_ENV

ARG TORCH_INDEX=
WORKDIR /srv/nnforge
COPY pyproject.toml README.md alembic.ini ./
COPY models models
COPY app app
COPY workers workers
COPY migrations migrations
# The `onnx` extra: ONNX downloads, and the export each checkpoint needs before predict can serve it.
RUN pip install --no-cache-dir ${TORCH_INDEX:+--extra-index-url ${TORCH_INDEX}} '.[onnx]'

RUN useradd --create-home --uid 10001 nnforge && mkdir -p /data && chown nnforge /data
USER nnforge
EXPOSE 8000
# The API: uvicorn with the read timeouts and connection cap of the settings (HEADER_TIMEOUT_SECONDS,
# BODY_TIMEOUT_SECONDS, MAX_CONNECTIONS, ...), which a bare `uvicorn` command line cannot set.
CMD ["python", "-m", "app.client.cli", "api", "--host", "0.0.0.0", "--port", "8000"]
