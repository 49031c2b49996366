#!/bin/bash
# SPDX-License-Identifier: MIT
#
# CPU and context switches per order, per thread name, over every process of
# a running `skald up`: snapshots utime+stime and context switches of every
# thread from /proc before and after a measured window of `skald bench`.
# Threads are named (sk-writer, sk-relay, sk-fetch, MHD-worker, sk-nats ...),
# so the table says which part of which service costs what.
#
# Usage: bench/cpu_per_order.sh --data DIR [--rate R] [--seconds S] [--skald PATH]
#   DIR      data dir of the running system (skald up --data DIR)
#   R        orders/s offered (default 100); S seconds measured (default 8)
#   --rate 0 measures the idle system instead: CPU and context switches per second.
set -euo pipefail

data="" rate=100 seconds=8 skald="build/bin/skald"
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --skald) skald="$2"; shift 2 ;;
    *) echo "usage: $0 --data DIR [--rate R] [--seconds S] [--skald PATH]" >&2; exit 2 ;;
    esac
done
[ -n "$data" ] || { echo "cpu_per_order: --data DIR is required" >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+$ && "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
    { echo "cpu_per_order: --rate must be an integer >= 0 and --seconds a positive one" >&2; exit 2; }
root=$(cat "$data/run/skald.pid" 2>/dev/null) || { echo "cpu_per_order: no $data/run/skald.pid (is skald up running?)" >&2; exit 1; }
kill -0 "$root" 2>/dev/null || { echo "cpu_per_order: skald up (pid $root) is not running" >&2; exit 1; }

# One line per thread: "tid process/thread ticks ctxt_switches"; one awk for all files.
snapshot() {
    local pids files=()
    pids=$(cat /proc/"$root"/task/*/children 2>/dev/null)
    for p in $pids; do
        for t in /proc/"$p"/task/*; do files+=("$t/stat" "$t/status"); done
    done
    awk '
        FNR == 1 && FILENAME ~ /\/stat$/ {
            split(FILENAME, part, "/"); tid = part[5]
            line = $0; comm = line; sub(/^[^(]*\(/, "", comm); sub(/\)[^)]*$/, "", comm)
            sub(/^.*\) /, "", line); split(line, f, " ")
            ticks[tid] = f[12] + f[13]; name[tid] = comm; next
        }
        FILENAME ~ /\/status$/ && /ctxt_switches/ { split(FILENAME, part, "/"); cs[part[5]] += $2 }
        END { for (t in ticks) print t, name[t], ticks[t], cs[t] }
    ' "${files[@]}" 2>/dev/null
}
# Process name of each thread, for grouping: "tid process".
owners() {
    for p in $(cat /proc/"$root"/task/*/children 2>/dev/null); do
        local comm; comm=$(cat /proc/"$p"/comm 2>/dev/null) || continue
        for t in /proc/"$p"/task/*; do echo "${t##*/} $comm"; done
    done
}

err=$(mktemp); out=$(mktemp); before=$(mktemp); after=$(mktemp); own=$(mktemp)
trap 'rm -f "$err" "$out" "$before" "$after" "$own"' EXIT
if [ "$rate" -gt 0 ]; then
    "$skald" bench --data "$data" --rate "$rate" --duration $((seconds + 3)) --warmup 1 >"$out" 2>"$err" &
    bench=$!
    until grep -q measuring "$err" 2>/dev/null; do
        kill -0 "$bench" 2>/dev/null || { cat "$err" >&2; exit 1; }
        sleep 0.2
    done
    sleep 1
fi
owners >"$own"; snapshot >"$before"
sleep "$seconds"
snapshot >"$after"
owners >>"$own" # threads started during the window (the Go runtime adds some)
hz=$(getconf CLK_TCK)
if [ "$rate" -gt 0 ]; then
    wait "$bench" || true
    n=$((rate * seconds))
    echo "CPU and context switches per order at $rate orders/s over $seconds s ($n orders), by process/thread:"
else
    n=$seconds
    echo "CPU and context switches per second of the idle system over $seconds s, by process/thread:"
fi
awk -v n="$n" -v hz="$hz" '
    FILENAME == ARGV[1] { proc[$1] = $2; next }
    FILENAME == ARGV[2] { t0[$1] = $3; c0[$1] = $4; next }
    ($1 in t0) {
        k = proc[$1] "/" $2
        cpu[k] += ($3 - t0[$1]) * 1e6 / hz / n; cs[k] += ($4 - c0[$1]) / n
    }
    END {
        for (k in cpu) if (cpu[k] > 0 || cs[k] >= 0.1) {
            printf "  %-36s %8.0f us  %6.1f cs\n", k, cpu[k], cs[k]; tc += cpu[k]; tcs += cs[k]
        }
        printf "  %-36s %8.0f us  %6.1f cs\n", "TOTAL", tc, tcs
    }' "$own" "$before" "$after" | sort -k2 -n -r
[ "$rate" -eq 0 ] || sed -n '1,9p' "$out"
