#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What nats-server spends its CPU on, from its own Go profiler: Debian's
# nats-server is stripped, so perf sees addresses only, while the Go
# runtime's profile names every function of every call stack.
#
# nats-server serves the profiler only with `prof_port` in its
# configuration, which `skald up` does not write. So, once per running
# system, this script adds `prof_port` (loopback) to DATA/run/nats.conf and
# ends nats-server by its PID: `skald up`'s supervisor starts it again from
# the same file and every service reconnects. (The next `skald up` writes
# the file afresh, without the port.) With the port up, it takes a CPU
# profile of S seconds, to be taken while `skald bench` runs, and groups it
# by what nats-server was doing: the deepest nats-server function of each
# call stack decides. The profile stays in FILE for `go tool pprof`.
#
# The profiler's block profile costs nats-server about 4 % (it is its own
# line in the output).
#
# Needs curl, and `go` (Debian package golang-go) for the grouping.
#
# Usage: bench/nats_profile.sh --data DIR --out FILE [--seconds S] [--prof-port N]
#   e.g. build/bin/skald bench --data DIR --rate 1000 --duration 10 &
#        sleep 3; bench/nats_profile.sh --data DIR --out /tmp/nats.pprof --seconds 5
set -euo pipefail

data="" out="" seconds=5 prof_port=18999
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --prof-port) prof_port="$2"; shift 2 ;;
    *) echo "usage: $0 --data DIR --out FILE [--seconds S] [--prof-port N]" >&2; exit 2 ;;
    esac
done
if [ -z "$data" ] || [ -z "$out" ]; then
    echo "nats_profile: --data DIR and --out FILE are required" >&2
    exit 2
fi
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 && "$prof_port" =~ ^[0-9]+$ &&
    "$prof_port" -gt 0 && "$prof_port" -lt 65536 ]] ||
    { echo "nats_profile: --seconds must be a positive integer, --prof-port 1..65535" >&2; exit 2; }
conf="$data/run/nats.conf"
root=$(cat "$data/run/skald.pid" 2>/dev/null) ||
    { echo "nats_profile: no $data/run/skald.pid (is skald up running?)" >&2; exit 1; }
[ -w "$conf" ] || { echo "nats_profile: $conf is not there (a single-node skald up?)" >&2; exit 1; }
pprof="http://127.0.0.1:$prof_port/debug/pprof"

if ! curl -sf -o /dev/null "$pprof/"; then
    if ! grep -q '^prof_port:' "$conf"; then
        printf '\n# Added by bench/nats_profile.sh: the Go profiler, loopback only.\nprof_port: %d\n' \
            "$prof_port" >>"$conf"
    fi
    ns=$(pgrep -P "$root" -x nats-server) ||
        { echo "nats_profile: no nats-server child of skald up (pid $root)" >&2; exit 1; }
    echo "nats_profile: restarting nats-server (pid $ns) with prof_port $prof_port" >&2
    kill "$ns"
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "$pprof/" && break
        sleep 0.2
    done
    curl -sf -o /dev/null "$pprof/" ||
        { echo "nats_profile: nats-server's profiler did not answer on port $prof_port" >&2; exit 1; }
    echo "nats_profile: profiler up; run the load, then this script again" >&2
    exit 0
fi

curl -sf -o "$out" "$pprof/profile?seconds=$seconds"
echo "nats_profile: $seconds s of nats-server's CPU profile in $out" >&2
command -v go >/dev/null || { echo "nats_profile: no go (apt-get install golang-go) to group it" >&2; exit 0; }

# One stack per block of `go tool pprof -traces`: its first line carries the
# time, the frames follow, deepest first.
go tool pprof -traces "$(command -v nats-server || echo /usr/sbin/nats-server)" "$out" 2>/dev/null | awk '
function seconds(s) { return s ~ /ms$/ ? substr(s, 1, length(s) - 2) / 1000 : (s ~ /s$/ ? substr(s, 1, length(s) - 1) + 0 : -1) }
function classify(st) {
    if (st ~ /gcBgMarkWorker|gcAssist|bgsweep/) return "the Go garbage collector"
    if (st ~ /blockevent/) return "the profiler itself (block profile)"
    if (st ~ /fileStore|msgBlock/) return "storing and loading messages (file store)"
    if (st ~ /pubAllowed/) return "publish permission checks"
    if (st ~ /Sublist/) return "subject matching (sublist)"
    if (st ~ /writeLoop|flushOutbound/) return "writing to clients (TLS, write)"
    if (st ~ /processAck|processInboundAcks|ackMsg/) return "processing acks"
    if (st ~ /consumer/) return "consumers: deliveries, pull requests, state"
    if (st ~ /stream/) return "streams: ingest, duplicate detection, publish acknowledgements"
    if (st ~ /parse|processInbound|deliverMsg/) return "the protocol: parse, route, deliver"
    if (st ~ /schedule|findRunnable|sysmon|mstart|park_m/) return "the Go scheduler"
    return "other"
}
function flush_stack() { if (t > 0) { share[classify(st)] += t; total += t }; t = 0; st = "" }
/^-+\+-+$/ { flush_stack(); next }
/^ *[0-9.]+(ms|s) / { flush_stack(); t = seconds($1); st = $NF; next }
t > 0 { st = st " " $1 }
END {
    flush_stack()
    if (total == 0) { print "nats_profile: no samples (was there load?)"; exit }
    printf "nats-server: %.2f s of CPU in the profile\n", total > "/dev/stderr"
    for (c in share) printf "%6.1f%%  %s\n", 100 * share[c] / total, c
}' | sort -rn -k1,1
