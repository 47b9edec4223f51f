#!/bin/sh
# Print the ACL stanza of each kiosk of one site:  ./make-acl.sh SITE DEVICE...
set -eu
site=$1; shift
for device in "$@"; do
  p="kiosk/$site/$device"
  printf '\nuser kiosk-%s-%s\n' "$site" "$device"
  printf 'topic write %s/checkin\ntopic write %s/status\ntopic write %s/telemetry\n' "$p" "$p" "$p"
  printf 'topic write %s/cmd/+/result\ntopic read %s/ack\ntopic read %s/cmd/+\n' "$p" "$p" "$p"
  printf 'topic read kiosk/%s/all/cmd/+\n' "$site"
done
