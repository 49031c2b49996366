/* SPDX-License-Identifier: MIT */
/*
 * Load balancer: picks one host among the usable ones. ROUND_ROBIN walks a
 * cursor, LEAST_REQUEST is Envoy's power of two choices over in-flight
 * request counts, RANDOM draws one. Pure: the caller passes the host view,
 * the cursor and the random source, and serializes calls.
 */
#include "mesh/mesh_int.h"

#include <pthread.h>

int64_t sk__mesh_clock_default(void *ctx)
{
    (void)ctx;
    return sk_time_mono_ms();
}

static _Thread_local uint64_t rand_state;

uint64_t sk__mesh_rand_default(void *ctx)
{
    uint64_t x;

    (void)ctx;
    if (rand_state == 0) {
        /* Seed once per thread; on failure fall back to the clock, good enough for balancing. */
        if (sk_random_bytes(&rand_state, sizeof(rand_state)) != SK_OK || rand_state == 0) {
            rand_state = (uint64_t)sk_time_mono_ns() | 1u;
        }
    }
    /* xorshift64* */
    x = rand_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rand_state = x;
    return x * UINT64_C(2685821657736338717);
}

/* The k-th usable host (0-based). */
static size_t nth_usable(const bool *is_usable, size_t n, size_t k)
{
    for (size_t i = 0; i < n; i++) {
        if (is_usable[i]) {
            if (k == 0) {
                return i;
            }
            k--;
        }
    }
    return SIZE_MAX;
}

size_t sk__lb_pick(sk__lb_kind kind,
                   uint64_t *cursor,
                   const bool *is_usable,
                   const uint32_t *active,
                   size_t n,
                   sk__rand_fn rnd,
                   void *rnd_ctx)
{
    size_t m = 0;

    if (is_usable == NULL || n == 0) {
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        m += is_usable[i] ? 1u : 0u;
    }
    if (m == 0) {
        return SIZE_MAX;
    }
    if (rnd == NULL) {
        rnd = sk__mesh_rand_default;
    }
    switch (kind) {
    case SK__LB_ROUND_ROBIN: {
        uint64_t start = cursor != NULL ? (*cursor)++ : 0;
        for (size_t k = 0; k < n; k++) {
            size_t i = (size_t)((start + k) % n);
            if (is_usable[i]) {
                return i;
            }
        }
        return SIZE_MAX;
    }
    case SK__LB_RANDOM:
        return nth_usable(is_usable, n, (size_t)(rnd(rnd_ctx) % m));
    case SK__LB_LEAST_REQUEST:
    default: {
        size_t a = nth_usable(is_usable, n, (size_t)(rnd(rnd_ctx) % m));
        size_t b = nth_usable(is_usable, n, (size_t)(rnd(rnd_ctx) % m));
        if (active == NULL) {
            return a;
        }
        return active[b] < active[a] ? b : a;
    }
    }
}
