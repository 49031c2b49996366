/* SPDX-License-Identifier: MIT */
/*
 * The heartbeat to `skald up`'s supervisor (cli/supervisor.c, "The
 * watchdog"). Started by it, a service finds the write end of a pipe at the
 * descriptor SKALD_WATCHDOG_FD names, and a thread of its own, sk-watchdog,
 * writes a byte to it every SVC__WATCHDOG_BEAT_MS while the process is
 * sound. A process that is stopped or hung writes nothing, and the
 * supervisor kills and restarts it after 30 s of silence (CLI_WATCHDOG_TIMEOUT_MS);
 * without that it would keep its database's locks
 * (the consumers it fetches for, the read model it projects) and the
 * messages it had fetched, and its service would stand still.
 *
 * "Sound" is also the store writer, the threads of the HTTP server and, in
 * the gateway, the loop of the thread that serves all of its HTTP: one
 * batch or one request callback taking over SVC__WATCHDOG_STALL_MS (a
 * deadlocked handler, a disk that no longer answers), or a loop that has
 * not come round for as long, and the beat is withheld. None comes near
 * that when sound: a lock wait gives up after 5 s, a batch holds at most
 * 256 units, a request handler never blocks, the loop comes round every
 * second.
 * A process that is stopping on purpose closes the pipe, so its drain is not
 * mistaken for a hang.
 *
 * Not the main thread: it also reloads certificates on SIGHUP, which waits
 * for a new NATS connection and can take longer than the supervisor waits
 * when the broker is slow.
 */
#include "svc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Highest descriptor number accepted from the environment. */
#define MAX_FD 1048576

void svc__watchdog_open(svc_watchdog *w, const char *env_value, int64_t now_ms)
{
    struct stat sb;
    char *end = NULL;

    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->last_beat_ms = now_ms - SVC__WATCHDOG_BEAT_MS; /* the first tick beats */
    if (env_value == NULL || env_value[0] == '\0') {
        return; /* not started by skald up: nobody to tell */
    }
    errno = 0;
    long fd = strtol(env_value, &end, 10);
    if (errno != 0 || end == env_value || *end != '\0' || fd < 3 || fd > MAX_FD) {
        SK_LOG_WARN("SKALD_WATCHDOG_FD: expected a descriptor number 3..%d, got \"%.32s\"; no "
                    "watchdog heartbeat",
                    MAX_FD, env_value);
        return;
    }
    int flags = fcntl((int)fd, F_GETFL);
    if (flags < 0 || fstat((int)fd, &sb) != 0 || !S_ISFIFO(sb.st_mode) ||
        (flags & O_ACCMODE) != O_WRONLY) {
        SK_LOG_WARN("SKALD_WATCHDOG_FD=%ld: not a pipe open for writing; no watchdog heartbeat",
                    fd);
        return;
    }
    /* Never block the main thread on a full pipe; never hand the pipe to a program we start. */
    if (fcntl((int)fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) {
        SK_LOG_WARN("SKALD_WATCHDOG_FD=%ld: fcntl: %s; no watchdog heartbeat", fd, strerror(errno));
        return;
    }
    w->fd = (int)fd;
}

bool svc__watchdog_tick(svc_watchdog *w,
                        int64_t now_ms,
                        int64_t writer_busy_ms,
                        int64_t loop_stalled_ms,
                        int64_t handler_busy_ms)
{
    if (w->fd < 0) {
        return false;
    }
    const char *stuck = NULL;
    int64_t stuck_ms = 0;
    if (writer_busy_ms > SVC__WATCHDOG_STALL_MS) {
        stuck = "the store writer has been in one batch";
        stuck_ms = writer_busy_ms;
    } else if (loop_stalled_ms > SVC__WATCHDOG_STALL_MS) {
        stuck = "the HTTP client's loop has not come round";
        stuck_ms = loop_stalled_ms;
    } else if (handler_busy_ms > SVC__WATCHDOG_STALL_MS) {
        stuck = "a thread of the HTTP server has been in one request";
        stuck_ms = handler_busy_ms;
    }
    if (stuck != NULL) {
        if (!w->is_withheld) {
            SK_LOG_ERROR("%s for %lld ms: withholding the watchdog heartbeat, so that skald up "
                         "restarts this process",
                         stuck, (long long)stuck_ms);
            w->is_withheld = true;
        }
        return false;
    }
    if (w->is_withheld) {
        SK_LOG_WARN("moving again; watchdog heartbeat resumed");
        w->is_withheld = false;
    }
    if (now_ms - w->last_beat_ms < SVC__WATCHDOG_BEAT_MS) {
        return false;
    }
    ssize_t n = write(w->fd, ".", 1);
    if (n == 1 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        /* A full pipe: the supervisor has not read yet, and what is there already says we live. */
        w->last_beat_ms = now_ms;
        return n == 1;
    }
    /* EPIPE: the supervisor is gone (it ends us too); anything else will not get better. */
    SK_LOG_WARN("watchdog heartbeat: %s; no more heartbeats",
                n < 0 ? strerror(errno) : "short write");
    svc__watchdog_close(w);
    return false;
}

void svc__watchdog_close(svc_watchdog *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
}

static void *watchdog_main(void *arg)
{
    svc_watchdog *w = arg;

    sk_thread_name("sk-watchdog");
    pthread_mutex_lock(&w->mu);
    while (!w->is_stopping) {
        pthread_mutex_unlock(&w->mu);
        /* w->fd is this thread's until svc__watchdog_stop has joined it. */
        (void)svc__watchdog_tick(w, sk_time_mono_ms(), sk_store_busy_ms(atomic_load(&w->store)),
                                 sk_http_client_stalled_ms(atomic_load(&w->loop)),
                                 sk_http_server_busy_ms(atomic_load(&w->server)));
        pthread_mutex_lock(&w->mu);
        struct timespec until;
        sk_time_mono_deadline(SVC__WATCHDOG_BEAT_MS, &until);
        while (!w->is_stopping && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
            /* woken early, not to stop: sleep on */
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void svc__watchdog_start(svc_watchdog *w)
{
    if (w->fd < 0) {
        return;
    }
    atomic_init(&w->store, NULL);
    atomic_init(&w->loop, NULL);
    atomic_init(&w->server, NULL);
    w->is_stopping = false;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        SK_LOG_WARN("watchdog heartbeat: initialising its mutex failed; no heartbeat");
        svc__watchdog_close(w);
        return;
    }
    pthread_condattr_t ca;
    bool is_cond = pthread_condattr_init(&ca) == 0;
    if (is_cond) {
        is_cond = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&w->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!is_cond) {
        SK_LOG_WARN("watchdog heartbeat: initialising its condition variable failed; no heartbeat");
        pthread_mutex_destroy(&w->mu);
        svc__watchdog_close(w);
        return;
    }
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        SK_LOG_WARN("watchdog heartbeat: creating its thread failed; no heartbeat");
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        svc__watchdog_close(w);
        return;
    }
    w->has_thread = true;
}

void svc__watchdog_watch(svc_watchdog *w,
                         sk_store *store,
                         sk_http_client *loop,
                         sk_http_server *server)
{
    atomic_store(&w->store, store);
    atomic_store(&w->loop, loop);
    atomic_store(&w->server, server);
}

void svc__watchdog_stop(svc_watchdog *w)
{
    if (w->has_thread) {
        pthread_mutex_lock(&w->mu);
        w->is_stopping = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        w->has_thread = false;
    }
    svc__watchdog_close(w);
}
