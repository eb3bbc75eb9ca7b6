#!/usr/bin/env bash
# Headless Chromium from Debian for the web panel's browser test (tests/web/test_browser.py).
# Playwright drives this system browser (executable_path=/usr/bin/chromium): no browser download,
# which the network here would refuse anyway.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
# the package lists may be absent on a fresh machine; update only when apt cannot see chromium
if ! apt-cache show chromium >/dev/null 2>&1 || ! apt-cache show chromium-driver >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
