# ratls-proxy: multi-stage build, small non-root runtime image.
#   docker build -t ratls-proxy .
#   docker run --rm -v $PWD/config:/etc/ratls-proxy:ro -v ratls-ca:/var/lib/ratls-proxy ratls-proxy
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The proxy alone: no `sim` feature, so the image carries no quote and collateral forger and
# no `demo` (both stay in the default features, for developers). The version line says so,
# and the build fails if it does not.
RUN cargo build --release --locked --no-default-features --features jemalloc --bin ratls-proxy \
 && target/release/ratls-proxy --version | grep -F 'no simulator: a production build' \
 && strip target/release/ratls-proxy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ratls-proxy --create-home ratls
COPY --from=build /src/target/release/ratls-proxy /usr/local/bin/ratls-proxy
USER ratls
# The local CA is created in $XDG_DATA_HOME/ratls-proxy = /var/lib/ratls-proxy (key mode 0600).
ENV XDG_DATA_HOME=/var/lib
VOLUME ["/etc/ratls-proxy", "/var/lib/ratls-proxy"]
EXPOSE 3128 3129
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:3129/healthz || exit 1
ENTRYPOINT ["ratls-proxy"]
CMD ["run", "--config", "/etc/ratls-proxy/ratls-proxy.toml"]
