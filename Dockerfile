# syntax=docker/dockerfile:1
# Build: compile TypeScript with the dev dependencies, then drop them.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY gen ./gen
COPY migrations ./migrations
COPY web ./web
# `npm ci` runs the `prepare` script, which is `npm run build` (tsc → dist/, and Vite builds the
# web dashboard in web/ → dist/web, which the server serves at /).
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Run: compiled JS, production dependencies, unprivileged user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/migrations ./migrations
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# GET /healthz on $PORT, over https when TLS_CERT_FILE is set (src/ops/healthcheck.ts).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["node", "dist/src/ops/healthcheck.js"]
# The same command as `npm start`; node as PID 1 receives SIGTERM and drains.
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=100", "dist/src/main.js"]
