#!/usr/bin/env bash
# What the network path adds at light load: mnist-mlp single-row requests, one per millisecond,
# in interleaved rounds of
#   1. in process: one row through the scheduler and a direct `predict`, with the same pause
#      between calls (examples/serve_bench, its "1 ms" row);
#   2. `densebatch serve` on SERVER_CPU (`--max-wait-us 0`), examples/oip_load on CLIENT_CPU:
#      HTTP binary and gRPC at 1 000 requests/s;
#   3. the floor under any network round trip here: a bare TCP exchange of the same sizes
#      between the same two CPUs (benches/probes/loopback_rtt.rs).
# Added latency = the server's p50 − the in-process scheduler's p50, both at one request per
# millisecond with the CPU idle between requests. Raw output in OUT_DIR.
#
# Usage, from the repository root:  benches/compare/serve_added_latency.sh [OUT_DIR]
# (default target/serve-added). Environment: ROUNDS (3), DURATION (seconds per network run, 8),
# SERVER_CPU (0), CLIENT_CPU (1), HTTP_PORT (28180; gRPC on the next port).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-target/serve-added}
models=target/refbench/models
rounds=${ROUNDS:-3}
duration=${DURATION:-8}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
http_port=${HTTP_PORT:-28180}
grpc_port=$((http_port + 1))

if [[ ! -f $models/mnist-mlp/manifest.json ]]; then
  "$here/setup_venv.sh"
  target/compare-venv/bin/python "$here/make_models.py" "$models" --models mnist-mlp
fi
cargo build --release --features cli,server --bin densebatch --example oip_load --example serve_bench
mkdir -p "$out/repo"
ln -sfn "$PWD/$models/mnist-mlp" "$out/repo/mnist-mlp"

server_pid=
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT

lscpu | grep "Model name"
for round in $(seq "$rounds"); do
  echo "== round $round"
  # In process, on the server's CPU as the server would be.
  taskset -c "$server_cpu" target/release/examples/serve_bench "$models/mnist-mlp" 0.5 64 0 inline 1 \
    >"$out/in-process-$round.txt" 2>&1
  grep -E '^\| 1 \| 1ms' "$out/in-process-$round.txt" |
    awk -F'|' '{printf "in process, 1 per ms: direct p50 %s µs, scheduler p50 %s µs\n", $4, $6}'

  taskset -c "$server_cpu" target/release/densebatch serve --host 127.0.0.1 \
    --model-repository "$out/repo" --http-port "$http_port" --grpc-port "$grpc_port" \
    --max-wait-us 0 >"$out/server-$round.log" 2>&1 &
  server_pid=$!
  for protocol in http-binary grpc; do
    taskset -c "$client_cpu" target/release/examples/oip_load --model mnist-mlp \
      --url "http://127.0.0.1:$http_port" --grpc-url "http://127.0.0.1:$grpc_port" \
      --protocol "$protocol" --connections 4 --duration "$duration" --warmup 2 \
      --label densebatch rate 1000 --json "$out/$protocol-$round.json" |
      grep -E '^\| densebatch'
  done
  stop_server

  taskset -c "$client_cpu" cargo bench --quiet --bench loopback_rtt -- "$server_cpu" 1000 \
    >"$out/loopback-$round.txt" 2>&1
  grep -E '^\| 1ms' "$out/loopback-$round.txt" |
    awk -F'|' '{printf "bare TCP exchange, 1 per ms: p50 %s µs\n", $3}'
done
