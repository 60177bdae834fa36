# syntax=docker/dockerfile:1
# sealant: the `sealant-controller` image (the `sealant` CLI rides along for `kubectl exec` use).
#   docker build -t ghcr.io/sealant/sealant:0.1.0 .
# Both binaries link glibc (C dependencies: ring, aws-lc-sys), so they run on distroless cc, built on the same
# Debian release (bookworm, glibc 2.36).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# aws-lc-sys builds its C library with CMake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds; the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sealant-cli -p sealant-controller \
 && mkdir -p /out \
 && cp target/release/sealant target/release/sealant-controller /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sealant /out/sealant-controller /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sealant-controller"]
