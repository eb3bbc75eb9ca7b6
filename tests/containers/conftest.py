"""The Debian s390x builder image for the slow container tests, built once and cached.

The image archive lives in REFINERY_IMAGE_CACHE (default /var/cache/refinery-images, outside
the repository), so only the first run on a machine pays the ~5 minute bootstrap.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from refinery_lib.container_engine import check_emulation
from refinery_lib.container_images import ensure_image, image_arch
from refinery_lib.errors import BuildError

IMAGE_CACHE = Path(os.environ.get("REFINERY_IMAGE_CACHE", "/var/cache/refinery-images"))
ENGINE = "podman"
ARCH = "s390x"


def _missing() -> str | None:
    if not shutil.which(ENGINE):
        return f"{ENGINE} is not installed (.ci/install.d/20-containers.sh installs it)"
    try:
        check_emulation(ARCH)
    except BuildError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def debian_s390x_image() -> str:
    """localhost/refinery-debian-s390x:bookworm, bootstrapped on first use like `refinery`."""
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"container tests cannot run in CI: {reason}")
        pytest.skip(reason)
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        print(f"[bootstrap] {line}", file=sys.stderr, flush=True)

    image = ensure_image(ENGINE, "debian", ARCH, IMAGE_CACHE, progress=progress)
    assert image_arch(ENGINE, image) == "s390x"
    return image
