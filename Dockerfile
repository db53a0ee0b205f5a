# Build: the whole workspace in release mode.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin boxoffice

# Run: a small image with just the binary.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 boxoffice
COPY --from=build /src/target/release/boxoffice /usr/local/bin/boxoffice
USER boxoffice
ENV BIND_ADDR=0.0.0.0:3000 LOG_FORMAT=json
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=3s --retries=12 CMD curl -fsS http://127.0.0.1:3000/health/live || exit 1
ENTRYPOINT ["boxoffice"]
CMD ["serve"]
