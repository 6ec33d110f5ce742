# syntax=docker/dockerfile:1
#
# Switchboard chat gateway. Build:   docker build -t switchboard .
# Run (see docs/operations.md):
#   docker run -d --name switchboard --stop-timeout 45 \
#     -v switchboard-state:/var/lib/switchboard \
#     -v /srv/switchboard/switchboard.toml:/etc/switchboard/switchboard.toml:ro \
#     -v /srv/switchboard/secrets:/run/secrets:ro \
#     switchboard
#
# For reproducible production builds pin both base images by digest (python:3.11-slim@sha256:...).

# --- builder: turn the project and all its dependencies into wheels ----------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# The build context is filtered by .dockerignore (no .git, .venv, state, secrets, tests).
# Only the wheels leave this stage.
COPY . /src
RUN pip wheel --wheel-dir /wheels /src

# --- final: the wheels, tini, an unprivileged user; no compiler, no source tree ----------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard chat gateway daemon"

# tini is PID 1: it reaps the daemon's subprocess children (command handlers, provider
# helpers) and forwards SIGTERM/SIGINT to the daemon. `docker run --init` is not needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --no-create-home \
       --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
    && install -d -o switchboard -g switchboard -m 0700 /var/lib/switchboard \
    && install -d -o root -g switchboard -m 0750 /etc/switchboard

# Install from the builder's wheels only (--no-index): nothing is fetched at this point, and
# the bind mount (BuildKit, the default builder since Docker 23) keeps the wheels
# themselves out of the image layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels switchboard

ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml \
    SWITCHBOARD_GATEWAY__STATE_DIR=/var/lib/switchboard \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1

# SQLite state (switchboard.db + WAL) and the control socket (control.sock). The directory
# is created and chowned above so that a new named volume inherits uid 10001.
VOLUME /var/lib/switchboard
WORKDIR /var/lib/switchboard

# No EXPOSE by default: the control API is only on the Unix socket in the volume.
# Add `EXPOSE 8787` only when gateway.control.listen is configured; inside a container the
# listener must bind 0.0.0.0:8787 (127.0.0.1 is unreachable from outside the container),
# and every request there needs the bearer token.

# The switchboard user, numerically so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# SIGTERM starts the daemon's bounded shutdown (accounts, then outbox flush): give it time
# with `docker stop -t 45` / `--stop-timeout 45` / compose `stop_grace_period: 45s`.
STOPSIGNAL SIGTERM

# Healthy = the daemon answers on its control socket.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["switchboard", "status", "--json", "--config", "/etc/switchboard/switchboard.toml"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["switchboard", "run", "--config", "/etc/switchboard/switchboard.toml"]
