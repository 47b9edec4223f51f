#!/bin/sh
# Print the ACL stanza of each kiosk of one site:  ./make-acl.sh SITE DEVICE...
# Ids follow the kiosk's own rule (kiosk/config.py ID_PATTERN): lower-case letters, digits, "-" and "_",
# starting with a letter or digit, at most 32 characters; "all" is reserved. Anything else (a "+", "#" or "/"
# would grant other kiosks' topics) is refused before a line is printed.
set -eu
export LC_ALL=C   # byte-wise character classes: no locale may widen a-z to accented letters
usage() { echo "usage: $0 SITE DEVICE..." >&2; exit 2; }
check_id() {
  bad=""
  case $2 in
    all) echo "$0: $1 \"all\" is reserved (it addresses every kiosk of a site)" >&2; exit 2 ;;
    "" | [!a-z0-9]* | *[!a-z0-9_-]*) bad=1 ;;   # also catches newlines, spaces, + # / and non-ASCII
  esac
  [ ${#2} -le 32 ] || bad=1
  if [ -n "$bad" ]; then
    echo "$0: $1 \"$2\" is not a valid id (lower-case letters, digits, - and _, at most 32 characters)" >&2
    exit 2
  fi
}
[ $# -ge 2 ] || usage
site=$1; shift
check_id site "$site"
for device in "$@"; do check_id device "$device"; done
for device in "$@"; do
  p="kiosk/$site/$device"
  printf '\nuser kiosk-%s-%s\n' "$site" "$device"
  printf 'topic write %s/checkin\ntopic write %s/status\ntopic write %s/telemetry\n' "$p" "$p" "$p"
  printf 'topic write %s/cmd/+/result\ntopic read %s/ack\ntopic read %s/cmd/+\n' "$p" "$p" "$p"
  printf 'topic read kiosk/%s/all/cmd/+\n' "$site"
done
