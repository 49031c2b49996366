/* SPDX-License-Identifier: MIT */
/* Internals of the service runtime shared between its files. */
#ifndef SVC_INT_H
#define SVC_INT_H

#include "svc.h"

/* One HTTP route bound to a command or query type. */
typedef struct svc_edge_route {
    svc_app *app;
    sk_cqrs_bus *bus;
    char type[64];
    const char *const *query_keys; /* static storage of the service */
} svc_edge_route;

sk_status svc__upstreams_create(sk_di *di, void **out, void *ctx);
void svc__upstreams_destroy(void *obj, void *ctx);
void svc__edges_free(svc_app *app);

/** Follow this service's run-time fault injection setting (svc_fault.c); needs app->server. */
sk_status svc__fault_watch_start(svc_app *app, sk_bus *bus);
void svc__fault_watch_stop(svc_app *app);

/** Add the /admin/ routes (and /test/slow with SKALD_TEST_ROUTES=1) (svc_admin.c). */
sk_status svc__admin_routes_add(svc_app *app, svc_router *router);
/** True when SKALD_TEST_ROUTES=1. */
bool svc__test_routes_enabled(void);

/* How often the main thread looks whether the process is idle (svc_memory.c). */
#define SVC__MEMORY_TICK_MS 5000

/** The main thread's record of the process's CPU, to tell when it is idle (svc_memory.c). */
typedef struct svc_memory {
    int64_t last_cpu_us;        /* user + system CPU of the process at the last tick, -1: unknown */
    int64_t last_ms;            /* monotonic time of the last tick */
    bool is_trimmed;            /* trimmed since the process was last busy */
    size_t free_after_trim;     /* the heap's free bytes right after that trim */
    size_t resident_after_trim; /* the process's resident bytes right after that trim */
    bool is_released;           /* the last trim gave memory back */
    uint64_t n_trims;
} svc_memory;

void svc__memory_init(svc_memory *m, int64_t now_ms);
/**
 * When the process used less than 2 % of a core since the last call, give
 * the heap's free pages back (malloc_trim): on the first such call after it
 * was busy, then when 256 KiB more are free or resident. @return true when it
 * trimmed.
 */
bool svc__memory_tick(svc_memory *m, int64_t now_ms);

#endif /* SVC_INT_H */
