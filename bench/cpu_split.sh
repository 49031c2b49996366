#!/bin/bash
# SPDX-License-Identifier: MIT
#
# How a system-wide profile splits by kind of work: reads a `perf record -a`
# file taken while `skald bench` drives a running `skald up`, and sums the
# samples by thread name and library into HTTP, broker (nats-server and our
# client side), database (the store writers: SQLite, the kernel, libc), our
# own code on the writers, JSON (wherever it runs), the bench client and the
# rest. Thread names are the ones docs/architecture.md lists (sk-writer,
# sk-relay, sk-fetch, MHD-worker, sk-http-client, ...).
#
# Usage: bench/cpu_split.sh PERF_DATA
#   e.g. perf record -a -g -F 999 -o /tmp/sys.data -- sleep 5   (during skald bench)
set -euo pipefail

[ $# -eq 1 ] && [ -r "$1" ] || { echo "usage: $0 PERF_DATA (a readable perf record -a file)" >&2; exit 2; }

perf report -i "$1" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9.]+%' | awk '
{
    pct = $1; sub(/%/, "", pct); comm = $2; dso = $3; sym = $NF
    if (dso ~ /jansson/ || sym ~ /^sk_?_?json|^json_/) cat = "JSON (jansson and ours, every thread)"
    else if (comm == "nats-server") cat = "broker: nats-server"
    else if (comm == "sk-writer" && dso ~ /sqlite/) cat = "database: SQLite on the store writers"
    else if (comm == "sk-writer" && dso ~ /kernel/) cat = "database: kernel on the writers (WAL writes, fsync, wake-ups)"
    else if (comm == "sk-writer" && dso ~ /^skald-/) cat = "service code and saga bookkeeping (our code on the writers)"
    else if (comm == "sk-writer") cat = "writers: libc (malloc, copies), acks handed to nats.c, TLS"
    else if (comm == "sk-http-client" || comm == "MHD-worker") cat = "HTTP: gateway and service HTTP threads (libcurl, libmicrohttpd, TLS)"
    else if (comm ~ /^sk-(relay|fetch|nats)/) cat = "broker, client side: relays, fetch threads, nats.c threads"
    else if (comm == "skald") cat = "the bench client (skald bench)"
    else if (comm ~ /^(kworker|ksoftirq|jbd2|rcu)/) cat = "kernel threads (block I/O)"
    else if (comm == "swapper") cat = "idle"
    else if (comm ~ /^sk-/) cat = "service background threads (consistency, waiters, saga scan, discovery)"
    else cat = "other"
    share[cat] += pct; all += pct
}
END {
    for (c in share) printf "%6.2f%%  %s\n", share[c], c
    printf "%6.2f%%  all samples\n", all
}' | sort -rn
