#!/usr/bin/env bash
# The direct-ingress serving record's server and load, with the capacity measured in two runs
# (the second near the first estimate), on two servers one after the other; each server is
# started by `bertg4 serve`, loaded by `bertg4 loadtest`, and stopped by its pid.
# Run from the repository root on a quiet machine:
#   bash results/2026-11-29_cpu_serving_capacity/run.sh [OUT]      # about 15 minutes
set -u
OUT=${1:-results/2026-11-29_cpu_serving_capacity}
SERVE="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2 --direct-ingress"
LOAD="--capacity-fractions 0.2,0.5,0.8 --find-max --price-per-hour 0.17 --offline --requests 600 --duration 30"
LOG=$(mktemp -d)
. "$(dirname "$0")/../../scripts/serve_ready.sh"
RC=0
for RUN in run1 run2; do
    PORT=$((18500 + RANDOM % 400))
    start_server "$LOG/$RUN.log" $SERVE --port $PORT
    URL=$(direct_url "$LOG/$RUN.log")
    echo "== $RUN: $URL"
    bertg4 loadtest --url "$URL" $LOAD --output "$OUT/$RUN" || RC=$?
    kill -TERM $SPID; wait $SPID
done
exit $RC
