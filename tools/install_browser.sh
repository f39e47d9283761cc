#!/bin/sh
# Install Debian's Chromium for tests/test_browser.py (the course in a real browser).
# Run as root on Debian or Ubuntu (CI does, from .ci/run); installs nothing when a
# Chromium is already there.  Playwright (a Python test dependency) drives this
# Chromium directly: no browser is downloaded by `playwright install`.
# Prints what it found or did.  Set CHROMIUM to use another binary.
set -eu

found() {
    for b in ${CHROMIUM:-} chromium chromium-browser google-chrome-stable google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then
            command -v "$b"; return 0
        fi
    done
    return 1
}

if bin=$(found); then
    echo "install_browser: Chromium already installed: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install_browser: no Chromium found, and not root: run 'sudo apt-get install chromium' (Debian) or set CHROMIUM" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no Chromium found and no apt-get: install Chromium by hand or set CHROMIUM" >&2
    exit 1
fi
echo "install_browser: installing Debian's chromium (and fonts for readable screenshots)"
apt-get update -q >/dev/null || true   # the package lists may be missing or stale
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium fonts-liberation fonts-dejavu-core >/dev/null
bin=$(found) || { echo "install_browser: chromium was installed but is not on PATH" >&2; exit 1; }
echo "install_browser: installed $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
