# Builds and publishes both images as multi-architecture indexes:
#
#   docker buildx bake --push                       # builds every binary inside Docker
#   DIST=target/dist CA_CERTIFICATES=/etc/ssl/certs \
#     docker buildx bake --push                     # takes binaries from scripts/cross-build.sh
#
# REGISTRY and TAG name the images; the webhook's default tools image is
# docker.io/dragonflyoss/dragonfly-injector-tools:v<version>, which the defaults here publish.
# Builds are reproducible: the same inputs and SOURCE_DATE_EPOCH give the same index digest
# (file and config timestamps are rewritten to it), which is why provenance attestations, which
# record when the build ran, are off unless PROVENANCE=true.

variable "REGISTRY" {
  default = "docker.io/dragonflyoss"
}

variable "TAG" {
  default = "v0.1.0"
}

# The Dragonfly client version the tools image is labelled with and the image the in-Docker
# build runs in. Empty: the Dockerfiles' ARG defaults hold, which the tests check against
# scripts/versions.env, where every pinned version is written (scripts pass them from there).
variable "DRAGONFLY_CLIENT_VERSION" {
  default = ""
}

variable "RUST_BUILDER_IMAGE" {
  default = ""
}

# The webhook is built for every platform. The tools image goes only to the platforms that have
# a static dfget (see images/README.md): a platform without one is left out of the index rather
# than shipped without dfget. The copier itself is built and tested for all five.
variable "WEBHOOK_PLATFORMS" {
  default = "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x"
}

variable "TOOLS_PLATFORMS" {
  default = "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x"
}

# A directory laid out as scripts/cross-build.sh writes it; empty: build inside Docker.
variable "DIST" {
  default = ""
}

# A directory holding ca-certificates.crt; empty: take Debian's inside Docker.
variable "CA_CERTIFICATES" {
  default = ""
}

variable "SOURCE_DATE_EPOCH" {
  default = "0"
}

variable "REVISION" {
  default = "unknown"
}

variable "SOURCE" {
  default = "https://github.com/dragonflyoss/dragonfly-injector"
}

variable "PROVENANCE" {
  default = false
}

group "default" {
  targets = ["tools", "webhook"]
}

target "_common" {
  context = "."
  args = {
    # Always an index, even for a single platform: the webhook pins index digests, and index
    # annotations need one.
    BUILDKIT_MULTI_PLATFORM = "1"
    VERSION           = TAG
    REVISION          = REVISION
    SOURCE            = SOURCE
    DRAGONFLY_CLIENT_VERSION = DRAGONFLY_CLIENT_VERSION != "" ? DRAGONFLY_CLIENT_VERSION : null
    BUILDER_IMAGE     = RUST_BUILDER_IMAGE != "" ? RUST_BUILDER_IMAGE : null
    SOURCE_DATE_EPOCH = SOURCE_DATE_EPOCH
  }
  annotations = [
    "index,manifest:org.opencontainers.image.source=${SOURCE}",
    "index,manifest:org.opencontainers.image.version=${TAG}",
    "index,manifest:org.opencontainers.image.revision=${REVISION}",
  ]
  attest = PROVENANCE ? ["type=provenance,mode=max"] : ["type=provenance,disabled=true", "type=sbom,disabled=true"]
  output = ["type=image,oci-mediatypes=true,rewrite-timestamp=true"]
}

target "tools" {
  inherits   = ["_common"]
  platforms  = split(",", TOOLS_PLATFORMS)
  dockerfile = "images/tools.Dockerfile"
  target     = "tools"
  tags       = ["${REGISTRY}/dragonfly-injector-tools:${TAG}"]
  contexts   = DIST != "" ? { dist = DIST } : {}
}

target "webhook" {
  inherits   = ["_common"]
  platforms  = split(",", WEBHOOK_PLATFORMS)
  dockerfile = "images/webhook.Dockerfile"
  target     = "webhook"
  tags       = ["${REGISTRY}/dragonfly-injector:${TAG}"]
  contexts = merge(
    DIST != "" ? { dist = DIST } : {},
    CA_CERTIFICATES != "" ? { ca-certificates = CA_CERTIFICATES } : {},
  )
}
