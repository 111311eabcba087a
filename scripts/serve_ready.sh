# Sourced by the serving records' run.sh scripts (bash):
#   start_server LOG ARGS...   runs `bertg4 serve ARGS...` in the background, its output in LOG;
#                              sets SPID (stop it with `kill -TERM $SPID; wait $SPID`) and returns
#                              once the server says it is ready (at most 240 s); if the server
#                              exits first, prints its log and exits 1.
#   direct_url LOG             the replica's own HTTP server that `serve --direct-ingress` printed.
#   serve_and_load NAME OUT "SERVE ARGS" LOAD ARGS...
#                              one server, one load: `bertg4 serve SERVE ARGS` on a random port of
#                              127.0.0.1, loaded by `bertg4 loadtest --url URL LOAD ARGS --output OUT`
#                              (URL: the replica's own server when SERVE ARGS hold --direct-ingress),
#                              then stopped by its pid; returns the load test's exit status.
#   serve_and_load_runs OUT N "SERVE ARGS" LOAD ARGS...
#                              serve_and_load N times, each with its own server: run1 .. runN,
#                              into OUT/runK, its output in OUT/runK.txt; returns the last failed one's status (0: none).
#   RECORD_SERVE, RECORD_LOAD  the server and the load of the direct-ingress records
#                              (results/2026-11-29_cpu_serving_direct_ingress, ..._capacity).
RECORD_SERVE="--seq-length 64 --max-batch-size 4 --batch-wait-ms 5 --threads 2 --num-cpus 2"
RECORD_LOAD="--capacity-fractions 0.2,0.5,0.8 --find-max --price-per-hour 0.17 --offline --requests 600 --duration 30"

start_server() {
    local log=$1
    shift
    bertg4 serve "$@" > "$log" 2>&1 &
    SPID=$!
    for _ in $(seq 1 240); do
        grep -q "Ctrl-C" "$log" && return 0
        kill -0 $SPID 2>/dev/null || { cat "$log"; exit 1; }
        sleep 1
    done
}

direct_url() {
    grep -o "no proxy hop): http://[0-9.:]*" "$1" | sed 's/.*: //'
}

serve_and_load() {
    local name=$1 out=$2 serve=$3 rc=0 log url port=$((18500 + RANDOM % 400))
    shift 3
    log=$(mktemp)
    start_server "$log" $serve --port $port
    url=http://127.0.0.1:$port
    case " $serve " in *" --direct-ingress "*) url=$(direct_url "$log") ;; esac
    echo "== $name: $url"
    bertg4 loadtest --url "$url" "$@" --output "$out" || rc=$?
    kill -TERM $SPID; wait $SPID
    return $rc
}

serve_and_load_runs() {
    local out=$1 runs=$2 serve=$3 rc=0 n
    shift 3
    mkdir -p "$out"
    for n in $(seq 1 "$runs"); do
        serve_and_load run$n "$out/run$n" "$serve" "$@" > "$out/run$n.txt" 2>&1 || rc=$?
    done
    return $rc
}
