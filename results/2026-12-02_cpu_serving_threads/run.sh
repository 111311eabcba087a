#!/usr/bin/env bash
# The closed-loop capacity record's MiniLM server (results/2026-12-02_cpu_serving_closed_loop_capacity)
# three times, one after the other, changing only how the replica's torch threads behave:
#   t1   one torch thread (the other core left to the load generator and Ray)
#   t2p  two torch threads, OMP_WAIT_POLICY=PASSIVE (threads sleep between parallel regions;
#        set for the server and the load generator's offline measurement alike)
#   t2   two torch threads, OpenMP's default wait policy (as in the earlier records)
# 1,000 timed requests a level, at most 30 s. Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_threads/run.sh [OUT]      # about 10 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_threads}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.5,0.65,0.8 --find-max --price-per-hour 0.17 --offline --requests 1000 --duration 30"
S1="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 1 --num-cpus 2 --direct-ingress"
S2="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2 --direct-ingress"
RC=0
serve_and_load t1 "$OUT/t1" "$S1" $LOAD > "$OUT/t1.txt" 2>&1 || RC=$?
OMP_WAIT_POLICY=PASSIVE serve_and_load t2p "$OUT/t2p" "$S2" $LOAD > "$OUT/t2p.txt" 2>&1 || RC=$?
serve_and_load t2 "$OUT/t2" "$S2" $LOAD > "$OUT/t2.txt" 2>&1 || RC=$?
exit $RC
