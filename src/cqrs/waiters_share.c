/* SPDX-License-Identifier: MIT */
/*
 * Consistency waiters shared by the processes that read one database (the
 * instances of a service whose read model one of them projects): a notify
 * in one process reaches the waiters of the others.
 *
 * Each sharing process binds the first free slot among
 * SK__WAITERS_SHARE_SLOTS abstract UNIX datagram names derived from the
 * key, and sends every notify to the other slots that are bound: a send
 * that is refused marks the slot free for a second before it is tried
 * again. A datagram is one consistency token, decoded and checked on
 * receipt like any token from outside. One lost to a full queue only makes
 * that query wait for its deadline.
 */
#define _GNU_SOURCE /* abstract UNIX socket names */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cqrs/cqrs_int.h"

#define RETRY_FREE_SLOT_MS 1000

struct sk__waiters_share {
    sk__waiters_deliver_fn deliver;
    void *ctx;
    struct sockaddr_un addr[SK__WAITERS_SHARE_SLOTS];
    socklen_t addr_len[SK__WAITERS_SHARE_SLOTS];
    _Atomic int64_t retry_after_ms[SK__WAITERS_SHARE_SLOTS]; /* a refused slot: when to try again */
    int self;    /* the slot this process bound, or -1 */
    int recv_fd; /* bound to addr[self] */
    int send_fd; /* unbound, non-blocking */
    pthread_t thread;
    bool has_thread;
    atomic_bool is_stopping;
};

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    }
    return h;
}

int sk__waiters_share_name(const char *key, int slot, char *out, size_t cap)
{
    return snprintf(out, cap, "skald-waiters-%016llx-%d", (unsigned long long)hash_text(key), slot);
}

static void *receive_main(void *arg)
{
    sk__waiters_share *s = arg;
    char buf[SK_CTOKEN_MAX + 1];
    char id[SK_CTOKEN_MAX];

    sk_thread_name("sk-waiters-peer");
    while (!atomic_load(&s->is_stopping)) {
        ssize_t n = recv(s->recv_fd, buf, sizeof(buf) - 1, 0);
        int64_t version = 0;

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            SK_LOG_WARN("consistency waiters: receiving from peers: %s", strerror(errno));
            break;
        }
        /* Anything on this machine may send here: only a well-formed token counts. */
        sk_slice token = { (const uint8_t *)buf, n > 0 ? (size_t)n : 0 };
        if (sk_ctoken_decode(token, id, sizeof(id), &version) == SK_OK) {
            s->deliver(s->ctx, id, version);
        } else {
            sk_error_clear();
        }
    }
    return NULL;
}

sk_status sk__waiters_share_start(sk__waiters_share **out,
                                  const char *key,
                                  sk__waiters_deliver_fn deliver,
                                  void *ctx)
{
    sk__waiters_share *s = sk_calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL) {
        return SK_FAIL(SK_ENOMEM, "consistency waiters: allocating the peer link");
    }
    s->deliver = deliver;
    s->ctx = ctx;
    s->self = -1;
    s->recv_fd = -1;
    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS; i++) {
        s->addr[i].sun_family = AF_UNIX;
        /* sun_path[0] stays '\0': an abstract name, nothing to clean up. */
        int n = sk__waiters_share_name(key, i, s->addr[i].sun_path + 1,
                                       sizeof(s->addr[i].sun_path) - 1);
        s->addr_len[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        atomic_init(&s->retry_after_ms[i], 0);
    }
    atomic_init(&s->is_stopping, false);
    s->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    s->recv_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s->send_fd < 0 || s->recv_fd < 0) {
        sk_status st =
            SK_FAIL(SK_EIO, "consistency waiters: creating a socket: %s", strerror(errno));
        sk__waiters_share_stop(s);
        return st;
    }
    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS && s->self < 0; i++) {
        if (bind(s->recv_fd, (const struct sockaddr *)&s->addr[i], s->addr_len[i]) == 0) {
            s->self = i;
        }
    }
    if (s->self < 0) {
        sk__waiters_share_stop(s);
        return SK_FAIL(SK_ELIMIT, "consistency waiters: all %d peer slots of \"%s\" are taken",
                       SK__WAITERS_SHARE_SLOTS, key);
    }
    if (pthread_create(&s->thread, NULL, receive_main, s) != 0) {
        sk__waiters_share_stop(s);
        return SK_FAIL(SK_EINTERNAL, "consistency waiters: creating the peer thread");
    }
    s->has_thread = true;
    *out = s;
    return SK_OK;
}

void sk__waiters_share_send(sk__waiters_share *s, const char *id, int64_t version)
{
    char token[SK_CTOKEN_MAX];
    int64_t now = 0;

    if (s == NULL || sk_ctoken_encode(id, version, token) != SK_OK) {
        sk_error_clear();
        return;
    }
    size_t len = strlen(token);
    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS; i++) {
        if (i == s->self) {
            continue;
        }
        int64_t retry = atomic_load_explicit(&s->retry_after_ms[i], memory_order_relaxed);
        if (retry != 0) {
            now = now != 0 ? now : sk_time_mono_ms();
            if (now < retry) {
                continue;
            }
        }
        if (sendto(s->send_fd, token, len, MSG_DONTWAIT, (const struct sockaddr *)&s->addr[i],
                   s->addr_len[i]) >= 0) {
            if (retry != 0) {
                atomic_store_explicit(&s->retry_after_ms[i], 0, memory_order_relaxed);
            }
        } else if (errno == ECONNREFUSED || errno == ENOENT) {
            now = now != 0 ? now : sk_time_mono_ms();
            atomic_store_explicit(&s->retry_after_ms[i], now + RETRY_FREE_SLOT_MS,
                                  memory_order_relaxed);
        }
        /* EAGAIN (the peer's queue is full): that waiter meets its deadline instead. */
    }
}

void sk__waiters_share_stop(sk__waiters_share *s)
{
    if (s == NULL) {
        return;
    }
    if (s->has_thread) {
        atomic_store(&s->is_stopping, true);
        /* Wake the receiver: shutdown ends a blocked recv on a datagram socket. */
        shutdown(s->recv_fd, SHUT_RDWR);
        pthread_join(s->thread, NULL);
    }
    if (s->recv_fd >= 0) {
        close(s->recv_fd);
    }
    if (s->send_fd >= 0) {
        close(s->send_fd);
    }
    sk_free(s);
}
