# hapctl on Node 24. HAProxy is not in this image: point HAPROXY_RUNTIME_API at its admin socket
# (tcp://host:port, or mount the unix socket and use unix:///path).
#
# The build stage is the full node image: it has python3, make and g++, which better-sqlite3's native
# addon needs to be compiled (.npmrc's ignore-scripts=true means npm ci does not build it). Both
# stages are on the same Debian release, so the addon links against the glibc the runtime has.
FROM node:24-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts/ensure-native.mjs ./scripts/
# Compiles the addon from source against this image's own Node headers (/usr/local/include/node).
RUN node scripts/ensure-native.mjs
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# Of the addon's build, only the .node file is needed at run time (the rest is ~25 MB of sources and
# objects).
RUN npm run build && npm prune --omit=dev && \
    cd node_modules/better-sqlite3 && mv build/Release/better_sqlite3.node /tmp/ && rm -rf build deps src && \
    mkdir -p build/Release && mv /tmp/better_sqlite3.node build/Release/ && \
    cd /app && node scripts/ensure-native.mjs --check

FROM node:24-bookworm-slim
# HAPCTL_STORE: the desired state (SQLite), in the /app/data volume: without a volume it is lost with
# the container, and hapctl no longer restores into HAProxy what it was asked to keep.
# HAPCTL_STATE_FILE: the state file of earlier hapctl versions; mount their /app/state volume to have
# the backends it lists imported once.
# HOST=0.0.0.0 makes the API reachable from outside the container, so hapctl refuses to start without
# authentication: pass API_TOKEN (one admin token) or mount a tokens file and set HAPCTL_TOKENS_FILE
# (scoped tokens). HAPCTL_ALLOW_UNAUTHENTICATED=true opts out, with a warning at start.
# docker stop sends SIGKILL after 10 s by default, before HAPCTL_SHUTDOWN_GRACE_MS (30 s) is over:
# stop it with `docker stop -t 35` (Compose: stop_grace_period; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENV NODE_ENV=production HOST=0.0.0.0 PORT=5555 HAPCTL_STORE=/app/data/hapctl.db HAPCTL_STATE_FILE=/app/state/state.json
WORKDIR /app
# The group that owns HAProxy's admin socket must include this user when the socket is mounted.
RUN groupadd --system hapctl && useradd --system --gid hapctl --home /app hapctl
COPY --from=build --chown=hapctl:hapctl /app/node_modules ./node_modules
COPY --from=build --chown=hapctl:hapctl /app/dist ./dist
COPY --chown=hapctl:hapctl package.json ./
# Created before VOLUME so that a new named volume starts owned by hapctl (Docker copies the
# mount point's ownership into it); SQLite needs to create its -wal and -shm files next to the db.
RUN mkdir -p /app/data && chown hapctl:hapctl /app/data && chmod 0750 /app/data
VOLUME ["/app/data"]
USER hapctl
EXPOSE 5555
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||5555)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server.js"]
