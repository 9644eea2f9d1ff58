# syntax=docker/dockerfile:1.7
# driftloop's images, from the same lock as local installs (requirements.lock).
#
#   docker build -t driftloop:0.1.0 .                                   CPU: every service
#   docker build -t driftloop:0.1.0-gpu --build-arg VARIANT=gpu .       the trainer on a GPU
#   docker build -t driftloop-mlflow:3.17.2 --target mlflow .           the tracking server
#
# Every service runs from one image as `driftloop run <service>`; configuration comes only
# from DRIFTLOOP_* variables (see the README's settings table).

ARG PYTHON_VERSION=3.11
# cpu: tensorflow-cpu as pinned in the lock (half the size, same API);
# gpu: tensorflow[and-cuda] at the same version (brings the CUDA and cuDNN wheels).
ARG VARIANT=cpu

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

# Exactly the lock: --no-deps so nothing outside it sneaks in.
FROM base AS deps-cpu
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
 && pip install --no-deps -r /tmp/requirements.lock

# The lock with tensorflow-cpu swapped for tensorflow[and-cuda] of the same version; the rest
# of TensorFlow's dependencies are already pinned by the lock, so only the NVIDIA wheels and
# tensorflow itself are resolved here.
FROM base AS deps-gpu
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
 && tf=$(sed -n 's/^tensorflow-cpu==//p' /tmp/requirements.lock) \
 && grep -v '^tensorflow-cpu==' /tmp/requirements.lock > /tmp/gpu.lock \
 && pip install --no-deps -r /tmp/gpu.lock \
 && pip install -c /tmp/gpu.lock "tensorflow[and-cuda]==${tf}"

# hadolint ignore=DL3006
FROM deps-${VARIANT} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# driftloop/services and driftloop/event_schemas are links to services/ and schemas/; COPY keeps
# them links, so their targets come too. The wheel built from here carries the files themselves
# (the schemas as package data), and bench/ is not part of it.
COPY driftloop ./driftloop
COPY services ./services
COPY schemas ./schemas
# hadolint ignore=DL3042
RUN pip install --no-deps --no-build-isolation .

# The MLflow tracking server at the client's version, with PostgreSQL and S3 support and
# nothing else (no TensorFlow): `mlflow server` is its command.
FROM base AS mlflow
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv /opt/venv \
 && mlflow=$(sed -n 's/^mlflow==//p' /tmp/requirements.lock) \
 && pip install -c /tmp/requirements.lock "mlflow==${mlflow}" boto3 psycopg2-binary==2.9.13 \
 && groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid mlflow --create-home --shell /usr/sbin/nologin mlflow
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]

# The default (last) target: the CPU image, or the GPU one with --build-arg VARIANT=gpu.
FROM base AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="driftloop" \
      org.opencontainers.image.description="Event-driven continuous training: ingest, monitor, trainer, serve" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.driftloop.variant="${VARIANT}"
RUN groupadd --system --gid 10001 driftloop \
 && useradd --system --uid 10001 --gid driftloop --home-dir /var/lib/driftloop \
      --create-home --shell /usr/sbin/nologin driftloop
# The event schemas come inside the package (driftloop/event_schemas in site-packages).
COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py docker/bootstrap.py /opt/driftloop/bin/
ENV DRIFTLOOP_STATE_DIR=/var/lib/driftloop/state \
    DRIFTLOOP_CACHE_DIR=/var/lib/driftloop/cache \
    DRIFTLOOP_LOG_FORMAT=json \
    HOME=/var/lib/driftloop \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /var/lib/driftloop
USER 10001:10001
EXPOSE 8080 8081 8083 8084
# Healthy = ready: serve has a model loaded, the consumers consume. The script finds which
# service this container runs from its command line and asks that service's own endpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/opt/driftloop/bin/healthcheck.py"]
ENTRYPOINT ["driftloop"]
CMD ["run", "serve"]
