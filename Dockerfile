# syntax=docker/dockerfile:1
# whitebill's container image: `docker build -t whitebill .`, then `docker run IMAGE [COMMAND]` runs
# `whitebill COMMAND` (serve by default) through deploy/docker-entrypoint.sh. compose.yaml runs the whole
# set (PostgreSQL, Redis, the migration, two API processes, two workers); docs/operations/deployment.md
# tells how. Three stages: the browser pages (Node.js), the Python environment, and the slim image that
# runs as an unprivileged user and holds only the environment and the built pages.

# The browser pages (web/: the reference portal and GraphiQL), built from the pinned packages of
# web/package-lock.json into web/dist, as `make web` does.
FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/tsconfig.json web/vite.config.ts ./
COPY web/portal/ portal/
COPY web/graphiql/ graphiql/
RUN npm run --silent build

# whitebill and its dependencies in a virtual environment at the path it keeps in the final image, with
# the `redis` extra: the client that WHITEBILL_RATE_LIMIT_STORAGE=async+redis://... needs.
FROM python:3.11-slim AS python
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/whitebill
WORKDIR /src
COPY pyproject.toml README.md ./
COPY whitebill/ whitebill/
COPY resolvers/ resolvers/
COPY schema/ schema/
COPY billing/ billing/
COPY gateways/ gateways/
COPY models/ models/
RUN /opt/whitebill/bin/pip install --no-cache-dir '.[redis]'

FROM python:3.11-slim AS runtime
ENV PATH=/opt/whitebill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WHITEBILL_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system --gid 10001 whitebill \
    && useradd --system --uid 10001 --gid whitebill --home-dir /var/lib/whitebill --create-home \
        --shell /usr/sbin/nologin whitebill
COPY --from=python /opt/whitebill /opt/whitebill
# whitebill serves the pages from web/dist beside its own package (whitebill/web.py): in the environment
# that is site-packages/web/dist.
COPY --from=web /src/web/dist /opt/whitebill/lib/python3.11/site-packages/web/dist
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/whitebill-entrypoint
# The working directory: nothing is written there in production (the database is PostgreSQL); it is the
# user's own, for a SQLite file of a trial run.
WORKDIR /var/lib/whitebill
USER 10001:10001
EXPOSE 8000
# Healthy while GET /healthz answers 200: the server's reads the database; a worker's (served when
# WHITEBILL_WORKER_HEALTH_PORT is PORT, as compose.yaml sets it) says its loop is not stalled. Python's own
# urllib, so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/whitebill-entrypoint"]
CMD ["serve"]
