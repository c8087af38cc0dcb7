# The Flower SuperLink: Flower alone, no torch; the ServerApp runs in its own
# container (isolation "process"), so this image never imports the app.
# Any image with Python 3.11, pip and useradd; tests/docker_daemon.py builds one from Debian packages.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 FLWR_TELEMETRY_ENABLED=0 FLWR_HOME=/home/app/.flwr
RUN pip install --no-cache-dir "flwr==1.42.0" \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /state && chown app:app /state

USER 10001:10001
WORKDIR /home/app
EXPOSE 9093
ENTRYPOINT ["flower-superlink"]
