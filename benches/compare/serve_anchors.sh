#!/usr/bin/env bash
# The network serving comparison: `densebatch serve` against two Python anchors wrapping ONNX
# Runtime on the same mnist-mlp model (the kserve model server's V2 REST server, and FastAPI +
# uvicorn speaking the same V2 JSON). Every server runs pinned to one CPU, the load generator
# (examples/oip_load, one process) on another: same generator, same requests, same machine.
# For each server: capacity (closed loop), then an open-loop sweep over fractions of it; then
# densebatch again at each rate the anchors sustained, for p99 at equal load. Tables on stdout
# and in OUT_DIR/report.md, raw reports in OUT_DIR/*.json.
#
# Usage, from the repository root:  benches/compare/serve_anchors.sh [OUT_DIR]  (default target/serve-anchors)
# Environment: DURATION (seconds per level, 10), WARMUP (2), LOADS (0.5,0.75,1.0,1.25,1.5),
# CONNECTIONS (256), DENSEBATCH_ARGS ("--queue-capacity 64": a queue shorter than the requests
# the generator may have in flight, so overload shows as 503s rather than as requests waiting in
# the generator), SERVERS ("kserve fastapi densebatch"), DENSEBATCH_PROTOCOLS
# ("http-binary http-json grpc"), SERVER_CPU (0), CLIENT_CPU (1), HTTP_PORT (28080; gRPC on the
# next port), SERVE_ANCHORS_VENV (target/serve-anchors-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-target/serve-anchors}
venv=${SERVE_ANCHORS_VENV:-target/serve-anchors-venv}
models=target/refbench/models
duration=${DURATION:-10}
warmup=${WARMUP:-2}
loads=${LOADS:-0.5,0.75,1.0,1.25,1.5}
connections=${CONNECTIONS:-256}
densebatch_args=${DENSEBATCH_ARGS:---queue-capacity 64}
servers=${SERVERS:-kserve fastapi densebatch}
densebatch_protocols=${DENSEBATCH_PROTOCOLS:-http-binary http-json grpc}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
http_port=${HTTP_PORT:-28080}
grpc_port=$((http_port + 1))

if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/serve_requirements.txt"
fi
if [[ ! -f $models/mnist-mlp/model.onnx ]]; then
  "$here/setup_venv.sh"
  target/compare-venv/bin/python "$here/make_models.py" "$models" --models mnist-mlp
fi
cargo build --release --features cli,server --bin densebatch --example oip_load
mkdir -p "$out/repo"
rm -f "$out"/*.json
ln -sfn "$PWD/$models/mnist-mlp" "$out/repo/mnist-mlp"
model_onnx=$PWD/$models/mnist-mlp/model.onnx

server_pid=
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT

start_server() {
  case $1 in
    densebatch)
      # shellcheck disable=SC2086
      taskset -c "$server_cpu" target/release/densebatch serve --host 127.0.0.1 \
        --model-repository "$out/repo" --http-port "$http_port" --grpc-port "$grpc_port" \
        $densebatch_args >"$out/$1.log" 2>&1 &
      ;;
    kserve | fastapi)
      PYTHONPATH=$here taskset -c "$server_cpu" "$venv/bin/python" "$here/anchor_$1.py" \
        "$model_onnx" mnist-mlp "$http_port" >"$out/$1.log" 2>&1 &
      ;;
  esac
  server_pid=$!
}

# The generator on its own CPU; it waits for the server's readiness first.
generate() {
  local server=$1
  shift
  taskset -c "$client_cpu" target/release/examples/oip_load --model mnist-mlp \
    --url "http://127.0.0.1:$http_port" --grpc-url "http://127.0.0.1:$grpc_port" \
    --connections "$connections" --duration "$duration" --warmup "$warmup" --label "$server" "$@"
}

for server in $servers; do
  start_server "$server"
  if [[ $server == densebatch ]]; then protocols=$densebatch_protocols; else protocols=http-json; fi
  for protocol in $protocols; do
    generate "$server" --protocol "$protocol" sweep --loads "$loads" \
      --json "$out/$server-$protocol-sweep.json"
  done
  if [[ $server == densebatch ]]; then
    anchor_reports=$(ls "$out"/{kserve,fastapi}-*-sweep.json 2>/dev/null || true)
    if [[ -n $anchor_reports ]]; then
      # shellcheck disable=SC2086
      rates=$("$venv/bin/python" "$here/sustained_rates.py" $anchor_reports)
      for protocol in http-json http-binary; do
        if [[ -n $rates ]]; then
          generate "$server" --protocol "$protocol" rate "$rates" --json "$out/$server-$protocol-rates.json"
        fi
      done
    fi
  fi
  stop_server
done

{
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) vCPUs;" \
    "servers on CPU $server_cpu, generator on CPU $client_cpu; $(date -u +%Y-%m-%d);" \
    "$duration s per level, $connections connections; load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$venv/bin/python" "$here/serve_report.py" "$out"
} | tee "$out/report.md"
