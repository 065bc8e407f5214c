# syntax=docker/dockerfile:1
# One image for every role, chosen by the command: `webapi`, `worker`, `notifications` or `all` (the default).
# TypeScript runs through tsx, a production dependency: no build step, the image runs what the tests run.
ARG NODE_VERSION=22

FROM node:${NODE_VERSION}-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/signalr/package.json packages/signalr/
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production HOST=0.0.0.0 LOG_FORMAT=json
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY packages/signalr/package.json packages/signalr/
COPY packages/signalr/src packages/signalr/src
COPY drizzle drizzle
COPY src src
COPY scripts/docker-entrypoint.sh scripts/healthcheck.mjs scripts/
# The `all` role keeps its embedded database in /app/.data; the image's unprivileged user may write only there.
RUN mkdir .data && chown node:node .data
USER node
EXPOSE 5000 5001 5002
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["node", "scripts/healthcheck.mjs"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["all"]
