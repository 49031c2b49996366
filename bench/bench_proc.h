/* SPDX-License-Identifier: MIT */
/*
 * CPU time of another process (a server a benchmark measures alongside
 * itself), from /proc. Benchmark code, not a library.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include <stdint.h>

/**
 * User + system CPU time of process @p pid, all its threads, in
 * microseconds (clock-tick resolution: 10 ms on this kernel, so measure
 * windows of seconds). @return -1 when the process is gone or unreadable.
 */
int64_t bench_proc_cpu_us(long pid);

#endif /* BENCH_PROC_H */
