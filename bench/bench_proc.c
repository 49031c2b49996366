/* SPDX-License-Identifier: MIT */
/* CPU time of another process from /proc/PID/stat (see bench_proc.h). */
#include "bench_proc.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int64_t bench_proc_cpu_us(long pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    long tck = sysconf(_SC_CLK_TCK);
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may contain spaces and parentheses: fields start after the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    if (tck <= 0) {
        tck = 100;
    }
    return (int64_t)((ut + st) * 1000000ULL / (unsigned long long)tck);
}
