/* SPDX-License-Identifier: MIT */
/*
 * Timers: one thread runs callbacks at monotonic deadlines (retry back-off,
 * fault delays, queue deadlines, asynchronous completions). Timers sit in a
 * list sorted by deadline; a callback runs without the lock held, so it may
 * add or cancel timers. Cancel is exact: true means the callback will never
 * run. Destroy runs what is still pending with is_canceled = true.
 */
#include "mesh/mesh_int.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

typedef struct timer {
    struct timer *next;
    int64_t due_ms;
    uint64_t id;
    sk__timer_fn fn;
    void *ctx;
} timer;

struct sk__timers {
    pthread_mutex_t mu; /* protects head, next_id, is_stopping */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC; signalled on a new head or stop */
    pthread_t thread;
    bool has_thread;
    timer *head;
    uint64_t next_id;
    bool is_stopping;
    /* What the thread waits for (INT64_MAX: only a signal; INT64_MIN: it is not waiting and
     * reads head before it waits again). An add signals only for an earlier deadline, so a
     * call's timer added and cancelled before it is due wakes nobody. */
    int64_t wait_until_ms;
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

static void *timers_main(void *arg)
{
    sk__timers *t = arg;

    sk_thread_name("sk-timers");
    lock(&t->mu);
    while (!t->is_stopping) {
        int64_t now = sk_time_mono_ms();
        if (t->head != NULL && t->head->due_ms <= now) {
            timer *tm = t->head;
            t->head = tm->next;
            unlock(&t->mu);
            tm->fn(tm->ctx, false);
            sk_free(tm);
            lock(&t->mu);
            continue;
        }
        /* Woken by add or stop, or at the first deadline (perhaps of a timer cancelled since). */
        t->wait_until_ms = t->head != NULL ? t->head->due_ms : INT64_MAX;
        sk__mono_wait_until(&t->cv, &t->mu, t->wait_until_ms);
        t->wait_until_ms = INT64_MIN;
    }
    unlock(&t->mu);
    return NULL;
}

void sk__mono_sync_init(pthread_mutex_t *mu, pthread_cond_t *cv)
{
    pthread_condattr_t ca;

    /* sk_time_mono_ms reads CLOCK_MONOTONIC; the condition variable waits on the same clock. */
    if (pthread_mutex_init(mu, NULL) != 0 || pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(cv, &ca) != 0) {
        abort();
    }
    pthread_condattr_destroy(&ca);
}

void sk__mono_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    struct timespec ts;
    int rc;

    if (deadline_ms == INT64_MAX) {
        SK_IGNORE(pthread_cond_wait(cv, mu)); /* only woken */
        return;
    }
    ts.tv_sec = (time_t)(deadline_ms / 1000);
    ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    rc = pthread_cond_timedwait(cv, mu, &ts);
    if (rc != 0 && rc != ETIMEDOUT) {
        abort();
    }
}

sk_status sk__timers_create(sk__timers **out)
{
    sk__timers *t;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__timers_create: out must not be NULL");
    }
    *out = NULL;
    t = sk_calloc(1, sizeof(*t));
    if (t == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk__timers_create: allocating the timers");
    }
    sk__mono_sync_init(&t->mu, &t->cv);
    t->next_id = 1;
    t->wait_until_ms = INT64_MIN;
    if (pthread_create(&t->thread, NULL, timers_main, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        sk_free(t);
        return SK_FAIL(SK_ENOMEM, "sk__timers_create: starting the timer thread");
    }
    t->has_thread = true;
    *out = t;
    return SK_OK;
}

void sk__timers_destroy(sk__timers *t)
{
    timer *rest;

    if (t == NULL) {
        return;
    }
    lock(&t->mu);
    t->is_stopping = true;
    SK_IGNORE(pthread_cond_signal(&t->cv)); /* cannot fail on an initialized condvar */
    unlock(&t->mu);
    if (t->has_thread && pthread_join(t->thread, NULL) != 0) {
        abort();
    }
    /* The thread is gone: callbacks may cancel (a no-op now) but nothing runs concurrently. */
    for (;;) {
        lock(&t->mu);
        rest = t->head;
        if (rest != NULL) {
            t->head = rest->next;
        }
        unlock(&t->mu);
        if (rest == NULL) {
            break;
        }
        rest->fn(rest->ctx, true);
        sk_free(rest);
    }
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    sk_free(t);
}

sk_status
sk__timers_add(sk__timers *t, int64_t due_ms, sk__timer_fn fn, void *ctx, uint64_t *out_id)
{
    timer *tm;
    timer **pp;

    if (out_id != NULL) {
        *out_id = 0;
    }
    if (t == NULL || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__timers_add: t and fn must not be NULL");
    }
    tm = sk_calloc(1, sizeof(*tm));
    if (tm == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk__timers_add: allocating a timer");
    }
    tm->due_ms = due_ms;
    tm->fn = fn;
    tm->ctx = ctx;
    lock(&t->mu);
    if (t->is_stopping) {
        unlock(&t->mu);
        sk_free(tm);
        return SK_FAIL(SK_ESTATE, "sk__timers_add: the timers are being destroyed");
    }
    tm->id = t->next_id++;
    /* Equal deadlines keep their order of arrival. */
    for (pp = &t->head; *pp != NULL && (*pp)->due_ms <= due_ms; pp = &(*pp)->next) {
    }
    tm->next = *pp;
    *pp = tm;
    if (due_ms < t->wait_until_ms) {
        SK_IGNORE(pthread_cond_signal(&t->cv)); /* earlier than the thread waits for */
    }
    if (out_id != NULL) {
        *out_id = tm->id;
    }
    unlock(&t->mu);
    return SK_OK;
}

bool sk__timers_cancel(sk__timers *t, uint64_t id)
{
    timer *found = NULL;

    if (t == NULL || id == 0) {
        return false;
    }
    lock(&t->mu);
    for (timer **pp = &t->head; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            found = *pp;
            *pp = found->next;
            break;
        }
    }
    unlock(&t->mu);
    sk_free(found);
    return found != NULL;
}
