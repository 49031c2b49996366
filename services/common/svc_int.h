/* SPDX-License-Identifier: MIT */
/* Internals of the service runtime shared between its files. */
#ifndef SVC_INT_H
#define SVC_INT_H

#include "svc.h"

#include <pthread.h>
#include <stdatomic.h>

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

/* How often a watched service writes its heartbeat, and the longest a sound store writer spends in
 * one batch, a sound HTTP server thread in one request callback or a sound HTTP loop takes to come
 * round (svc_watchdog.c). */
#define SVC__WATCHDOG_BEAT_MS  1000
#define SVC__WATCHDOG_STALL_MS 60000

/** The heartbeat to skald up's supervisor (svc_watchdog.c). */
typedef struct svc_watchdog {
    int fd;               /* write end of the supervisor's pipe; -1: not watched */
    int64_t last_beat_ms; /* monotonic */
    bool is_withheld; /* the store writer is stuck: beats withheld (logged once) */
    /* The sk-watchdog thread (svc__watchdog_start .. svc__watchdog_stop). */
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu; /* protects is_stopping */
    pthread_cond_t cv;
    bool is_stopping;
    _Atomic(sk_store *) store; /* whose writer it looks at, once the service is wired; or NULL */
    _Atomic(sk_http_client *) loop; /* the gateway's one thread, once wired; or NULL */
    _Atomic(sk_http_server *) server; /* the service's HTTP server, once wired; or NULL */
} svc_watchdog;

/**
 * Take the pipe that @p env_value (SKALD_WATCHDOG_FD's value, or NULL) names:
 * a descriptor number >= 3 of a pipe open for writing, made non-blocking and
 * close-on-exec. Anything else is logged and leaves the process unwatched
 * (every later call does nothing).
 */
void svc__watchdog_open(svc_watchdog *w, const char *env_value, int64_t now_ms);
/**
 * Write a byte when SVC__WATCHDOG_BEAT_MS passed since the last one (a
 * first call at or after svc__watchdog_open's @p now_ms writes at once), unless @p writer_busy_ms
 * (sk_store_busy_ms), @p loop_stalled_ms (sk_http_client_stalled_ms) or
 * @p handler_busy_ms (sk_http_server_busy_ms) is over
 * SVC__WATCHDOG_STALL_MS. @return true when a byte was written. The
 * sk-watchdog thread's, once started.
 */
bool svc__watchdog_tick(svc_watchdog *w,
                        int64_t now_ms,
                        int64_t writer_busy_ms,
                        int64_t loop_stalled_ms,
                        int64_t handler_busy_ms);
/** Stop the heartbeat: the supervisor sees the pipe close and stops watching. */
void svc__watchdog_close(svc_watchdog *w);
/** Start the sk-watchdog thread, which ticks every SVC__WATCHDOG_BEAT_MS (nothing when unwatched).
 */
void svc__watchdog_start(svc_watchdog *w);
/** Look at @p store's writer, @p loop's thread and @p server's threads (any may be NULL) from now
 * on (thread-safe). */
void svc__watchdog_watch(svc_watchdog *w,
                         sk_store *store,
                         sk_http_client *loop,
                         sk_http_server *server);
/** Join the thread and close the pipe. */
void svc__watchdog_stop(svc_watchdog *w);

#endif /* SVC_INT_H */
