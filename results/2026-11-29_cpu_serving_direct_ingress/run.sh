#!/usr/bin/env bash
# The serving record, twice with the same model and batching: clients on the replica's own HTTP
# server (Ray Serve's direct ingress), then through Serve's HTTP proxy. Each run starts
# `bertg4 serve`, loads it with `bertg4 loadtest`, and stops the server by its pid.
# Run from the repository root on a quiet machine:
#   bash results/2026-11-29_cpu_serving_direct_ingress/run.sh [OUT]      # about 15 minutes
set -u
OUT=${1:-results/2026-11-29_cpu_serving_direct_ingress}
SERVE="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2"
LOAD="--capacity-fractions 0.2,0.5,0.8 --find-max --price-per-hour 0.17 --offline --requests 600 --duration 30"
LOG=$(mktemp -d)
. "$(dirname "$0")/../../scripts/serve_ready.sh"
RC=0
for MODE in direct proxy; do
    PORT=$((18500 + RANDOM % 400))
    FLAG=$([ $MODE = direct ] && echo --direct-ingress)
    start_server "$LOG/$MODE.log" $SERVE --port $PORT $FLAG
    URL=http://127.0.0.1:$PORT
    [ $MODE = direct ] && URL=$(direct_url "$LOG/$MODE.log")
    echo "== $MODE: $URL"
    bertg4 loadtest --url "$URL" $LOAD --output "$OUT/$MODE" || RC=$?
    kill -TERM $SPID; wait $SPID
done
exit $RC
