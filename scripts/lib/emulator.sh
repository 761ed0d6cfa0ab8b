# Sourced by the benchmark scripts: start_emulator ARGS... starts `telemetron-sync emulator` on
# a free loopback port with the key `bench-key` (and ARGS), stops it on exit, and sets $base
# (the ext-v1 base URL) and $admin (the admin root). Needs $bin.
start_emulator() {
  emulator_out=$(mktemp)
  $bin emulator --listen 127.0.0.1:0 --api-key bench-key "$@" >"$emulator_out" 2>/dev/null &
  emulator_pid=$!
  trap 'kill $emulator_pid 2>/dev/null || true; rm -f "$emulator_out"' EXIT
  for _ in $(seq 50); do grep -q listening "$emulator_out" && break; sleep 0.1; done
  base=$(grep -o 'http://[^ ]*' "$emulator_out" | head -1)
  admin=${base%/api/ext-v1}
}
