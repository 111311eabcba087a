#!/usr/bin/env bash
# The serving record, twice with the same model and batching: clients on the replica's own HTTP
# server (Ray Serve's direct ingress), then through Serve's HTTP proxy. Each run starts
# `bertg4 serve`, loads it with `bertg4 loadtest`, and stops the server by its pid.
# Run from the repository root on a quiet machine:
#   bash results/2026-11-29_cpu_serving_direct_ingress/run.sh [OUT]      # about 15 minutes
set -u
OUT=${1:-results/2026-11-29_cpu_serving_direct_ingress}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
serve_and_load direct "$OUT/direct" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD; RC=$?
serve_and_load proxy "$OUT/proxy" "$RECORD_SERVE" $RECORD_LOAD || RC=$?
exit $RC
