# One image with both services: /usr/local/bin/authd (the default) and /usr/local/bin/introspect.
#
#   docker build -t credd:0.1.0 .
#   docker run --rm credd:0.1.0 --help                                     # authd
#   docker run --rm --entrypoint /usr/local/bin/introspect credd:0.1.0 --help
#
# The Helm chart (deploy/helm/credd) sets the command of each Deployment explicitly.

# Build: no protoc needed (the protos are compiled by protox in crates/proto/build.rs).
# Base images are pinned by digest (a tag can move under a rebuild); refresh both together with
#   docker buildx imagetools inspect rust:1.95-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
COPY . .
# The dist profile (Cargo.toml): release without DWARF, symbols kept for backtraces.
RUN cargo build --profile dist --locked -p authd -p introspect \
 && install -D -m 0755 -t /out target/dist/authd target/dist/introspect

# Run: glibc and CA certificates, no shell, no package manager; same Debian 12 as the builder.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
LABEL org.opencontainers.image.title="credd" \
      org.opencontainers.image.description="authd and introspect: API keys and session tokens over gRPC, backed by Redis" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/authd /out/introspect /usr/local/bin/
# Numeric, so Kubernetes can verify runAsNonRoot without a runAsUser (distroless "nonroot").
USER 65532:65532
# authd gRPC (and grpc.health.v1), introspect gRPC (and grpc.health.v1).
EXPOSE 50051 50052
ENTRYPOINT ["/usr/local/bin/authd"]
CMD ["serve"]
