#!/usr/bin/env bash
# Starts `sigil dev` on local ports, runs `sigil bench sign` at 1 and 32
# clients, and stops the server. Usage: scripts/bench-https.sh [path/to/sigil]
set -euo pipefail
BIN=${1:-bin/sigil}
COUNT=${COUNT:-20000}
DATA=$(mktemp -d)
HTTPS=127.0.0.1:${HTTPS_PORT:-18443}
HTTP=127.0.0.1:${HTTP_PORT:-18080}
"$BIN" dev --data "$DATA/ca" --https-addr "$HTTPS" --http-addr "$HTTP" >"$DATA/dev.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
	[ -f "$DATA/ca/admin.token" ] && break
	sleep 0.1
done
export SIGIL_TOKEN=$(cat "$DATA/ca/admin.token")
ARGS=(--server "https://$HTTPS" --ca-file "$DATA/ca/root.pem")
"$BIN" bench sign "${ARGS[@]}" --concurrency 1 --count $((COUNT / 10))
"$BIN" bench sign "${ARGS[@]}" --concurrency 32 --count "$COUNT"
echo "server peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$PID/status)"
