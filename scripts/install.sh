#!/usr/bin/env bash
# Install (or upgrade, or remove) the kiosk on Raspberry Pi OS Bookworm 64-bit. Run as root from a checkout:
#   sudo scripts/install.sh                 install or upgrade, enable the service
#   sudo scripts/install.sh --uninstall     remove program and unit; keep config, journal and user
#   sudo scripts/install.sh --uninstall --purge   also remove config, state (the journal!) and the user
# Options:
#   --prefix DIR   install into a scratch root; never runs apt-get, useradd or systemctl (prints them)
#   --dry-run      print what would be done, change nothing
#   --no-apt       do not install Debian packages
#   --no-venv      do not create the virtual environment / pip install
#   --no-systemd   do not install, enable or restart the systemd unit
# Idempotent: every step reports "changed", "unchanged", "would ..." or "skipped"; a second run changes nothing.
# The operator's /etc/kiosk/kiosk.toml is never overwritten.
set -euo pipefail

# python3-evdev and python3-spidev: Debian's builds, so pip finds them installed instead of compiling them.
APT_PACKAGES=(python3-venv python3-picamera2 python3-lgpio python3-evdev python3-spidev libzbar0 fonts-dejavu-core
              i2c-tools)
# Debian's picamera2 imports simplejpeg, built against Bookworm's numpy 1.x: a pip numpy 2 in the venv (current
# opencv-python-headless wheels ask for one) breaks it with "numpy.dtype size changed". pip then picks an opencv
# release that accepts numpy 1.x.
PIP_CONSTRAINTS="numpy<2"
SERVICE_USER=kiosk
SERVICE_GROUPS=(video gpio i2c spi dialout input)
PROJECT_ITEMS=(pyproject.toml README.md kiosk drivers config systemd scripts)

PREFIX="" FRESH_CONFIG=0 DRY_RUN=0 USE_APT=1 USE_VENV=1 USE_SYSTEMD=1 UNINSTALL=0 PURGE=0
usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { echo "--prefix needs a directory" >&2; exit 64; }; PREFIX="$2"; shift ;;
    --prefix=*) PREFIX="${1#*=}" ;;
    --dry-run) DRY_RUN=1 ;;
    --no-apt) USE_APT=0 ;;
    --no-venv) USE_VENV=0 ;;
    --no-systemd) USE_SYSTEMD=0 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
  shift
done
[ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || { echo "--purge only goes with --uninstall" >&2; exit 64; }

SRC="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "$PREFIX" ]; then
  [ "$DRY_RUN" -eq 1 ] || mkdir -p "$PREFIX" || { echo "cannot create $PREFIX" >&2; exit 73; }
  ROOT="$(cd "$PREFIX" 2>/dev/null && pwd || echo "${PREFIX%/}")"
  SYSTEM=0  # scratch root: the host's packages, users and services are not ours to change
else
  ROOT=""
  SYSTEM=1
  [ "$(id -u)" -eq 0 ] || [ "$DRY_RUN" -eq 1 ] || { echo "run as root (sudo), or use --prefix / --dry-run" >&2; exit 77; }
fi
APP="$ROOT/opt/kiosk"
ETC="$ROOT/etc/kiosk"
STATE="$ROOT/var/lib/kiosk"
UNIT_DIR="$ROOT/etc/systemd/system"
CHANGED=0

report() { printf '%-10s %s\n' "$1:" "$2"; }

# A command on the host system: run it, or only print it (dry run, scratch root).
system() {
  if [ "$DRY_RUN" -eq 1 ] || [ "$SYSTEM" -eq 0 ]; then
    printf '           would run: %s\n' "$*"
  else
    "$@"
  fi
}

# Copy src to dest with mode unless dest already has the same bytes and mode. Prints "changed"/"would install".
put_file() {
  local src="$1" dest="$2" mode="$3"
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "$mode" ]; then
    return 1
  fi
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '           would install %s\n' "$dest"
  else
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$src" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
  fi
  return 0
}

make_dir() {  # make_dir DIR MODE -> 0 when something changed
  local dir="$1" mode="$2"
  [ -d "$dir" ] && [ "$(stat -c %a "$dir")" = "$mode" ] && return 1
  [ "$DRY_RUN" -eq 1 ] || { mkdir -p "$dir"; chmod "$mode" "$dir"; }
  return 0
}

