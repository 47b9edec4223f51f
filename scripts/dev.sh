#!/usr/bin/env bash
# One entry point for a fresh Debian / Raspberry Pi OS machine:
#   scripts/dev.sh demo [kiosk demo options]   set up, then run the demo
#   scripts/dev.sh test [pytest options]       set up, type-check (mypy, strict: see pyproject.toml), then run
#                                              the whole test suite; a type error fails it like a test
#   scripts/dev.sh setup                       set up only
# Set-up is idempotent: Debian packages are installed only when missing, the virtual environment
# (.venv) is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests of scripts/ and systemd/ need shellcheck and systemd-analyze, the console's tests a PostgreSQL server
# and Chromium (Playwright drives Debian's browser; it never downloads one): in CI they fail rather than skip.
APT_PACKAGES=(libzbar0 fonts-dejavu-core mosquitto shellcheck systemd postgresql chromium)

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

setup() {
  local pkgs=("${APT_PACKAGES[@]}")
  python3 -c 'import ensurepip, venv' 2>/dev/null || pkgs+=(python3-venv)
  command -v python3 >/dev/null || pkgs+=(python3 python3-venv)
  apt_install "${pkgs[@]}"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed" >&2; exit 1; }
  local stamp=.venv/.installed
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Creating the virtual environment in .venv" >&2
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[test]' >&2
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo) setup; exec .venv/bin/kiosk demo "$@" ;;
  test) setup; .venv/bin/python -m mypy kiosk drivers; exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: scripts/dev.sh demo|test|setup [options]" >&2; exit 2 ;;
esac
