# Labqueue web app and worker image. The base is a build argument so that machines
# without a registry can build on the local Debian base (sudo make pipeline-base):
#   docker build --build-arg BASE_IMAGE=labqueue/python-base:bookworm-3 -t labqueue .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# The app's user and group (10001), which own the data and run the pipelines: never
# the host's docker group, which the workers only join to reach the engine.
RUN groupadd --system --gid 10001 labqueue \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app labqueue

# A virtualenv works the same on python:*-slim and on Debian's own python3. Behind a
# proxy that inspects TLS, pip trusts deploy/pip-ca.pem when it is there (the host's
# bundle: cp /etc/ssl/certs/ca-certificates.crt deploy/pip-ca.pem).
COPY requirements.txt deploy/pip-ca.pe[m] ./
RUN python3 -m venv /opt/venv \
    && if [ -f pip-ca.pem ]; then export PIP_CERT=/app/pip-ca.pem; fi \
    && pip install --require-hashes -r requirements.txt \
    && rm -f pip-ca.pem

COPY frontend/ frontend/
COPY backend/ backend/
COPY deploy/ deploy/
COPY config_example.py ./
RUN mkdir -p userData failedAnalyses logs instance \
    && chown labqueue:labqueue userData failedAnalyses logs instance

USER labqueue
EXPOSE 8000
# The web service. Migrations are docker-compose.yml's one-shot `prepare` service
# (deploy/prepare.sh), which web, workers and beat wait for. Threaded workers keep
# answering heartbeats during multi-gigabyte uploads.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "8", "--no-control-socket", "--access-logfile", "-", "frontend:create_app()"]
