#!/usr/bin/env bash
# Benchmark of the executor: an initial migration against the emulator with 50 ms latency,
# measured from the emulator's own request log.
#
#   scripts/bench-apply.sh [DEVICES] [RATE] [CONCURRENCY]     defaults: 6000 200 16
#
# 6,000 devices make ≈13,000 calls (3,600 customers, 6,000 devices, one assign per customer).
# Prints apply's summary, wall time and peak RSS, then the log statistics: achieved rate, the
# busiest one-second window (sliding and whole-second), statuses.
set -euo pipefail
# SHAPE=realistic (the default) or simple (the earlier shape); SHUFFLE=--shuffle-ownership.
SHAPE=${SHAPE:-realistic}
SHUFFLE=${SHUFFLE:-}
SUFFIX=${SHUFFLE:+-shuffled}
cd "$(dirname "$0")/.."
devices=${1:-6000}
rate=${2:-200}
concurrency=${3:-16}
cargo build --release --quiet --bin telemetron-sync --example gen_exports --example request_log_stats
bin=target/release/telemetron-sync
dir=bench-data/apply-$SHAPE$SUFFIX-$devices
[ -f "$dir/day1/ownership.csv" ] || target/release/examples/gen_exports --devices "$devices" --churn 0.01 --seed 1 --shape "$SHAPE" $SHUFFLE --out "$dir" 2>/dev/null
rm -f "$dir/state.db" "$dir/state.db-wal" "$dir/state.db-shm"

. scripts/lib/emulator.sh
start_emulator --latency-ms 50

TELEMETRON_BASE_URL=$base TELEMETRON_API_KEY=bench-key /usr/bin/time -f "apply wall %e s, peak RSS %M KB, CPU user %U s sys %S s" \
  $bin -q apply --input-dir "$dir/day1" --state "$dir/state.db" --rate "$rate" --concurrency "$concurrency"
curl -s -H "x-api-key: bench-key" "$admin/_emulator/requests" | target/release/examples/request_log_stats --limit "$rate"
