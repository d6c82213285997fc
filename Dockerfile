# cash-receipts on the current Node LTS. One image for every role: the compose file picks the
# command (migrate, scheduler, worker, serve, sandbox).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=optional
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY migrations migrations
RUN npm run build && npm prune --omit=dev --omit=optional

FROM node:24-bookworm-slim
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
