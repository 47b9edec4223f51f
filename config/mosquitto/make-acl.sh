#!/bin/sh
# Print ACL stanzas for /etc/mosquitto/kiosk.acl:
#   ./make-acl.sh SITE DEVICE...              one stanza per kiosk of a site (user kiosk-SITE-DEVICE)
#   ./make-acl.sh --role ROLE USER...         one stanza per further user of a role: collector, console, operator
# The broker binds each login's client id to its user name (use_username_as_clientid), so every connection that
# runs at the same time has a user of its own: a second collector or console process, each operator's tail.
# Ids follow the kiosk's own rule (kiosk/config.py ID_PATTERN): lower-case letters, digits, "-" and "_",
# starting with a letter or digit, at most 32 characters; "all" is reserved. Anything else (a "+", "#" or "/"
# would grant other kiosks' topics) is refused before a line is printed; user names follow the same rule
# (at most 64 characters).
set -eu
export LC_ALL=C   # byte-wise character classes: no locale may widen a-z to accented letters
usage() { echo "usage: $0 SITE DEVICE...  |  $0 --role collector|console|operator USER..." >&2; exit 2; }
check_id() {   # what value, longest
  bad=""
  case $2 in
    all) echo "$0: $1 \"all\" is reserved (it addresses every kiosk of a site)" >&2; exit 2 ;;
    "" | [!a-z0-9]* | *[!a-z0-9_-]*) bad=1 ;;   # also catches newlines, spaces, + # / and non-ASCII
  esac
  [ ${#2} -le "$3" ] || bad=1
  if [ -n "$bad" ]; then
    echo "$0: $1 \"$2\" is not a valid id (lower-case letters, digits, - and _, at most $3 characters)" >&2
    exit 2
  fi
}
# shellcheck disable=SC2016  # $share is a topic level, not a variable
role() {   # the topics of one role, for user $2
  printf '\nuser %s\n' "$2"
  case $1 in
    collector) printf 'topic read kiosk/+/+/checkin\ntopic read $share/+/kiosk/+/+/checkin\n'
               printf 'topic write kiosk/+/+/ack\n' ;;
    console)   printf 'topic read kiosk/+/+/checkin\ntopic read $share/+/kiosk/+/+/checkin\n'
               printf 'topic read kiosk/+/+/status\ntopic read kiosk/+/+/telemetry\n'
               printf 'topic read $share/+/kiosk/+/+/telemetry\ntopic read kiosk/+/+/cmd/+/result\n'
               printf 'topic read $share/+/kiosk/+/+/cmd/+/result\ntopic write kiosk/+/+/ack\n'
               printf 'topic write kiosk/+/+/cmd/roster\n' ;;
    operator)  printf 'topic read kiosk/+/+/checkin\ntopic read kiosk/+/+/status\ntopic read kiosk/+/+/telemetry\n'
               printf 'topic read kiosk/+/+/cmd/+/result\ntopic write kiosk/+/+/cmd/+\n' ;;
  esac
}
[ $# -ge 2 ] || usage
if [ "$1" = "--role" ]; then
  [ $# -ge 3 ] || usage
  case $2 in collector | console | operator) ;; *) usage ;; esac
  r=$2; shift 2
  for user in "$@"; do check_id user "$user" 64; done
  for user in "$@"; do role "$r" "$user"; done
  exit 0
fi
site=$1; shift
check_id site "$site" 32
for device in "$@"; do check_id device "$device" 32; done
for device in "$@"; do
  p="kiosk/$site/$device"
  printf '\nuser kiosk-%s-%s\n' "$site" "$device"
  printf 'topic write %s/checkin\ntopic write %s/status\ntopic write %s/telemetry\n' "$p" "$p" "$p"
  printf 'topic write %s/cmd/+/result\ntopic read %s/ack\ntopic read %s/cmd/+\n' "$p" "$p" "$p"
  printf 'topic read kiosk/%s/all/cmd/+\n' "$site"
  printf 'topic readwrite %s/selftest\n' "$p"   # kiosk selftest's round trip
done
