#!/usr/bin/env bash
# Benchmark: `baseline` of day 1, then `plan` of day 2, on generated exports.
#
#   scripts/bench.sh [DEVICES ...]        default: 1000000
#   RUNS=5 scripts/bench.sh 1000000 10000000
#
# Generates bench-data/N/{day1,day2} with examples/gen_exports (1% churn, seed 1) unless they
# exist, times one `baseline` into a fresh snapshot and RUNS `plan --format json` runs, and
# prints one Markdown table row per size: median wall time and peak RSS (GNU time's %M).
set -euo pipefail
# SHAPE=realistic (the default) or simple (the earlier shape); SHUFFLE=--shuffle-ownership.
SHAPE=${SHAPE:-realistic}
SHUFFLE=${SHUFFLE:-}
SUFFIX=${SHUFFLE:+-shuffled}
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release --quiet --bin telemetron-sync --example gen_exports
bin=target/release/telemetron-sync
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| devices | baseline day 1: wall, peak RSS | plan day 2 (median of $RUNS): wall | plan peak RSS (max) | api_calls |"
echo "|---|---|---|---|---|"
for n in "${@:-1000000}"; do
  dir=bench-data/$SHAPE$SUFFIX-$n
  [ -f "$dir/day2/ownership.csv" ] || target/release/examples/gen_exports --devices "$n" --churn 0.01 --seed 1 --shape "$SHAPE" $SHUFFLE --out "$dir" 2>/dev/null
  state=$dir/state.db
  rm -f "$state" "$state-wal" "$state-shm"
  /usr/bin/time -f "%e %M" -o "$dir/baseline.time" $bin -q baseline --input-dir "$dir/day1" --state "$state" >/dev/null
  read -r bw bm < "$dir/baseline.time"
  : > "$dir/plan.times"
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -a -o "$dir/plan.times" $bin -q plan --input-dir "$dir/day2" --state "$state" --format json >"$dir/plan.json"
  done
  pw=$(awk '{print $1}' "$dir/plan.times" | median)
  pm=$(awk '{print $2}' "$dir/plan.times" | sort -n | tail -1)
  calls=$(grep -m1 '"api_calls"' "$dir/plan.json" | tr -dc 0-9)
  printf '| %s | %s s, %s MiB | %s s | %s MiB | %s |\n' "$n" "$bw" "$((bm / 1024))" "$pw" "$((pm / 1024))" "$calls"
done
