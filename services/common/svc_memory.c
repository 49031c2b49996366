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
 * the process used under 2 % of a core since the last tick it is idle: the
 * first idle tick trims the heap, and later ones again only when, since
 * that trim, the heap's free bytes grew by TRIM_AGAIN_BYTES (something was
 * freed: a connection closed) or the process's resident memory did (pages
 * given back were touched again, then freed). Each trim walks every arena.
 * Under load nothing is done: pages given back would be faulted in again.
 */
#include "svc_int.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim, mallinfo2 */
#endif

/* CPU the process may have used since the last tick and still count as idle, per second. */
#define IDLE_CPU_US_PER_S 20000
/* Growth of free or resident memory after which an idle process trims again. */
#define TRIM_AGAIN_BYTES (256u * 1024u)

static int64_t process_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return -1;
    }
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* Bytes free inside the heap's arenas (0 where the C library does not say). */
static size_t heap_free_bytes(void)
{
#ifdef __GLIBC__
    return mallinfo2().fordblks;
#else
    return 0;
#endif
}

/* The process's resident memory in bytes, 0 when it cannot be read. */
static size_t resident_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)resident * (size_t)page : 0;
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
        m->is_trimmed = false; /* the next idle tick trims */
        return false;
    }
    if (m->is_trimmed && heap_free_bytes() < m->free_after_trim + TRIM_AGAIN_BYTES &&
        resident_bytes() < m->resident_after_trim + TRIM_AGAIN_BYTES) {
        return false;
    }
#ifdef __GLIBC__
    m->is_released = malloc_trim(0) != 0; /* 1 when it gave memory back */
#endif
    m->free_after_trim = heap_free_bytes();
    m->resident_after_trim = resident_bytes();
    m->is_trimmed = true;
    m->n_trims++;
    return true;
}

void svc__memory_init(svc_memory *m, int64_t now_ms)
{
    *m = (svc_memory){ .last_cpu_us = process_cpu_us(), .last_ms = now_ms };
}
