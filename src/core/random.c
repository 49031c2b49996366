/* SPDX-License-Identifier: MIT */
/*
 * Cryptographically secure random bytes from the kernel (getrandom(2)).
 *
 * Small requests (ids, trace ids: several per request and per message) are
 * served from a per-thread buffer refilled 256 bytes at a time: one system
 * call instead of one per id, which a profile of the shop showed at ~45 per
 * order. Bytes handed out are wiped from the buffer, and a fork discards
 * every thread's buffer (the child must never repeat the parent's bytes).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

#include "core/core_int.h"

#define POOL_BYTES 256
/* Larger requests go straight to the kernel. */
#define POOL_MAX_REQUEST 64

typedef struct pool {
    uint8_t bytes[POOL_BYTES];
    size_t used;         /* bytes[0 .. used) are gone */
    unsigned generation; /* of fork_generation when filled */
} pool;

static _Thread_local pool thread_pool = { .used = POOL_BYTES };
static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void atfork_register(void)
{
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

static sk_status kernel_bytes(uint8_t *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return SK_FAIL(SK_EIO, "getrandom: %s", strerror(errno));
        }
        done += (size_t)n;
    }
    return SK_OK;
}

sk_status sk_random_bytes(void *out, size_t len)
{
    pool *p = &thread_pool;
    unsigned gen;

    if (out == NULL && len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_random_bytes: out must not be NULL when len > 0");
    }
    if (len == 0) {
        return SK_OK;
    }
    if (len > POOL_MAX_REQUEST) {
        return kernel_bytes(out, len);
    }
    pthread_once(&atfork_once, atfork_register);
    gen = atomic_load(&fork_generation);
    if (p->generation != gen || POOL_BYTES - p->used < len) {
        sk_status st = kernel_bytes(p->bytes, POOL_BYTES);
        if (st != SK_OK) {
            return st;
        }
        p->used = 0;
        p->generation = gen;
    }
    memcpy(out, p->bytes + p->used, len);
    memset(p->bytes + p->used, 0, len);
    p->used += len;
    return SK_OK;
}
