# voucherd's image: built in one stage, run from a slim one as a non-root
# user. The binary is the only thing copied across (SQLite is bundled and
# mimalloc static), so the runtime stage needs only libc and CA roots.
#
#   podman build -t voucherd .        (or docker build)
#   podman run --rm -p 8080:8080 voucherd serve --listen 0.0.0.0:8080 --demo
#
# Secrets (database URL, payment key) are passed as environment
# (VOUCHERD_DATABASE_URL) and files (VOUCHERD_PAYMENT_KEY_FILE), never as
# arguments; see deploy/kubernetes and deploy/aws.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# Manifests first, so that the dependencies' layer is reused while only
# the sources change.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p voucherd \
    && install -D -m 0755 target/release/voucherd /out/voucherd

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 voucherd \
    && useradd --system --uid 10001 --gid voucherd --home-dir /var/lib/voucherd --create-home voucherd
COPY --from=build /out/voucherd /usr/local/bin/voucherd
USER 10001:10001
WORKDIR /var/lib/voucherd
ENV VOUCHERD_DATA_DIR=/var/lib/voucherd \
    VOUCHERD_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/voucherd"]
CMD ["serve"]
