# One image for every keycrm-analytics service: the same binary runs `run` (embedded) or, as
# docker-compose.yml does, `ingest`, `process` and `query-api` apart.
#
#   docker build -t keycrm-analytics .

# Build: the workspace's Rust (rust-version 1.94). librdkafka is built from its bundled source
# (C compiler, make, zlib headers: all in this image), SQLite and mimalloc likewise (SQLite with
# the compile-time options of .cargo/config.toml, which `COPY . .` brings in).
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ksa-app --bin keycrm-analytics \
 && cp target/release/keycrm-analytics /usr/local/bin/keycrm-analytics

# Run: TLS is rustls, linked in (the enricher's reqwest client, and with it every reqwest client
# of the binary: `probe` too). rustls verifies servers against the platform's certificate store,
# so the image needs Debian's ca-certificates: without it the enricher's calls to the KeyCRM API
# fail, and building any client, the health checks' `probe` included, fails with "No CA
# certificates were loaded from the system". zlib is in the base.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install --yes --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --home-dir /var/lib/keycrm-analytics --create-home --shell /usr/sbin/nologin ksa \
 && mkdir -p /etc/keycrm-analytics
COPY --from=build /usr/local/bin/keycrm-analytics /usr/local/bin/keycrm-analytics
COPY config/distributed.example.toml /etc/keycrm-analytics/distributed.example.toml
USER ksa
WORKDIR /var/lib/keycrm-analytics
ENV KSA__DATA_DIR=/var/lib/keycrm-analytics \
    KSA__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["keycrm-analytics"]
CMD ["run"]
