# relatlas and its pinned dependencies (CPU-only torch), as a non-root user.
# The ServerApp (a SuperExec), the SuperNodes and the Ray nodes run this image.
# Build from the repository root: docker build -f docker/app.Dockerfile -t relatlas-app:0.1.0 .
# Any image with Python 3.11, pip and useradd; tests/docker_daemon.py builds one from Debian packages.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FLWR_HOME=/home/app/.flwr

RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY aggregation aggregation
COPY clients clients
COPY server server
COPY benchmarks benchmarks
COPY relatlas relatlas
# CPU-only torch wheels; empty (--build-arg TORCH_INDEX_URL=) installs torch from the
# main package index instead: its CUDA build, about 5 GB more.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} . \
    && mkdir -p /app/runs && chown -R app:app /app

USER 10001:10001
CMD ["relatlas", "run", "--out", "/app/runs/latest"]
