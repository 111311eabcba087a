#!/usr/bin/env bash
# The same server twice, 120 requests/s for up to 55 s (up to 7,000 timed requests), every
# request kept: with Ray's defaults (default/), and with the node reporter of Ray's dashboard
# agent, which collects the node's stats every REPORTER_UPDATE_INTERVAL_MS (5,000 by default),
# set to a minute (reporter60s/). The local Ray instance `bertg4 serve` starts inherits the
# variable. Run from the repository root on a quiet machine (about 4 minutes):
#   bash results/2026-12-02_cpu_serving_long_levels/reporter/run.sh [OUT]
set -u
OUT=${1:-results/2026-12-02_cpu_serving_long_levels/reporter}
. "$(dirname "$0")/../../../scripts/serve_ready.sh"
LOAD="--rates 120 --requests 7000 --duration 55 --keep-requests"
RC=0
serve_and_load default "$OUT/default" "$RECORD_SERVE --direct-ingress" $LOAD > "$OUT/default.txt" 2>&1 || RC=$?
REPORTER_UPDATE_INTERVAL_MS=60000 serve_and_load reporter60s "$OUT/reporter60s" "$RECORD_SERVE --direct-ingress" $LOAD \
    > "$OUT/reporter60s.txt" 2>&1 || RC=$?
exit $RC
