# One image for every keycrm-analytics service: the same binary runs `run` (embedded) or, as
# docker-compose.yml does, `ingest`, `process` and `query-api` apart.
#
#   docker build -t keycrm-analytics .

# Build: the workspace's Rust (rust-version 1.94). librdkafka is built from its bundled source
# (C compiler, make, zlib headers: all in this image), SQLite and mimalloc likewise.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ksa-app --bin keycrm-analytics \
 && cp target/release/keycrm-analytics /usr/local/bin/keycrm-analytics

# Run: no TLS library is linked (the HTTP clients are built without TLS), zlib is in the base.
FROM debian:bookworm-slim
RUN useradd --system --user-group --home-dir /var/lib/keycrm-analytics --create-home --shell /usr/sbin/nologin ksa \
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
