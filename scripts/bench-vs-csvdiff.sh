#!/usr/bin/env bash
# Side by side, on the same data in one run: our `plan` of day 2 against a snapshot of day 1,
# and the csv-diff crate (the engine of `qsv diff`) diffing the three day-1/day-2 pairs, keyed as
# our inputs are (customers and devices by their first column, ownership by both).
#
#   RUNS=5 scripts/bench-vs-csvdiff.sh [DEVICES]          default: 1000000
#
# Needs bench-data/N from scripts/bench.sh (exports and the baseline snapshot); makes them if
# missing. Prints the median wall time and peak RSS of each side and the ratio.
set -euo pipefail
# SHAPE=realistic (the default) or simple (the earlier shape); SHUFFLE=--shuffle-ownership.
SHAPE=${SHAPE:-realistic}
SHUFFLE=${SHUFFLE:-}
SUFFIX=${SHUFFLE:+-shuffled}
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
n=${1:-1000000}
dir=bench-data/$SHAPE$SUFFIX-$n
cargo build --release --quiet --bin telemetron-sync --example gen_exports
cargo build --release --quiet --manifest-path bench/csvdiff/Cargo.toml
differ=bench/csvdiff/target/release/csvdiff-bench
bin=target/release/telemetron-sync
[ -f "$dir/day2/ownership.csv" ] || target/release/examples/gen_exports --devices "$n" --churn 0.01 --seed 1 --shape "$SHAPE" $SHUFFLE --out "$dir" 2>/dev/null
[ -f "$dir/state.db" ] || $bin -q baseline --input-dir "$dir/day1" --state "$dir/state.db" >/dev/null
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours=(); theirs=(); ours_rss=0; theirs_rss=0
for _ in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %M" -o /tmp/tsync.time $bin -q plan --input-dir "$dir/day2" --state "$dir/state.db" --format json >/dev/null
  read -r w m < /tmp/tsync.time; ours+=("$w"); [ "$m" -gt "$ours_rss" ] && ours_rss=$m
  total=0
  for pair in "customers 0" "devices 0" "ownership 0,1"; do
    set -- $pair
    /usr/bin/time -f "%e %M" -o /tmp/csvdiff.time $differ "$dir/day1/$1.csv" "$dir/day2/$1.csv" "$2" >/dev/null
    read -r w m < /tmp/csvdiff.time; total=$(echo "$total + $w" | bc -l); [ "$m" -gt "$theirs_rss" ] && theirs_rss=$m
  done
  theirs+=("$total")
done
o=$(printf '%s\n' "${ours[@]}" | median)
t=$(printf '%s\n' "${theirs[@]}" | median)
echo "devices: $n, runs: $RUNS"
echo "telemetron-sync plan (day 2 vs snapshot of day 1): median ${o} s, peak RSS $((ours_rss / 1024)) MiB  [runs: ${ours[*]}]"
echo "csv-diff, three pairs summed:                      median ${t} s, peak RSS $((theirs_rss / 1024)) MiB  [runs: ${theirs[*]}]"
echo "ratio (ours / csv-diff): $(echo "scale=2; $o / $t" | bc -l)"
