#!/usr/bin/env bash
# The serving record with a token budget per dynamic batch: start `bertg4 serve --max-batch-tokens`,
# load the replica's own HTTP server with `bertg4 loadtest`, stop the server by its pid.
# Run from the repository root on a quiet machine:
#   bash results/2026-11-29_cpu_serving_token_budget/run.sh [OUT]      # about 8 minutes
set -u
OUT=${1:-results/2026-11-29_cpu_serving_token_budget}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
serve_and_load token-budget "$OUT" \
    "--seq-length 64 --max-batch-tokens 128 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2 --direct-ingress" \
    --capacity-fractions 0.2,0.5,0.8 --find-max --price-per-hour 0.17 --offline --requests 600 --duration 30
