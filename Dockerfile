# Herald worker image: slim Python, runtime dependencies at the locked versions, non-root.
# `docker run IMAGE` runs `herald worker`; `docker run IMAGE topics` creates the topics.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY policy ./policy
# The lock pins every package, dev tools included; as constraints it installs only what
# the project needs at run time, each at its locked version. Editable, so the schemas and
# the default policy stay where the package looks for them (beside it).
RUN pip install --constraint requirements.lock --editable . \
    && useradd --system --uid 10001 --home-dir /var/lib/herald --create-home herald

USER herald
ENV HERALD_DATA_DIR=/var/lib/herald \
    HERALD_POLICY_FILE=/app/policy/default.toml \
    HERALD_METRICS_HOST=0.0.0.0 \
    HERALD_METRICS_PORT=9464 \
    HERALD_LOG_FORMAT=json
EXPOSE 9464

# Liveness only (the event loop turns): readiness belongs to the orchestrator, which may
# stop routing to a worker that is recovering without restarting it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['HERALD_METRICS_PORT'] + '/healthz', timeout=2)"]

ENTRYPOINT ["herald"]
CMD ["worker"]
