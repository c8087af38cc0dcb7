# The MLflow tracking server: SQLite store and served artifacts on a volume.
# Any image with Python 3.11, pip and useradd; tests/docker_daemon.py builds one from Debian packages.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "mlflow==3.17.2" \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /mlflow && chown app:app /mlflow

USER 10001:10001
WORKDIR /mlflow
EXPOSE 5000
ENTRYPOINT ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", \
            "--backend-store-uri", "sqlite:////mlflow/mlflow.db", "--artifacts-destination", "/mlflow/artifacts", \
            "--allowed-hosts", "mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000"]
