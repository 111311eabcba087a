#!/usr/bin/env bash
# Two replicas of one torch thread each behind Ray Serve's HAProxy ingress (`bertg4 serve --haproxy`)
# on a local Ray instance of two CPUs, the server of results/2026-12-04_cpu_serving_haproxy_two_replicas
# (MiniLM, max batch 4, wait 5 ms, packed, seq 64), loaded as there: 20-80 % of the closed-loop
# capacity, then --find-max at a p99 of 5 x the single-request latency (up to 1,000 timed requests a
# level, at most 30 s). The replicas' metadata says num_replicas 2, so the records simulate two.
# Run from the repository root, in the environment where `bertg4` runs, on a quiet machine:
#   bash results/2026-12-04_cpu_serving_two_replica_simulator/run.sh [OUT] [RUN]   # about 3 minutes
set -u
OUT=${1:-results/2026-12-04_cpu_serving_two_replica_simulator}
RUN=${2:-live1}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
mkdir -p "$OUT"
port=$((18500 + RANDOM % 400))
log=$(mktemp)
start_server "$log" --seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 1 --replica-cpus 1 \
    --num-cpus 2 --replicas 2 --haproxy --port $port
grep -E "^(serving|listening|HAProxy)" "$log" > "$OUT/$RUN.server.txt"
bertg4 loadtest --url http://127.0.0.1:$port --capacity-fractions 0.2,0.35,0.5,0.65,0.8 --find-max \
    --price-per-hour 0.17 --offline --requests 1000 --duration 30 --keep-requests --output "$OUT/$RUN" \
    > "$OUT/$RUN.txt" 2>&1
kill -TERM $SPID; wait $SPID
