#!/usr/bin/env bash
# Debian's Chromium for tests/test_browser.py (driven by Playwright with executable_path;
# never `playwright install`). Installs it when missing and this user can (root + apt-get);
# otherwise says so, and the browser test will skip with the reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver
else
    echo "chromium not found and cannot be installed here (needs root and apt-get):" \
         "tests/test_browser.py will be skipped; install Debian's chromium, or set BERTG4_CHROMIUM" >&2
fi
