# syntax=docker/dockerfile:1
#
# wayguard container image: one static-ish Rust binary on distroless (glibc, CA certificates,
# no shell), running as the distroless "nonroot" user (uid/gid 65532), which is what the Helm
# chart's securityContext expects.
#
#   docker build -t wayguard:dev .
#
# NOT BUILT HERE: the machine this repository is developed and tested on has no Docker engine, so
# this file has never been built by the project's CI. It is kept correct by review: the build
# command is the one CI runs for the binary (`cargo build --release -p wayguard --locked`); the
# workspace needs no system libraries beyond a C compiler (ring), which the rust image has, and no
# protoc (crates/translate/build.rs reads envoy-types' descriptor from the Cargo registry, which is
# under $CARGO_HOME/registry in the build stage).

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts (BuildKit) keep the registry and target dir across builds. The binary is copied out
# of the cached target dir inside the same RUN, because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release -p wayguard --locked \
    && install -m 0755 target/release/wayguard /usr/local/bin/wayguard

# Debian 12 glibc matches the bookworm build stage.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/wayguard /wayguard
USER 65532:65532
# xDS, admin (/ready, /live, /metrics), ext_authz, STS.
EXPOSE 15010 15014 8083 7777
ENTRYPOINT ["/wayguard"]
CMD ["--help"]
