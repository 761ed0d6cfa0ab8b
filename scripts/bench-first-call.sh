#!/usr/bin/env bash
# How long `apply` of a migration takes to send its first call, and its peak RSS, against the
# release emulator on loopback (`--rate 3000 --concurrency 64`); stopped after STOP calls.
#   scripts/bench-first-call.sh bench-data/realistic-1000000/day1        # STOP=20000
#   STOP=100000 scripts/bench-first-call.sh bench-data/realistic-10000000/day1
# BIN picks the binary (default target/release/telemetron-sync). Needs curl.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?give the folder of a day-1 export}
bin=${BIN:-target/release/telemetron-sync}
stop=${STOP:-20000}
. scripts/lib/emulator.sh
start_emulator
state=$(mktemp -d)
out="$state/apply.out"
start=$(date +%s.%N)
TELEMETRON_BASE_URL=$base TELEMETRON_API_KEY=bench-key $bin -q apply --input-dir "$data" --state "$state/s.db" \
  --rate 3000 --concurrency 64 >"$out" 2>&1 &
pid=$!
first="" hwm=0 n=0
while kill -0 $pid 2>/dev/null; do
  sleep 0.5
  h=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || true)
  [ -n "$h" ] && hwm=$h
  n=$( (curl -s -H "x-api-key: bench-key" "$admin/_emulator/requests" || true) | grep -o "\"path\"" | wc -l || true)
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  if [ -z "$first" ] && [ "$n" -gt 0 ]; then
    first=$elapsed
    echo "first call after $first s (peak RSS so far $((hwm / 1024)) MiB)"
  fi
  [ "$n" -ge "$stop" ] && break
  secs=${elapsed%.*}
  [ "${secs:-0}" -ge 900 ] && break
done
echo "$n calls after $elapsed s; apply's peak RSS $((hwm / 1024)) MiB"
kill -INT $pid 2>/dev/null || true
sleep 5
kill -9 $pid 2>/dev/null || true
rm -rf "$state"
