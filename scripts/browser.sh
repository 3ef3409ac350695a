#!/usr/bin/env bash
# A real browser for the UI test (tests/test_ui_browser.py): Debian's chromium.
#   scripts/browser.sh install   install it if absent (idempotent, quiet; needs root or sudo)
#   scripts/browser.sh path      print the browser's path, exit 1 when there is none
# Playwright's own browser download cannot work on these machines; apt can.
set -euo pipefail

find_browser() {
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

install_browser() {
  if find_browser >/dev/null; then return 0; fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "error: installing chromium needs root (or sudo)" >&2; return 1; }
    sudo="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Another apt run may hold the lock: wait for it rather than fail.
  local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
  local log
  log=$(mktemp)
  # apt and debconf talk on stderr even when all goes well: show it only when something fails.
  if ! { $sudo "${apt[@]}" update && $sudo "${apt[@]}" install -y --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "error: apt-get could not install chromium" >&2; return 1
  fi
  rm -f "$log"
  find_browser >/dev/null || { echo "error: chromium did not install" >&2; return 1; }
}

case "${1:-}" in
  install) install_browser ;;
  path) find_browser ;;
  *) echo "usage: scripts/browser.sh install|path" >&2; exit 2 ;;
esac
