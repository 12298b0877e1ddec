# syntax=docker/dockerfile:1
# regolancer-orchestrator. Build from the repository root (nothing else is fetched but PyPI):
#   docker build -t regolancer-orchestrator .
# The regolancer binary is NOT in this image: pick the release that suits your LND and mount it
# read-only at /usr/local/bin/regolancer (see docker-compose.yml). Same for LND's tls.cert and
# macaroon, and a config.template.json whose paths point at where you mounted them.

# --- build: the repository becomes one wheel (pip fetches hatchling for the isolated build) ----
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY bot/ bot/
COPY sim/ sim/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: the wheel and its dependencies, no compiler, no source tree ----------------------
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    REGOLANCER_TEMPLATE=/config/config.template.json \
    REGOLANCER_BIN=/usr/local/bin/regolancer

# Bind-mounted from the build stage, so the wheel itself never lands in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl

# A fixed uid, so operators can chown a bind-mounted ./data to it (10001:10001).
RUN groupadd --system --gid 10001 regolancer \
    && useradd --system --uid 10001 --gid regolancer --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin regolancer \
    && install -d -o regolancer -g regolancer -m 0700 /data

# A default only: its LND paths are examples; mount your own over it.
COPY config.template.json /config/config.template.json

USER 10001:10001
WORKDIR /data
# Created and owned above, so a fresh named volume starts out writable by uid 10001.
VOLUME ["/data"]

# The daemon stops on SIGTERM: it signals its regolancer process groups and waits for them.
STOPSIGNAL SIGTERM
# `health` exits 0 while the daemon's heartbeat in DATA_DIR's state store is fresh.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["regolancer-orchestrator", "health"]

ENTRYPOINT ["regolancer-orchestrator"]
CMD ["run"]
