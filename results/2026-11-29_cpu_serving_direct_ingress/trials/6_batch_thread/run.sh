#!/usr/bin/env bash
# Trial 6: the replica computes each batch in a worker thread, its event loop free to read and
# answer requests meanwhile (`thread`), against computing it on the event loop (`inline`,
# BERTG4_BATCH_INLINE=1). Four direct-ingress servers, in the order thread, inline, inline, thread,
# each loaded at the same fixed rates; every server is stopped by its pid.
# `serve` computes on the event loop; thread.patch adds the worker thread, with
# BERTG4_BATCH_INLINE=1 to keep the event loop, to the code of commit 9dd2f2f (where the trial
# ran). From the repository root on a quiet machine:
#   git checkout 9dd2f2f
#   git apply results/2026-11-29_cpu_serving_direct_ingress/trials/6_batch_thread/thread.patch
#   bash results/2026-11-29_cpu_serving_direct_ingress/trials/6_batch_thread/run.sh OUT   # about 12 minutes
#   git apply -R results/2026-11-29_cpu_serving_direct_ingress/trials/6_batch_thread/thread.patch
set -u
OUT=${1:?output folder}
SERVE="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2 --direct-ingress"
LOG=$(mktemp -d)
. "$(dirname "$0")/../../../../scripts/serve_ready.sh"
RC=0
N=0
for MODE in thread inline inline thread; do
    N=$((N + 1))
    SEED=$(( (N - 1) / 2 ))
    PORT=$((18500 + RANDOM % 400))
    if [ $MODE = inline ]; then export BERTG4_BATCH_INLINE=1; else unset BERTG4_BATCH_INLINE; fi
    start_server "$LOG/$N.log" $SERVE --port $PORT
    URL=$(direct_url "$LOG/$N.log")
    echo "== $N $MODE: $URL"
    bertg4 loadtest --url "$URL" --rates 80,110,130 --requests 1500 --duration 14 --seed $SEED \
        --output "$OUT/${N}_${MODE}_seed${SEED}" || RC=$?
    kill -TERM $SPID; wait $SPID
done
unset BERTG4_BATCH_INLINE
exit $RC
