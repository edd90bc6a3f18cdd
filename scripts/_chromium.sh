# Sourced by scripts/test: the UI tests (tests/ui) drive the system's Chromium through
# Playwright (whose own browser download is not used). Installed here when missing and
# possible (Debian's package, as root); otherwise those tests skip, or fail with CI=true.
if [ -z "${TAPEFLOW_TEST_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
    && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (for tests/ui)"
        apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q && apt-get install -y -q chromium; } >/dev/null 2>&1 \
            || echo "== could not install chromium: tests/ui skip (fail with CI=true)" >&2
    else
        echo "== no chromium: install it (Debian: apt-get install chromium) for tests/ui" >&2
    fi
fi
