#!/usr/bin/env bash
# The cost of observability on produce throughput (docs/benchmarks.md, issue 9): a fresh
# `weft serve` per run, three configurations alternating (metrics off; metrics on, the
# default; metrics on with traces at 1 % to a local OTLP sink), ROUNDS rounds. Prints
# records/s and the broker's CPU time per record (user+system from /proc, 10 ms ticks).
# Usage: BIN=target/release/weft RECORDS=10000000 ROUNDS=3 scripts/bench-observability.sh
set -u
BIN=${BIN:-target/release/weft}
RECORDS=${RECORDS:-10000000}
ROUNDS=${ROUNDS:-3}
# A sink that accepts OTLP/HTTP exports and discards them.
python3 - 14318 <<'PY' & SINK=$!
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
trap 'kill $SINK 2>/dev/null' EXIT
run() { # label, then extra `weft serve` arguments
  local label=$1; shift
  local d; d=$(mktemp -d /tmp/weft-obs.XXXX)
  "$BIN" serve --data-dir "$d" --kafka-listen 127.0.0.1:19092 --http-listen 127.0.0.1:18080 \
    --registry-listen 127.0.0.1:18081 --log-level warn "$@" > "$d.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf 127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done
  local t0 t1 out
  t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$("$BIN" bench produce --bootstrap 127.0.0.1:19092 --records "$RECORDS" --record-size 100 \
    --partitions 8 --acks 1 2>&1)
  t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "$label | $(echo "$out" | grep -oE '[0-9]+ msgs/s' | head -1) | broker CPU" \
    "$(( (t1 - t0) * 10000000 / RECORDS )) ns/record | load $(cut -d' ' -f1-3 /proc/loadavg)"
  kill $pid; wait $pid 2>/dev/null; rm -rf "$d" "$d.log"
}
for _ in $(seq "$ROUNDS"); do
  run "metrics off      " --metrics false
  run "metrics on       "
  run "metrics, traces 1%" --otlp-endpoint http://127.0.0.1:14318 --trace-sample-ratio 0.01
done
