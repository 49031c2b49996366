/* SPDX-License-Identifier: MIT */
/*
 * Message reaper: destroys finished nats messages a batch at a time.
 *
 * nats.c hands every destroyed natsMsg to its garbage-collector thread and
 * wakes that thread when it sleeps, so at low load each message costs a
 * futex wake and a context switch on another thread (see
 * docs/performance.md). Holding finished messages and destroying them
 * together wakes the collector once per batch. What is held is bounded by
 * count, bytes and (checked from the owner's loop a few times a second) age,
 * and the owner flushes it when it stops.
 *
 * The collector empties its list as fast as it is filled, so it goes back
 * to sleep between batches: each batch is about one wake-up of it. With 32
 * messages a batch the collectors were woken ~2 times per order at 1,000
 * orders/s, a fifteenth of every wake-up in the system; with 256, ~0.2
 * (docs/performance.md).
 */
#include "msg/msg_int.h"

#include <skald/core.h>

sk_status sk__reaper_init(sk__reaper *r)
{
    r->n = 0;
    r->bytes = 0;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        return SK_FAIL(SK_ENOMEM, "creating the message reaper's mutex");
    }
    r->has_mu = true;
    return SK_OK;
}

/* Under mu: move every held message to @p out; returns how many. */
static size_t take_held(sk__reaper *r, natsMsg **out)
{
    size_t n = r->n;
    for (size_t i = 0; i < n; i++) {
        out[i] = r->held[i];
    }
    r->n = 0;
    r->bytes = 0;
    return n;
}

/* Destroy @p n messages of @p held (outside the lock: the collector takes its own). */
static void destroy_all(natsMsg **held, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        natsMsg_Destroy(held[i]);
    }
}

void sk__reaper_add(sk__reaper *r, natsMsg *msg)
{
    natsMsg *out[SK__REAPER_BATCH];
    size_t n_out = 0;

    if (msg == NULL) {
        return;
    }
    if (!r->has_mu) {
        natsMsg_Destroy(msg);
        return;
    }
    size_t size = (size_t)natsMsg_GetDataLength(msg);
    sk__msg_lock(&r->mu);
    if (r->n == 0) {
        r->first_ms = sk_time_mono_ms();
    }
    r->held[r->n++] = msg;
    r->bytes += size;
    if (r->n == SK__REAPER_BATCH || r->bytes >= SK__REAPER_MAX_BYTES) {
        n_out = take_held(r, out);
    }
    sk__msg_unlock(&r->mu);
    destroy_all(out, n_out);
}

/* Destroy the held messages when the first of them was held @p min_age_ms or longer. */
static void flush_held_for(sk__reaper *r, int64_t min_age_ms)
{
    natsMsg *out[SK__REAPER_BATCH];
    size_t n_out = 0;

    if (!r->has_mu) {
        return;
    }
    sk__msg_lock(&r->mu);
    if (r->n > 0 && sk_time_mono_ms() - r->first_ms >= min_age_ms) {
        n_out = take_held(r, out);
    }
    sk__msg_unlock(&r->mu);
    destroy_all(out, n_out);
}

void sk__reaper_flush(sk__reaper *r)
{
    flush_held_for(r, 0);
}

void sk__reaper_flush_stale(sk__reaper *r)
{
    flush_held_for(r, SK__REAPER_MAX_AGE_MS);
}

void sk__reaper_fini(sk__reaper *r)
{
    if (!r->has_mu) {
        return;
    }
    sk__reaper_flush(r);
    pthread_mutex_destroy(&r->mu);
    r->has_mu = false;
}
