# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with the dev dependencies, ship only dist/ and production deps.

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts ./scripts
COPY native ./native
RUN npm run build

FROM node:20-slim AS runtime
ENV NODE_ENV=production \
    PORTICO_CONFIG=/etc/portico/portico.yaml \
    PORTICO_DATA=/var/lib/portico
WORKDIR /opt/portico
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY config ./config
RUN groupadd --system portico && useradd --system --gid portico --home /var/lib/portico portico \
 && mkdir -p /etc/portico /var/lib/portico \
 && cp config/portico.yaml /etc/portico/portico.yaml \
 && sed -i 's/127\.0\.0\.1:/0.0.0.0:/' /etc/portico/portico.yaml \
 && chown -R portico:portico /var/lib/portico && chmod 0700 /var/lib/portico
USER portico
VOLUME ["/var/lib/portico"]
# admin api, HTTP and HTTPS ingress, DNS (udp and tcp)
EXPOSE 9900 8080 8443 8053/udp 8053/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9900/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/portico"]
CMD ["up"]
