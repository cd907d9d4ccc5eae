# Sourced by every script under scripts/ (and .ci/run): the one preamble. It reads the pinned
# versions, puts cargo and Go on PATH, and defines the cache, logging, the apt policy, "build a
# Go tool into the cache" and the platform helpers. Nothing here runs anything by itself.
# shellcheck shell=bash

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# versions.env is KEY=value with spaces allowed in values; read it line by line rather than
# sourcing it, so the same file stays readable by bake and the Rust tests. An environment
# variable of the same name wins (for a one-off build of another version).
while IFS='=' read -r key value; do
  case "$key" in '' | \#*) continue ;; esac
  if [ -z "${!key:-}" ]; then
    printf -v "$key" '%s' "$value"
    export "${key?}"
  fi
done <"$repo_root/scripts/versions.env"

[ -x "$HOME/.cargo/bin/cargo" ] && case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH" ;; esac
[ -x /usr/local/go/bin/go ] && case ":$PATH:" in *":/usr/local/go/bin:"*) ;; *) PATH="$PATH:/usr/local/go/bin" ;; esac
export PATH
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

# Everything built once lives here, outside any clone.
cache_dir() { echo "${DRAGONFLY_INJECTOR_CACHE:-$HOME/.cache/dragonfly-injector}"; }

# Logs go to stderr, prefixed with the script's name; stdout is kept for what a script prints
# for its caller (a path, a directory).
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "$*"; exit 1; }

# Installs Debian packages that are not installed yet, quietly. One `apt-get update` per machine
# (a marker in apt's lists), redone when a foreign architecture was added since.
apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || die "need root to install ${missing[*]}"
  log "installing ${missing[*]}"
  if [ ! -f /var/lib/apt/lists/.dragonfly-injector-updated ]; then
    # A failing index for one mirror or architecture must not stop the install: apt says which.
    apt-get update -qq || log "apt-get update reported errors; trying the install anyway"
    touch /var/lib/apt/lists/.dragonfly-injector-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- what the builds need -------------------------------------------------------------------
# Every Debian package the builds and tests need, with what proves it is there, by tier: one
# table, so what setup installs and what its preflight checks cannot drift apart. Each is
# installed by name even where the base image already holds it (a new machine may not), and with
# --no-install-recommends, so a file that a package only Recommends (protoc's well-known types in
# libprotobuf-dev) must be a line of its own. A check is a command looked up on PATH, or an
# absolute path (a glob: one match is enough).
#   requirements TIER...   "PACKAGE CHECK" lines; tiers: test (setup.sh and the suite), release
#                          (scripts/release.sh adds it), clean-room (scripts/clean-room.sh)
requirements() {
  local tier platform prefix
  for tier in "$@"; do
    case "$tier" in
      test)
        # The gate's linter; TLS and downloads from the registries. dragonfly-client: protoc and
        # its well-known types (prost), clang and libclang (librocksdb-sys' bindgen), a C++
        # compiler, cmake and make (RocksDB, zstd). The real node: the registry, containerd,
        # runc (also buildkitd's worker), the CNI plugins, a static busybox and static glibc for
        # its images, iproute2 for its bridge. The copier: Debian's rustc-web, cargo-web and
        # std's sources (-Zbuild-std), qemu-user to run every platform's build, and below, each
        # foreign platform's gcc and C library.
        cat <<'TABLE'
shellcheck shellcheck
ca-certificates /etc/ssl/certs/ca-certificates.crt
curl curl
protobuf-compiler protoc
libprotobuf-dev /usr/include/google/protobuf/duration.proto
clang clang
libclang-dev /usr/lib/llvm-*/lib/libclang.so
g++ g++
cmake cmake
make make
docker-registry docker-registry
containerd containerd
runc runc
containernetworking-plugins /usr/lib/cni/bridge
busybox-static /bin/busybox
libc6-dev /usr/lib/x86_64-linux-gnu/libc.a
iproute2 ip
qemu-user-static qemu-aarch64-static
rustc-web /usr/bin/rustc
cargo-web /usr/bin/cargo
rust-web-src /usr/lib/rustlib/src/rust/library/std/src/lib.rs
TABLE
        for platform in $ALL_PLATFORMS; do
          prefix=$(platform_gnu_prefix "$platform")
          [ -z "$prefix" ] || printf '%s %s\n' "gcc-${prefix%-}" "${prefix}gcc" \
            "libc6-dev-$(platform_debian_arch "$platform")-cross" "/usr/${prefix%-}/lib/libc.a"
        done
        ;;
      release)
        # dragonfly-client for every platform: a cross g++ each, and rustc-web's arm64 std.
        for platform in $ALL_PLATFORMS; do
          prefix=$(platform_gnu_prefix "$platform")
          [ -z "$prefix" ] || echo "g++-${prefix%-} ${prefix}g++"
        done
        echo "libstd-rust-web-dev:arm64 /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib"
        ;;
      clean-room) echo "debootstrap debootstrap" ;;
      *) die "unknown tier $tier (test, release, clean-room)" ;;
    esac
  done
}

