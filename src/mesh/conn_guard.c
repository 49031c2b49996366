/* SPDX-License-Identifier: MIT */
/*
 * Connection guard: one thread that cuts connections whose deadline passed,
 * by shutdown(2) of their socket (the HTTP server then sees end of file and
 * closes the connection itself). This bounds slow clients (slowloris), which
 * an idle timeout alone does not: one byte a second keeps a connection
 * "active". Entries are embedded in the caller's per-connection state; the
 * caller removes an entry before its socket is closed, so a cut never hits a
 * reused descriptor.
 */
#include "mesh/mesh_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

struct sk__conn_guard {
    pthread_mutex_t mu; /* protects head, every entry's fields, next_wake_ms, is_stopping */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC; signalled on an earlier deadline or stop */
    pthread_t thread;
    bool has_thread;
    sk__guarded *head;
    int64_t next_wake_ms; /* when the thread wakes next (INT64_MAX: only when signalled) */
    bool is_stopping;
    _Atomic uint64_t n_cut;
};

static void lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) != 0) {
        abort();
    }
}

static void unlock(pthread_mutex_t *mu)
{
    if (pthread_mutex_unlock(mu) != 0) {
        abort();
    }
}

/* Cut what is due; return the earliest deadline still pending. Caller holds g->mu. */
static int64_t sweep(sk__conn_guard *g, int64_t now_ms)
{
    int64_t next = INT64_MAX;

    for (sk__guarded *e = g->head; e != NULL; e = e->next) {
        if (e->deadline_ms == 0) {
            continue;
        }
        if (e->deadline_ms <= now_ms) {
            /* SHUT_RDWR wakes the server's poll with end of file; it closes the socket itself.
             * The inode check makes sure the descriptor still is that connection's socket,
             * whatever the order in which the server closes it and reports the close. */
            struct stat sb;
            e->deadline_ms = 0;
            e->is_cut = true;
            /* Counted before the cut: whoever sees the connection close sees it counted. */
            atomic_fetch_add(&g->n_cut, 1);
            if (fstat(e->fd, &sb) == 0 && sb.st_ino == e->ino && sb.st_dev == e->dev) {
                SK_IGNORE(shutdown(e->fd, SHUT_RDWR));
            }
            continue;
        }
        if (e->deadline_ms < next) {
            next = e->deadline_ms;
        }
    }
    return next;
}

static void *guard_main(void *arg)
{
    sk__conn_guard *g = arg;

    sk_thread_name("sk-conn-guard");
    lock(&g->mu);
    while (!g->is_stopping) {
        g->next_wake_ms = sweep(g, sk_time_mono_ms());
        /* Woken by a new deadline or stop, or at the next deadline. */
        sk__mono_wait_until(&g->cv, &g->mu, g->next_wake_ms);
    }
    unlock(&g->mu);
    return NULL;
}

sk_status sk__conn_guard_create(sk__conn_guard **out)
{
    sk__conn_guard *g;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__conn_guard_create: out must not be NULL");
    }
    *out = NULL;
    g = sk_calloc(1, sizeof(*g));
    if (g == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk__conn_guard_create: allocating the guard");
    }
    sk__mono_sync_init(&g->mu, &g->cv);
    g->next_wake_ms = INT64_MAX;
    if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        sk_free(g);
        return SK_FAIL(SK_ENOMEM, "sk__conn_guard_create: starting the guard thread");
    }
    g->has_thread = true;
    *out = g;
    return SK_OK;
}

void sk__conn_guard_destroy(sk__conn_guard *g)
{
    if (g == NULL) {
        return;
    }
    lock(&g->mu);
    g->is_stopping = true;
    SK_IGNORE(pthread_cond_signal(&g->cv));
    unlock(&g->mu);
    if (g->has_thread && pthread_join(g->thread, NULL) != 0) {
        abort();
    }
    /* Entries still linked belong to their owners; only unlink them. */
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    sk_free(g);
}

/* Caller holds g->mu: wake the thread when @p deadline_ms is earlier than its next wake-up. */
static void wake_if_earlier(sk__conn_guard *g, int64_t deadline_ms)
{
    if (deadline_ms != 0 && deadline_ms < g->next_wake_ms) {
        g->next_wake_ms = deadline_ms;
        SK_IGNORE(pthread_cond_signal(&g->cv));
    }
}

void sk__conn_guard_add(sk__conn_guard *g, sk__guarded *e, int fd, int64_t deadline_ms)
{
    if (g == NULL || e == NULL) {
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        memset(&sb, 0, sizeof(sb)); /* never matches a socket: the entry is never cut */
    }
    lock(&g->mu);
    e->fd = fd;
    e->ino = (uint64_t)sb.st_ino;
    e->dev = (uint64_t)sb.st_dev;
    e->deadline_ms = deadline_ms;
    e->is_cut = false;
    e->prev = NULL;
    e->next = g->head;
    if (g->head != NULL) {
        g->head->prev = e;
    }
    g->head = e;
    e->is_linked = true;
    wake_if_earlier(g, deadline_ms);
    unlock(&g->mu);
}

void sk__conn_guard_set(sk__conn_guard *g, sk__guarded *e, int64_t deadline_ms)
{
    if (g == NULL || e == NULL) {
        return;
    }
    lock(&g->mu);
    if (e->is_linked && !e->is_cut) {
        e->deadline_ms = deadline_ms;
        wake_if_earlier(g, deadline_ms);
    }
    unlock(&g->mu);
}

bool sk__conn_guard_remove(sk__conn_guard *g, sk__guarded *e)
{
    bool was_cut;

    if (g == NULL || e == NULL) {
        return false;
    }
    lock(&g->mu);
    was_cut = e->is_cut;
    if (e->is_linked) {
        if (e->prev != NULL) {
            e->prev->next = e->next;
        } else {
            g->head = e->next;
        }
        if (e->next != NULL) {
            e->next->prev = e->prev;
        }
        e->prev = e->next = NULL;
        e->is_linked = false;
    }
    unlock(&g->mu);
    return was_cut;
}

uint64_t sk__conn_guard_cut_total(const sk__conn_guard *g)
{
    return g != NULL ? atomic_load(&((sk__conn_guard *)(uintptr_t)g)->n_cut) : 0;
}
