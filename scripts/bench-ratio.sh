#!/usr/bin/env bash
# The cost of a change as a ratio measured in one window: in-process
# issuance (BenchmarkSign in ./ca, 1 and 32 callers) and full ACME orders
# (`sigil bench acme` against a fresh `sigil dev`, 32 workers) at BASE and
# at the working tree, alternating, ROUNDS rounds each.
# Usage: scripts/bench-ratio.sh BASE_REV [ROUNDS]
set -euo pipefail
BASE=${1:?usage: scripts/bench-ratio.sh BASE_REV [ROUNDS]}
ROUNDS=${2:-3}
SIGN_N=${SIGN_N:-3000x}
ACME_COUNT=${ACME_COUNT:-1000}
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'git worktree remove --force "$WORK/base" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git worktree add -q --detach "$WORK/base" "$BASE"
for side in base head; do
	src=$([ "$side" = base ] && echo "$WORK/base" || echo .)
	(cd "$src" && CGO_ENABLED=0 go build -o "$WORK/$side-sigil" ./cmd/sigil && go test -c -o "$WORK/$side-ca.test" ./ca)
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
acme_round() { # side: one fresh dev CA, one bench run
	local bin=$WORK/$1-sigil data=$WORK/dev-$1 https=127.0.0.1:$(port) http=127.0.0.1:$(port) val=$(port)
	rm -rf "$data"
	"$bin" dev --data "$data" --https-addr "$https" --http-addr "$http" --acme-http-port "$val" >"$WORK/dev.log" 2>&1 &
	local pid=$!
	for _ in $(seq 300); do [ -f "$data/admin.token" ] && break; sleep 0.1; done
	"$bin" bench acme --directory "https://$https/acme/directory" --ca-file "$data/root.pem" \
		--concurrency 32 --count "$ACME_COUNT" --http-port "$val" --ip 2>&1 | tr '\r' '\n' | grep -o '[0-9]* orders in .*' | tr -d '\n'
	echo
	kill "$pid"; wait "$pid" 2>/dev/null || true
}
for r in $(seq "$ROUNDS"); do
	for side in base head; do
		echo "round $r $side sign: $("$WORK/$side-ca.test" -test.run '^$' -test.bench '^BenchmarkSign$' -test.benchtime "$SIGN_N" 2>&1 | grep -E '^BenchmarkSign' | awk '{for(i=1;i<=NF;i++) if($(i)=="certs/s") printf "%s %s certs/s; ", $1, $(i-1)}')"
		echo "round $r $side acme: $(acme_round "$side")"
	done
done