# Installs the tiers' packages. A foreign-architecture package (NAME:ARCH) has its architecture
# added to dpkg first.
install_requirements() {
  local packages package
  mapfile -t packages < <(requirements "$@" | cut -d' ' -f1 | sort -u)
  for package in "${packages[@]}"; do
    case "$package" in
      *:*)
        dpkg --print-foreign-architectures | grep -qx "${package#*:}" && continue
        dpkg --add-architecture "${package#*:}"
        rm -f /var/lib/apt/lists/.dragonfly-injector-updated
        ;;
    esac
  done
  apt_install "${packages[@]}"
}

# The oldest Rust the workspace builds with: the highest rust-version of its members.
rust_min_version() {
  sed -n 's/^rust-version = "\(.*\)"/\1/p' "$repo_root"/*/Cargo.toml | sort -V | tail -n1
}

# A command on PATH that runs: bash's `command -v` also names a file that is not executable.
is_command() {
  local path
  path=$(command -v "$1" 2>/dev/null) && [ -f "$path" ] && [ -x "$path" ]
}

# The toolchains this kind of machine brings and no script installs: rustup's Rust with the
# gates' clippy and rustfmt, and Go (Debian 12's own are too old for either: cargo 0.66, go
# 1.19). Logs one line per missing piece; setup.sh checks these before its apt installs.
preflight_toolchains() {
  local rust version missing=()
  rust=$(rust_min_version)
  version=$(cargo --version 2>/dev/null | cut -d' ' -f2)
  if [ -z "$version" ] || ! dpkg --compare-versions "${version%%-*}" ge "$rust"; then
    missing+=("cargo >= $rust, found ${version:-none} (rustup's stable toolchain in ~/.cargo/bin or on PATH)")
  fi
  cargo clippy --version >/dev/null 2>&1 || missing+=("cargo clippy (rustup component add clippy)")
  cargo fmt --version >/dev/null 2>&1 || missing+=("cargo fmt (rustup component add rustfmt)")
  # GOTOOLCHAIN=local: the go on this machine, not one it would fetch for a newer go.mod.
  version=$(cd / && GOTOOLCHAIN=local go env GOVERSION 2>/dev/null)
  version=${version#go}
  if [ -z "$version" ] || ! dpkg --compare-versions "$version" ge "$GO_MIN_VERSION"; then
    missing+=("go >= $GO_MIN_VERSION, found ${version:-none} (the Go distribution in /usr/local/go or on PATH)")
  fi
  [ ${#missing[@]} -gt 0 ] || return 0
  for version in "${missing[@]}"; do log "missing: $version"; done
  return 1
}

# preflight TIER...: checks, in seconds, that everything the tiers' builds need is in place (the
# table's packages, Debian's rustc-web at the workspace's floor, the toolchains); logs one line
# per missing piece naming what provides it, and fails if anything is missing.
preflight() {
  local package check missing=() version rust status=0
  while read -r package check; do
    case "$check" in
      /*) compgen -G "$check" >/dev/null || missing+=("$check (Debian package $package)") ;;
      *) is_command "$check" || missing+=("$check (Debian package $package)") ;;
    esac
  done < <(requirements "$@")
  # Debian's rustc-web builds the copier and the release webhooks: the workspace's floor too.
  version=$(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2)
  rust=$(rust_min_version)
  if [ -n "$version" ] && ! dpkg --compare-versions "${version%%-*}" ge "$rust"; then
    missing+=("/usr/bin/rustc >= $rust, found $version (Debian package rustc-web, bookworm-security)")
  fi
  for check in "${missing[@]}"; do log "missing: $check"; done
  [ ${#missing[@]} -eq 0 ] || status=1
  preflight_toolchains || status=1
  return "$status"
}

# go_build OUT LDFLAGS PACKAGE: one static Go command, reproducible paths (-trimpath), into OUT.
# Run inside the module that requires PACKAGE. Tools come from the Go module proxy through a
# throw-away module of our own, never `go install module@version`: that reads @v/list, which the
# proxy refuses for some modules here, and refuses modules whose go.mod has replace or exclude.
# GOGC=800 lets the compiler and linker (Go programs) collect their heaps an eighth as often:
# etcd built cold in 64 CPU-seconds instead of 87-96, its largest process at 0.46 GB instead of
# 0.38 (BENCHMARKS.md, "Set-up on a new machine"). GOMEMLIMIT bounds what that can cost: a
# process collects anyway as its heap nears 3 GiB.
go_build() {
  GOGC=800 GOMEMLIMIT=3GiB CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$2" -o "$1" "$3" >&2
}

# Prints the go.mod path, or the directory, of a module version in the module cache.
go_mod_file() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'; }
go_mod_dir() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }

# Publishes a directory built at DIR.tmp as DIR, atomically enough for a cache.
publish_dir() { rm -rf "$1" && mv "$1.tmp" "$1"; }

# --- platforms -------------------------------------------------------------------------------
# The dist keeps a platform's binaries under its Docker platform path (target/dist/linux/arm/v7/),
# which the Dockerfiles find from TARGETPLATFORM; the caches use platform_dir's flat names.

# linux/arm/v7 -> linux_arm_v7
platform_dir() { printf '%s' "$1" | tr / _; }

platform_triple() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-gnu ;;
    linux/arm64) echo aarch64-unknown-linux-gnu ;;
    linux/arm/v7) echo armv7-unknown-linux-gnueabihf ;;
    linux/ppc64le) echo powerpc64le-unknown-linux-gnu ;;
    linux/s390x) echo s390x-unknown-linux-gnu ;;
    *) echo "unknown platform $1 (known: $ALL_PLATFORMS)" >&2; return 1 ;;
  esac
}

# GNU toolchain prefix ("" for the native compiler).
platform_gnu_prefix() {
  case "$1" in
    linux/amd64) echo "" ;;
    linux/arm64) echo aarch64-linux-gnu- ;;
    linux/arm/v7) echo arm-linux-gnueabihf- ;;
    linux/ppc64le) echo powerpc64le-linux-gnu- ;;
    linux/s390x) echo s390x-linux-gnu- ;;
  esac
}

# The copier's target: static musl (scripts/cross-toolchain.sh prepares its C library). Rust names
# each platform's musl target as its GNU one with "gnu" swapped for "musl".
platform_musl_triple() {
  local triple
  triple=$(platform_triple "$1") || return 1
  echo "${triple/-linux-gnu/-linux-musl}"
}

# Debian architecture name, for the foreign standard-library packages.
platform_debian_arch() {
  case "$1" in
    linux/amd64) echo amd64 ;;
    linux/arm64) echo arm64 ;;
    linux/arm/v7) echo armhf ;;
    linux/ppc64le) echo ppc64el ;;
    linux/s390x) echo s390x ;;
  esac
}

# Exports the variables cargo and the cc crate read to cross-compile for the platform: the
# linker, C/C++ compilers and archiver, and static linking plus any further RUSTFLAGS given, for
# the target only (RUSTFLAGS would also reach build scripts and proc macros, which run here).
#   cross_env PLATFORM [RUSTFLAG...]
cross_env() {
  local platform=$1 triple prefix var
  shift
  triple=$(platform_triple "$platform")
  prefix=$(platform_gnu_prefix "$platform")
  var=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${var}_LINKER=${prefix}gcc"
  export "CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static${*:+ $*}"
  export "CC_${triple//-/_}=${prefix}gcc"
  export "CXX_${triple//-/_}=${prefix}g++"
  export "AR_${triple//-/_}=${prefix}ar"
  if [ -n "$prefix" ]; then
    export "BINDGEN_EXTRA_CLANG_ARGS_${triple//-/_}=--sysroot=/usr/${prefix%-}"
  fi
}

# Where scripts/cross-toolchain.sh puts a platform's musl link directory: crt1.o, crti.o, crtn.o,
# libc.a and libunwind.a. The name carries the musl version and a digest of the shim, so a change
# to either is a new directory, new RUSTFLAGS, and a relink.
musl_dir() {
  local shim
  shim=$(sha256sum "$repo_root/scripts/dl_find_object.c" | cut -c1-12)
  echo "$(cache_dir)/musl-$DEBIAN_MUSL_VERSION-$shim/$(platform_dir "$1")"
}

# Exports what cargo needs to link the copier for the platform against musl, statically: the GNU
# cross gcc as the linker driver, told to take the start files and libraries from musl_dir
# (-B, -L) instead of its own glibc ones, and not to look for Rust's own self-contained musl
# objects, which a -Zbuild-std build does not have. Any further RUSTFLAGS are added.
#   musl_env PLATFORM [RUSTFLAG...]
musl_env() {
  local platform=$1 triple var dir
  shift
  triple=$(platform_musl_triple "$platform")
  var=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
  dir=$(musl_dir "$platform")
  export "CARGO_TARGET_${var}_LINKER=$(platform_gnu_prefix "$platform")gcc"
  export "CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no -C link-arg=-B$dir -L native=$dir${*:+ $*}"
}

# Runs cargo with Debian's rustc-web (1.96) for a foreign platform. Its standard library is
# packaged for amd64 and arm64; for the other platforms cargo builds std from Debian's
# rust-web-src (-Zbuild-std), which needs RUSTC_BOOTSTRAP=1 to accept that unstable flag on a
# stable compiler. Debian's own cargo is used there so that cargo, rustc and the std sources are
# one release. Call inside a subshell after cross_env.
needs_build_std() { [ ! -d "/usr/lib/rustlib/$(platform_triple "$1")/lib" ]; }

rust_web_cargo() {
  local platform=$1; shift
  if ! needs_build_std "$platform"; then
    RUSTC=/usr/bin/rustc cargo "$@"
  else
    local subcommand=$1; shift
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc /usr/bin/cargo "$subcommand" -Zbuild-std=std,panic_unwind "$@"
  fi
}

# fetch_crate NAME VERSION SHA256 DIR: downloads a crate from the registry's own download
# endpoint, as cargo does, checks its SHA-256 and unpacks it into DIR/NAME-VERSION.
fetch_crate() {
  local name=$1 version=$2 sum=$3 dir=$4 dl file
  [ -n "$sum" ] || die "no checksum for $name $version"
  dl=$(curl -fsSL https://index.crates.io/config.json | sed -n 's/.*"dl": *"\([^"]*\)".*/\1/p')
  file="$dir/$name-$version.crate"
  curl -fsSL -o "$file" "$dl/$name/$version/download"
  echo "$sum  $file" | sha256sum -c --quiet - || die "$name $version: checksum mismatch"
  tar -xzf "$file" -C "$dir"
  rm -f "$file"
}

