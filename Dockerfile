# syntax=docker/dockerfile:1
# Stampede API image: TypeScript compiled in a build stage, run by pm2-runtime with production dependencies only.
# Built by docker-compose.yml (services `app` and `migrate`); the build context is the repository root.
# node:20-bookworm-slim is Docker Hub's image where one is reachable; elsewhere `npm run containers:setup`
# builds an image of that name from debian:bookworm-slim and this machine's Node.js (docs/docker.md).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts ./scripts
# scripts/ (the demo, the bench) import the load-test code: tsc follows those imports.
COPY loadtest ./loadtest
# Tests beside the sources (src/**/*.test.ts) may import helpers from test/: tsc follows those imports.
COPY test ./test
# tsc emits only JavaScript: carry the other files the code reads beside itself (Lua scripts, SQL, JSON).
# Then the dev dependencies go: the runtime stage takes node_modules from here, one `npm ci` for both.
RUN npm run build \
  && find src scripts -type f ! -name '*.ts' -exec cp --parents {} dist/ \; \
  && rm -f dist/.tsbuildinfo \
  && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=23000 \
    METRICS_PORT=29100 \
    PM2_HOME=/home/node/.pm2
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json ecosystem.config.cjs ./
COPY --chown=node:node migrations ./migrations
COPY --from=build --chown=node:node /app/dist ./dist
# ecosystem.config.cjs also writes the workers' output to .stack/logs/ (the local stack's files). pm2-runtime
# already streams it to the container's stdout, so the files point at /dev/null instead of filling the layer.
RUN mkdir -p .stack/logs \
  && chown -R node:node .stack \
  && ln -s /dev/null .stack/logs/api.out.log \
  && ln -s /dev/null .stack/logs/api.err.log \
  && ln -s /dev/null .stack/logs/jobs.out.log \
  && ln -s /dev/null .stack/logs/jobs.err.log
USER node
# Worker N of the `api` cluster listens on PORT + N and serves metrics on METRICS_PORT + N; the `jobs`
# process serves its metrics and the merged view on JOBS_METRICS_PORT.
EXPOSE 23000 23001 29100 29101 29199
# pm2-runtime stays in the foreground, forwards SIGTERM/SIGINT to the workers (which drain) and restarts crashes.
CMD ["node_modules/.bin/pm2-runtime", "ecosystem.config.cjs"]
