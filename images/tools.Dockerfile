# check=skip=FromPlatformFlagConstDisallowed
# The tools image: the init container the webhook injects. FROM scratch, it holds
#   /dfget-copier                 the entrypoint (static, verifies while it copies)
#   /dragonfly-tools/dfget        static dfget, dfcache, dfstore and dfctl (Dragonfly's client
#   /dragonfly-tools/dfcache      tools, one build of the dragonfly-client crate), so they run in
#   /dragonfly-tools/dfstore      Debian, Alpine or distroless pods
#   /dragonfly-tools/dfctl
#   /dragonfly-tools/SHA256SUMS   what the copier checks every file against
# and runs as 65532. No shell, no package manager, nothing else.
#
# By default every binary is built inside Docker (the `dist` stage), with the same scripts a
# developer runs (scripts/cross-build.sh --profile release, scripts/dragonfly.sh). A release that
# cross-built them
# already feeds them in through the named context `dist`, a directory laid out one directory per
# platform as scripts/cross-build.sh writes it:
#   docker buildx bake --set '*.contexts.dist=target/dist'
# The context replaces the `dist` stage below, so nothing is built or pulled.

# Defaults as in scripts/versions.env (a test keeps them equal); bake passes them from there.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm

# The cross-build scripts target an amd64 Debian host (other hosts run this stage emulated).
# The stage leaves the dist layout at its root (/linux/amd64/...), as the named context has it.
FROM --platform=linux/amd64 ${BUILDER_IMAGE} AS dist
ARG TARGETPLATFORM
ARG DRAGONFLY_CLIENT_VERSION=1.5.10
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/dragonfly-injector \
    --mount=type=cache,target=/usr/local/cargo/registry \
    DRAGONFLY_CLIENT_VERSION="${DRAGONFLY_CLIENT_VERSION}" \
    scripts/cross-build.sh --profile release --only tools "${TARGETPLATFORM}" \
 && cp -a target/dist/linux /linux

FROM scratch AS tools
ARG TARGETPLATFORM
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/dragonflyoss/dragonfly-injector
ARG DRAGONFLY_CLIENT_VERSION=1.5.10
COPY --from=dist /${TARGETPLATFORM}/dfget-copier /dfget-copier
# Fails for a platform without the tools: such a platform is left out of the index, never shipped
# without it.
COPY --from=dist /${TARGETPLATFORM}/tools/ /dragonfly-tools/
USER 65532:65532
ENTRYPOINT ["/dfget-copier"]
LABEL org.opencontainers.image.title="dragonfly-injector-tools" \
      org.opencontainers.image.description="Static dfget, dfcache, dfstore and dfctl ${DRAGONFLY_CLIENT_VERSION} and their verified copier, the init container of Dragonfly Injector" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.d7y.dfget.version="${DRAGONFLY_CLIENT_VERSION}"