# The SHA-256 the registry index gives for a crate version.
index_checksum() {
  local name=$1 version=$2 path
  case ${#name} in
    1) path=1/$name ;; 2) path=2/$name ;; 3) path=3/${name:0:1}/$name ;;
    *) path=${name:0:2}/${name:2:2}/$name ;;
  esac
  curl -fsSL "https://index.crates.io/$path" | grep -E "\"vers\": ?\"$version\"" |
    sed -nE 's/.*"cksum": ?"([0-9a-f]{64})".*/\1/p'
}

# The SHA-256 a Cargo.lock gives for a crate version.
lock_checksum() {
  awk -v n="$2" -v v="$3" '$0 == "name = \"" n "\"" {m = 1; next}
    m && $0 == "version = \"" v "\"" {f = 1; next}
    f && /^checksum = / {gsub(/"/, "", $3); print $3; exit}
    /^$/ {m = 0; f = 0}' "$1"
}

# The directory where scripts/dragonfly.sh caches the Dragonfly client's binaries for a
# platform and profile ("test": fast to build; "release": what the tools image ships). The test
# profile's name carries its flags, so a change of them builds anew.
dragonfly_client_dir() {
  local flavour=$2
  [ "$flavour" = test ] && flavour=test-o0
  echo "$(cache_dir)/dragonfly-client-$DRAGONFLY_CLIENT_VERSION/$flavour/$(platform_dir "$1")"
}

# --- parallel jobs ---------------------------------------------------------------------------
# jobs_start; job NAME COMMAND...; ...; jobs_wait
# Runs independent builds side by side so neither core idles while the other waits on a
# download. Each job's output goes to a log; jobs_wait prints each job's time as it ends and, on
# the first failure, stops the others and prints the failed job's log tail.
jobs_start() {
  # Job control gives each job its own process group, so a failure can stop a job's whole tree
  # (cargo, rustc, go) and not just its subshell.
  set -m
  # A caller that is itself a job (test.sh's setup.sh) gets its own directory and its caller's
  # back at jobs_end, where its own steps after jobs_wait are recorded.
  JOBS_OUTER=${JOBS_DIR:-}
  JOBS_DIR=$(mktemp -d)
  export JOBS_DIR
  JOB_PIDS=()
  JOB_NAMES=()
  # Jobs are process groups of their own, so the signal that ends the caller (test.sh stopping
  # setup.sh when clippy fails) or the caller's failing exit would not reach them: stop them.
  trap 'jobs_stop; exit 143' TERM INT
  trap 'status=$?; [ "$status" -eq 0 ] || jobs_stop; exit "$status"' EXIT
}

job() {
  local name=$1; shift
  (
    start=$SECONDS
    JOB_NAME=$name "$@" >"$JOBS_DIR/$name.log" 2>&1
    status=$?
    echo "$((SECONDS - start))" >"$JOBS_DIR/$name.seconds"
    exit "$status"
  ) &
  JOB_PIDS+=("$!")
  JOB_NAMES+=("$name")
}

# step NAME COMMAND...: runs a command and logs its time; in a job, the job's closing line lists
# its steps' times too, so a cold run says where its minutes went.
step() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  log "$name: $((SECONDS - start)) s"
  [ -z "${JOB_NAME:-}" ] || echo "$name $((SECONDS - start)) s" >>"$JOBS_DIR/$JOB_NAME.steps"
}

jobs_wait() {
  local i pid status steps
  while [ ${#JOB_PIDS[@]} -gt 0 ]; do
    status=0
    wait -n -p pid "${JOB_PIDS[@]}" || status=$?
    for i in "${!JOB_PIDS[@]}"; do
      [ "${JOB_PIDS[$i]}" = "$pid" ] || continue
      # JOB_PIDS holds the running jobs only (indices stay JOB_NAMES'), so jobs_stop never
      # signals the process group of one that has ended.
      unset 'JOB_PIDS[i]'
      if [ "$status" -ne 0 ]; then
        log "${JOB_NAMES[$i]} failed (exit $status); its log ends:"
        tail -n 40 "$JOBS_DIR/${JOB_NAMES[$i]}.log" >&2
        jobs_stop
        return "$status"
      fi
      # (Not a pipeline on a file that may be missing: under pipefail and set -e, a job without
      # steps, such as test.sh's clippy, would end the caller here.)
      steps=""
      if [ -f "$JOBS_DIR/${JOB_NAMES[$i]}.steps" ]; then
        steps=$(paste -sd, "$JOBS_DIR/${JOB_NAMES[$i]}.steps" | sed 's/,/, /g')
      fi
      # A job that ran jobs of its own (test.sh's setup) passes their closing lines on, so a
      # cold run's log says where each chain's minutes went.
      grep -h ' done in ' "$JOBS_DIR/${JOB_NAMES[$i]}.log" >&2 || true
      log "${JOB_NAMES[$i]} done in $(cat "$JOBS_DIR/${JOB_NAMES[$i]}.seconds") s${steps:+ ($steps)}"
    done
  done
  jobs_end
}

# jobs_stop: ends every job still running (each is a process group of its own: cargo, rustc and
# go with it), waits for them, and forgets them. For a caller that fails between job() and
# jobs_wait, such as setup.sh when apt fails with the Go chain already running.
jobs_stop() {
  local pid
  for pid in "${JOB_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  jobs_end
}

jobs_end() {
  JOB_PIDS=()
  rm -rf "$JOBS_DIR"
  JOBS_DIR=$JOBS_OUTER
  trap - TERM INT EXIT
  set +m
}

# wait_for_file FILE SECONDS: waits until FILE exists; fails after SECONDS.
wait_for_file() {
  local deadline=$((SECONDS + $2))
  until [ -e "$1" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { log "gave up waiting for $1 after $2 s"; return 1; }
    sleep 1
  done
}
