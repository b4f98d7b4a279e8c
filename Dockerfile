# Labqueue web app and worker image. The base is a build argument so that machines
# without a registry can build on a locally imported Python image:
#   docker build --build-arg BASE_IMAGE=local/python:3.11 -t labqueue .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app labqueue

# A virtualenv works the same on python:*-slim and on Debian's own python3.
COPY requirements.txt ./
RUN python3 -m venv /opt/venv && pip install --require-hashes -r requirements.txt

COPY frontend/ frontend/
COPY backend/ backend/
COPY config_example.py ./
RUN mkdir -p userData failedAnalyses logs instance \
    && chown labqueue: userData failedAnalyses logs instance

USER labqueue
EXPOSE 8000
# The web service; docker-compose.yml runs the worker from the same image. Threaded
# workers keep answering heartbeats during multi-gigabyte uploads.
CMD ["sh", "-c", "flask --app frontend db upgrade && exec gunicorn --bind 0.0.0.0:8000 --workers 3 --worker-class gthread --threads 8 --no-control-socket --access-logfile - 'frontend:create_app()'"]