changed() {  # changed LABEL DETAIL: report a change (made, or only announced in a dry run)
  if [ "$DRY_RUN" -eq 1 ]; then report "$1" "would change ($2)"; else CHANGED=1; report "$1" "changed ($2)"; fi
}

project_files() {  # project_files DIR: relative paths of the project's files under DIR, sorted
  (cd "$1" && for item in "${PROJECT_ITEMS[@]}"; do
     [ -e "$item" ] && find "$item" -type f ! -path '*/__pycache__/*' ! -name '*.pyc'
   done | LC_ALL=C sort)
}

# ------------------------------------------------------------------ install steps
step_apt() {
  if [ "$USE_APT" -eq 0 ]; then report apt "skipped (--no-apt)"; return; fi
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then report apt unchanged; return; fi
  changed apt "${missing[*]}"
  system apt-get update -qq
  DEBIAN_FRONTEND=noninteractive system apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

step_project() {
  local n=0 rel mode dest
  while IFS= read -r rel; do
    mode=644
    [ -x "$SRC/$rel" ] && mode=755
    if put_file "$SRC/$rel" "$APP/$rel" "$mode"; then n=$((n + 1)); fi
  done < <(project_files "$SRC")
  # files left over from an older version (a stale command module would still be discovered)
  local wanted
  wanted="$(project_files "$SRC")"
  if [ -d "$APP" ]; then
    while IFS= read -r dest; do
      rel="${dest#"$APP"/}"
      if ! grep -qxF "$rel" <<<"$wanted"; then
        n=$((n + 1))
        if [ "$DRY_RUN" -eq 1 ]; then printf '           would remove %s\n' "$dest"; else rm -f "$dest"; fi
      fi
    done < <(for item in "${PROJECT_ITEMS[@]}"; do
               [ -e "$APP/$item" ] && find "$APP/$item" -type f ! -path '*/__pycache__/*' ! -name '*.pyc'
             done)
  fi
  if [ "$n" -eq 0 ]; then report project "unchanged ($APP)"; else changed project "$n files in $APP"; fi
}

step_venv() {
  if [ "$USE_VENV" -eq 0 ]; then report venv "skipped (--no-venv)"; return; fi
  local stamp="$APP/.venv/.installed" digest
  digest="$( (cd "$SRC" && project_files "$SRC" | xargs -r sha256sum) | sha256sum | cut -d' ' -f1)"
  if [ -x "$APP/.venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    report venv unchanged; return
  fi
  changed venv "python3 -m venv --system-site-packages; pip install .[pi]"
  [ "$DRY_RUN" -eq 0 ] || return 0
  [ -x "$APP/.venv/bin/python" ] || python3 -m venv --system-site-packages "$APP/.venv"
  local constraints
  constraints="$(mktemp)"
  printf '%s\n' "$PIP_CONSTRAINTS" > "$constraints"
  "$APP/.venv/bin/pip" install --quiet --disable-pip-version-check --constraint "$constraints" "${APP}[pi]"
  rm -f "$constraints"
  echo "$digest" > "$stamp"
}

existing_groups() {
  local g out=()
  for g in "${SERVICE_GROUPS[@]}"; do getent group "$g" >/dev/null && out+=("$g"); done
  (IFS=,; echo "${out[*]}")
}

step_user() {
  if [ "$SYSTEM" -eq 0 ]; then
    report user "skipped (--prefix)"
    system useradd --system --user-group --home-dir /var/lib/kiosk --shell /usr/sbin/nologin "$SERVICE_USER"
    system usermod --append --groups "$(IFS=,; echo "${SERVICE_GROUPS[*]}")" "$SERVICE_USER"
    return
  fi
  local groups missing=() g
  groups="$(existing_groups)"
  if id "$SERVICE_USER" >/dev/null 2>&1; then
    for g in ${groups//,/ }; do id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qxF "$g" || missing+=("$g"); done
    if [ ${#missing[@]} -eq 0 ]; then report user unchanged; return; fi
    changed user "groups ${missing[*]}"
  else
    changed user "system user $SERVICE_USER, groups $groups"
    system useradd --system --user-group --home-dir /var/lib/kiosk --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  [ -z "$groups" ] || system usermod --append --groups "$groups" "$SERVICE_USER"
}

# Relative state paths of the example resolve against /etc/kiosk, which the unit makes read-only
# (ProtectSystem=strict): point them at the state directory.
example_config() {
  sed -E 's#^path = "([^"/][^"]*)"$#path = "/var/lib/kiosk/\1"#' "$SRC/config/kiosk.example.toml"
}

step_config() {
  local conf="$ETC/kiosk.toml" tmp
  if [ -f "$conf" ]; then
    if make_dir "$ETC" 755; then changed config "mode of $ETC"; else report config "unchanged ($conf kept)"; fi
    return
  fi
  changed config "$conf from config/kiosk.example.toml"
  FRESH_CONFIG=1
  [ "$DRY_RUN" -eq 0 ] || return 0
  make_dir "$ETC" 755 || true
  tmp="$(mktemp)"
  example_config > "$tmp"
  install -m 640 "$tmp" "$conf"
  rm -f "$tmp"
  [ "$SYSTEM" -eq 0 ] || chgrp "$SERVICE_USER" "$conf"
}

step_state() {
  if make_dir "$STATE" 750; then changed state "$STATE"; else report state unchanged; fi
  if [ "$SYSTEM" -eq 1 ] && [ "$DRY_RUN" -eq 0 ] && [ "$(stat -c %U "$STATE")" != "$SERVICE_USER" ]; then
    chown "$SERVICE_USER:$SERVICE_USER" "$STATE"
  fi
}

step_unit() {
  if [ "$USE_SYSTEMD" -eq 0 ]; then report unit "skipped (--no-systemd)"; return; fi
  if put_file "$SRC/systemd/kiosk.service" "$UNIT_DIR/kiosk.service" 644; then
    changed unit "$UNIT_DIR/kiosk.service"
    system systemctl daemon-reload
  else
    report unit unchanged
  fi
  if [ "$SYSTEM" -eq 1 ] && systemctl is-enabled --quiet kiosk.service 2>/dev/null; then
    report enable unchanged
  else
    if [ "$SYSTEM" -eq 1 ]; then changed enable kiosk.service; else report enable "skipped (--prefix)"; fi
    system systemctl enable kiosk.service
  fi
  if [ "$CHANGED" -eq 1 ]; then system systemctl try-restart kiosk.service; fi
}

# ------------------------------------------------------------------ uninstall steps
remove_path() {  # remove_path LABEL PATH
  if [ ! -e "$2" ]; then report "$1" "unchanged (absent)"; return; fi
  report "$1" "$( [ "$DRY_RUN" -eq 1 ] && echo "would remove" || echo "removed") $2"
  [ "$DRY_RUN" -eq 1 ] || rm -rf "$2"
}

uninstall() {
  if [ "$USE_SYSTEMD" -eq 1 ]; then
    [ -e "$UNIT_DIR/kiosk.service" ] && system systemctl disable --now kiosk.service
    remove_path unit "$UNIT_DIR/kiosk.service"
    system systemctl daemon-reload
  fi
  remove_path project "$APP"
  if [ "$PURGE" -eq 1 ]; then
    remove_path config "$ETC"
    remove_path state "$STATE"
    if [ "$SYSTEM" -eq 0 ] || id "$SERVICE_USER" >/dev/null 2>&1; then system userdel "$SERVICE_USER"; fi
  else
    report config "kept ($ETC; --purge removes it)"
    report state "kept ($STATE: the journal; --purge removes it)"
  fi
}

if [ "$UNINSTALL" -eq 1 ]; then
  uninstall
else
  [ -f "$SRC/config/kiosk.example.toml" ] || { echo "$SRC/config/kiosk.example.toml is missing" >&2; exit 66; }
  step_apt
  step_user
  step_project
  step_venv
  step_config
  step_state
  step_unit
  if [ "$FRESH_CONFIG" -eq 1 ] && [ "$DRY_RUN" -eq 0 ]; then
    echo "next: edit /etc/kiosk/kiosk.toml, check it with 'sudo -u kiosk /opt/kiosk/.venv/bin/kiosk check" \
         "--config /etc/kiosk/kiosk.toml', then: sudo systemctl start kiosk"
  fi
fi
