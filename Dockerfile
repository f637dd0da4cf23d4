# hapctl on Node 24. HAProxy is not in this image: point HAPROXY_RUNTIME_API at its admin socket
# (tcp://host:port, or mount the unix socket and use unix:///path).
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=5555 HAPCTL_STATE_FILE=/app/state/state.json
WORKDIR /app
# The group that owns HAProxy's admin socket must include this user when the socket is mounted.
RUN groupadd --system hapctl && useradd --system --gid hapctl --home /app hapctl
COPY --from=build --chown=hapctl:hapctl /app/node_modules ./node_modules
COPY --from=build --chown=hapctl:hapctl /app/dist ./dist
COPY --chown=hapctl:hapctl package.json ./
RUN mkdir -p /app/state && chown hapctl:hapctl /app/state
VOLUME ["/app/state"]
USER hapctl
EXPOSE 5555
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||5555)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server.js"]
