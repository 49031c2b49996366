/* SPDX-License-Identifier: MIT */
/*
 * Giving the heap's free pages back while the process is idle.
 *
 * After a burst of load a service frees most of what the burst took, but
 * glibc keeps freed pages inside its arenas: each store writer trims once
 * when it goes idle (src/store/store.c), yet a connection the HTTP server
 * closes 30 s later (its idle timeout) frees its memory after that, and the
 * gateway and psp have no store at all. Measured 60 s after 10 s at 1,000
 * orders/s: the gateway 13.7 MiB PSS (10.1 after a trim), psp 8.4 (7.2).
 *
 * The main thread calls svc__memory_tick every SVC__MEMORY_TICK_MS. When
 * the process used under 2 % of a core since the last tick, it is idle and
 * the heap is trimmed; under load nothing is done, since pages given back
 * would only be faulted in again.
 */
#include "svc_int.h"

#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif

/* CPU the process may have used since the last tick and still count as idle, per second. */
#define IDLE_CPU_US_PER_S 20000

static int64_t process_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

bool svc__memory_tick(svc_memory *m, int64_t now_ms)
{
    int64_t cpu_us = process_cpu_us();
    bool is_idle = false;

    if (cpu_us >= 0 && m->last_cpu_us >= 0 && now_ms > m->last_ms) {
        int64_t budget_us = (now_ms - m->last_ms) * IDLE_CPU_US_PER_S / 1000;
        is_idle = cpu_us - m->last_cpu_us < budget_us;
    }
    m->last_cpu_us = cpu_us;
    m->last_ms = now_ms;
    if (!is_idle) {
        return false;
    }
#ifdef __GLIBC__
    (void)malloc_trim(0); /* returns 1 when it gave memory back; nothing to do otherwise */
#endif
    m->n_trims++;
    return true;
}

void svc__memory_init(svc_memory *m, int64_t now_ms)
{
    m->last_cpu_us = process_cpu_us();
    m->last_ms = now_ms;
    m->n_trims = 0;
}
