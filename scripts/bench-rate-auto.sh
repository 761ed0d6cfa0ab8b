#!/usr/bin/env bash
# Benchmark of `--rate auto`: a migration against the emulator with a rate limit the client is
# not told (a sliding one-second window, 429 with Retry-After), measured from the emulator's log.
#
#   scripts/bench-rate-auto.sh [DEVICES] [LIMIT] [CONCURRENCY]     defaults: 6000 300 32
#
# Prints apply's summary (with the rate it settled at), then the successful answers of each
# second, when they first reached 90% of LIMIT, the share of LIMIT held from then on, and the
# share of 429s.
set -euo pipefail
SHAPE=${SHAPE:-realistic}
cd "$(dirname "$0")/.."
devices=${1:-6000}
limit=${2:-300}
concurrency=${3:-32}
cargo build --release --quiet --bin telemetron-sync --example gen_exports --example request_log_stats
bin=target/release/telemetron-sync
dir=bench-data/auto-$SHAPE-$devices
[ -f "$dir/day1/ownership.csv" ] || target/release/examples/gen_exports --devices "$devices" --churn 0.01 --seed 1 --shape "$SHAPE" --out "$dir" 2>/dev/null
rm -f "$dir/state.db" "$dir/state.db-wal" "$dir/state.db-shm"

. scripts/lib/emulator.sh
start_emulator --latency-ms "${LATENCY_MS:-20}" --rate-limit "$limit"

TELEMETRON_BASE_URL=$base TELEMETRON_API_KEY=bench-key \
  $bin -q apply --input-dir "$dir/day1" --state "$dir/state.db" --rate auto --concurrency "$concurrency" --backoff-ms 100
curl -s -H "x-api-key: bench-key" "$admin/_emulator/requests" | target/release/examples/request_log_stats --hidden-limit "$limit"
