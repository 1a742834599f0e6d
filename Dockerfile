# syntax=docker/dockerfile:1
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libmariadb-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/domain/Cargo.toml crates/domain/
COPY crates/db/Cargo.toml crates/db/
COPY crates/store/Cargo.toml crates/store/
COPY crates/service/Cargo.toml crates/service/
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && for crate in domain db store service; do mkdir -p crates/$crate/src && echo '' > crates/$crate/src/lib.rs; done \
    && for bench in customers sales reports maintenance webhooks; do echo 'fn main() {}' > benches/$bench.rs; done \
    && cargo build --release --locked && rm -rf src benches crates/*/src
COPY . .
RUN touch src/main.rs src/lib.rs crates/*/src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libmariadb3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/custclass --create-home custclass
COPY --from=build /src/target/release/custclass /usr/local/bin/custclass
USER custclass
WORKDIR /var/lib/custclass
ENV BIND_ADDR=0.0.0.0:8080 \
    DATABASE_URL=/var/lib/custclass/data/custclass.db \
    RUST_LOG=info
RUN mkdir -p /var/lib/custclass/data
# The embedded SQLite database lives here; mount a volume to keep it.
VOLUME ["/var/lib/custclass/data"]
EXPOSE 8080
# Follows BIND_ADDR: a container started with another port is still checked on it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${BIND_ADDR##*:}/healthz" || exit 1
ENTRYPOINT ["custclass"]
CMD ["serve"]
