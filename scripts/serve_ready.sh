# Sourced by the serving records' run.sh scripts (bash):
#   start_server LOG ARGS...   runs `bertg4 serve ARGS...` in the background, its output in LOG;
#                              sets SPID (stop it with `kill -TERM $SPID; wait $SPID`) and returns
#                              once the server says it is ready (at most 240 s); if the server
#                              exits first, prints its log and exits 1.
#   direct_url LOG             the replica's own HTTP server that `serve --direct-ingress` printed.
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
