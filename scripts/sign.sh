#!/bin/sh
# Prints the X-Alertd-Signature header value for an event body:
#     t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
#
# usage: scripts/sign.sh [-s SECRET] [-t UNIXTIME] [FILE]
#   The body is read from FILE, or from standard input; its bytes are signed
#   exactly (a trailing newline counts). SECRET defaults to $ALERTD_SECRET,
#   else the dev config's `dev-device-secret`.
#
# example:
#   body='{"event_id":"e1","source":{"id":"bus-1","kind":"bus"},"type":"panic"}'
#   curl -sS -H "Content-Type: application/json" \
#        -H "X-Alertd-Signature: $(printf %s "$body" | scripts/sign.sh)" \
#        -d "$body" http://127.0.0.1:8080/v1/events
set -eu

secret="${ALERTD_SECRET:-dev-device-secret}"
t=""
while getopts "s:t:h" opt; do
	case "$opt" in
	s) secret="$OPTARG" ;;
	t) t="$OPTARG" ;;
	*) sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ -n "$t" ] || t=$(date +%s)

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
printf '%s.' "$t" >"$tmp"
if [ $# -gt 0 ] && [ "$1" != "-" ]; then
	cat -- "$1" >>"$tmp"
else
	cat >>"$tmp"
fi

mac=$(openssl dgst -sha256 -hmac "$secret" <"$tmp" | awk '{print $NF}')
printf 't=%s,v1=%s\n' "$t" "$mac"
