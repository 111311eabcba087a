#!/usr/bin/env bash
# The serving record: start `bertg4 serve`, load it with `bertg4 loadtest`, stop the server by its pid.
# Run from the repository root on a quiet machine:  bash results/2026-11-29_cpu_serving/run.sh [OUT]
set -u
OUT=${1:-results/2026-11-29_cpu_serving}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
serve_and_load serving "$OUT" "--seq-length 64 --max-batch-size 8 --batch-wait-ms 10 --threads 1 --num-cpus 2" \
    --capacity-fractions 0.2,0.5,0.8 --find-max --price-per-hour 0.17 --offline --requests 300 --duration 30
