# check=skip=FromPlatformFlagConstDisallowed
# The webhook image: the static dragonfly-injector binary and a CA bundle, FROM scratch, run as
# 65532. The binary carries Mozilla's roots itself (it resolves the tools image's digest over
# TLS); the bundle at the conventional path serves anything else that looks there.
#
# By default the binary is built inside Docker; a release that cross-built it feeds it in with
# the named context `dist` (see tools.Dockerfile), and the CA bundle with `ca-certificates`, a
# directory holding ca-certificates.crt:
#   docker buildx bake --set '*.contexts.dist=target/dist' --set 'webhook.contexts.ca-certificates=/etc/ssl/certs'

# As in scripts/versions.env (a test keeps them equal); bake passes it from there.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm

# Named contexts replace these two stages whole (so their base image is never pulled); each
# leaves at its root what the context holds.
FROM --platform=linux/amd64 ${BUILDER_IMAGE} AS dist
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/dragonfly-injector \
    --mount=type=cache,target=/usr/local/cargo/registry \
    scripts/cross-build.sh --profile release --only webhook "${TARGETPLATFORM}" \
 && cp -a target/dist/linux /linux

FROM --platform=linux/amd64 ${BUILDER_IMAGE} AS ca-certificates
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && cp /etc/ssl/certs/ca-certificates.crt /ca-certificates.crt

FROM scratch AS webhook
ARG TARGETPLATFORM
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/dragonflyoss/dragonfly-injector
COPY --from=ca-certificates /ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=dist /${TARGETPLATFORM}/dragonfly-injector /dragonfly-injector
USER 65532:65532
ENTRYPOINT ["/dragonfly-injector"]
CMD ["serve"]
LABEL org.opencontainers.image.title="dragonfly-injector" \
      org.opencontainers.image.description="Mutating admission webhook that injects Dragonfly's proxy, socket and dfget into pods" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
