# relatlas and its pinned dependencies (CPU-only torch), as a non-root user.
# The ServerApp (a SuperExec), the SuperNodes and the Ray nodes run this image.
# Build from the repository root: docker build -f docker/app.Dockerfile -t relatlas-app:0.1.0 .
FROM python:3.11.11-slim-bookworm

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
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu . \
    && mkdir -p /app/runs && chown -R app:app /app

USER 10001:10001
CMD ["relatlas", "run", "--out", "/app/runs/latest"]
