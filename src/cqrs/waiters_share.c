/* SPDX-License-Identifier: MIT */
/*
 * Consistency waiters shared by the processes that read one database (the
 * instances of a service whose read model one of them projects): a notify
 * in one process reaches the waiters of the others.
 *
 * Each sharing process binds the first free slot among
 * SK__WAITERS_SHARE_SLOTS abstract UNIX datagram names derived from the
 * key. A notify only appends a consistency token to an outgoing buffer; a
 * sender thread sends what has gathered, as datagrams of newline-separated
 * tokens, to the other slots that are bound (a refused send marks a slot
 * free for a second before it is tried again). A burst of notifies (the
 * after-commit hooks of one group commit) thus costs one datagram per peer,
 * which matters because Linux queues only a few datagrams per receiving
 * socket (net.unix.max_dgram_qlen, 10 by default); while a peer's queue is
 * full the sender waits up to SEND_WAIT_MS, and the tokens gathering
 * meanwhile go out together. Each token is decoded and checked on receipt
 * like any token from outside. What is still lost (a hung peer, a full
 * buffer) the waiters' periodic re-check finds.
 */
#define _GNU_SOURCE /* abstract UNIX socket names */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cqrs/cqrs_int.h"

#define RETRY_FREE_SLOT_MS 1000
#define SEND_WAIT_MS       50
/* Largest datagram sent or received: hundreds of tokens (each at most SK_CTOKEN_MAX bytes). */
#define DATAGRAM_MAX (32 * 1024)
/* Tokens gathered while the sender thread is busy; past it notifies are dropped (and re-checked).
 */
#define OUTGOING_MAX (256 * 1024)

struct sk__waiters_share {
    sk__waiters_deliver_fn deliver;
    void *ctx;
    struct sockaddr_un addr[SK__WAITERS_SHARE_SLOTS];
    socklen_t addr_len[SK__WAITERS_SHARE_SLOTS];
    int64_t retry_after_ms[SK__WAITERS_SHARE_SLOTS]; /* sender thread: a refused slot's next try */
    int self;                                        /* the slot this process bound */
    int recv_fd;                                     /* bound to addr[self] */
    int send_fd;                                     /* unbound; sends wait SEND_WAIT_MS at most */
    pthread_t receiver;
    pthread_t sender;
    bool has_receiver;
    bool has_sender;
    atomic_bool is_stopping;

    pthread_mutex_t mu;
    pthread_cond_t cond;     /* wakes the sender: tokens gathered, or stop */
    char *outgoing;          /* mu: OUTGOING_MAX bytes of "token\n" */
    size_t n_outgoing;       /* mu */
    char *sending;           /* the sender thread's: the buffer it took, swapped with outgoing */
    bool is_sender_stopping; /* mu */
};

int sk__waiters_share_name(const char *key, int slot, char *out, size_t cap)
{
    return snprintf(out, cap, "skald-waiters-%016llx-%d", (unsigned long long)sk_hash_text(key),
                    slot);
}

/* Every token of one datagram; anything on this machine may send here, so only well-formed ones
 * count. */
static void deliver_datagram(sk__waiters_share *s, const char *buf, size_t len)
{
    char id[SK_CTOKEN_MAX];

    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - buf) : len;
        sk_slice token = { (const uint8_t *)buf, n };
        int64_t version = 0;

        if (sk_ctoken_decode(token, id, sizeof(id), &version) == SK_OK) {
            s->deliver(s->ctx, id, version);
        } else {
            sk_error_clear();
        }
        buf += n;
        len -= n;
        if (len > 0) { /* the newline */
            buf++;
            len--;
        }
    }
}

static void *receive_main(void *arg)
{
    sk__waiters_share *s = arg;
    char *buf = sk_malloc(DATAGRAM_MAX);

    sk_thread_name("sk-waiters-peer");
    while (buf != NULL && !atomic_load(&s->is_stopping)) {
        ssize_t n = recv(s->recv_fd, buf, DATAGRAM_MAX, 0);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            SK_LOG_WARN("consistency waiters: receiving from peers: %s", strerror(errno));
            break;
        }
        deliver_datagram(s, buf, (size_t)n);
    }
    if (buf == NULL) {
        SK_LOG_WARN("consistency waiters: no memory for the peers' datagrams; queries here wait "
                    "for the periodic re-check");
    }
    sk_free(buf);
    return NULL;
}

/* One datagram to every other slot that is bound. Sender thread. */
static void send_to_peers(sk__waiters_share *s, const char *data, size_t len)
{
    int64_t now = sk_time_mono_ms();

    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS; i++) {
        if (i == s->self || now < s->retry_after_ms[i]) {
            continue;
        }
        /* Waits up to SEND_WAIT_MS while the peer's queue is full (notifies gather meanwhile). */
        if (sendto(s->send_fd, data, len, 0, (const struct sockaddr *)&s->addr[i],
                   s->addr_len[i]) >= 0) {
            s->retry_after_ms[i] = 0;
        } else if (errno == ECONNREFUSED || errno == ENOENT) {
            s->retry_after_ms[i] = now + RETRY_FREE_SLOT_MS;
        }
        /* EAGAIN (still full: a hung peer): its waiters' re-check finds the versions. */
    }
}

static void *send_main(void *arg)
{
    sk__waiters_share *s = arg;

    sk_thread_name("sk-waiters-send");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->n_outgoing == 0 && !s->is_sender_stopping) {
            pthread_cond_wait(&s->cond, &s->mu);
        }
        if (s->is_sender_stopping) {
            break;
        }
        char *batch = s->outgoing;
        size_t len = s->n_outgoing;
        s->outgoing = s->sending;
        s->sending = batch;
        s->n_outgoing = 0;
        pthread_mutex_unlock(&s->mu);
        /* Datagrams of whole tokens, each at most DATAGRAM_MAX bytes. */
        for (size_t at = 0; at < len;) {
            size_t n = len - at;
            if (n > DATAGRAM_MAX) {
                n = DATAGRAM_MAX;
                while (n > 0 && batch[at + n - 1] != '\n') {
                    n--;
                }
            }
            send_to_peers(s, batch + at, n);
            at += n;
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
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
    s->send_fd = -1;
    atomic_init(&s->is_stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS; i++) {
        s->addr[i].sun_family = AF_UNIX;
        /* sun_path[0] stays '\0': an abstract name, nothing to clean up. */
        int n = sk__waiters_share_name(key, i, s->addr[i].sun_path + 1,
                                       sizeof(s->addr[i].sun_path) - 1);
        s->addr_len[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    }
    s->outgoing = sk_malloc(OUTGOING_MAX);
    s->sending = sk_malloc(OUTGOING_MAX);
    if (s->outgoing == NULL || s->sending == NULL) {
        sk__waiters_share_stop(s);
        return SK_FAIL(SK_ENOMEM, "consistency waiters: allocating the outgoing buffer");
    }
    s->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    s->recv_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct timeval send_wait = { .tv_sec = 0, .tv_usec = SEND_WAIT_MS * 1000 };
    if (s->send_fd < 0 || s->recv_fd < 0 ||
        setsockopt(s->send_fd, SOL_SOCKET, SO_SNDTIMEO, &send_wait, sizeof(send_wait)) != 0) {
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
    s->has_receiver = pthread_create(&s->receiver, NULL, receive_main, s) == 0;
    s->has_sender = s->has_receiver && pthread_create(&s->sender, NULL, send_main, s) == 0;
    if (!s->has_sender) {
        sk__waiters_share_stop(s);
        return SK_FAIL(SK_EINTERNAL, "consistency waiters: creating the peer threads");
    }
    *out = s;
    return SK_OK;
}

void sk__waiters_share_send(sk__waiters_share *s, const char *id, int64_t version)
{
    char token[SK_CTOKEN_MAX];

    if (s == NULL) {
        return; /* not shared */
    }
    if (sk_ctoken_encode(id, version, token) != SK_OK) {
        sk_error_clear();
        return;
    }
    size_t len = strlen(token);
    pthread_mutex_lock(&s->mu);
    /* Full (the sender cannot keep up): dropped; the peers' re-check finds the version. */
    if (s->n_outgoing + len + 1 <= OUTGOING_MAX) {
        bool was_empty = s->n_outgoing == 0;
        memcpy(s->outgoing + s->n_outgoing, token, len);
        s->outgoing[s->n_outgoing + len] = '\n';
        s->n_outgoing += len + 1;
        if (was_empty) {
            pthread_cond_signal(&s->cond);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void sk__waiters_share_stop(sk__waiters_share *s)
{
    if (s == NULL) {
        return;
    }
    if (s->has_sender) {
        pthread_mutex_lock(&s->mu);
        s->is_sender_stopping = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->sender, NULL);
    }
    if (s->has_receiver) {
        atomic_store(&s->is_stopping, true);
        /* Wakes the receiver: shutdown ends a blocked recv on a datagram socket (returns 0). */
        shutdown(s->recv_fd, SHUT_RDWR);
        pthread_join(s->receiver, NULL);
    }
    if (s->recv_fd >= 0) {
        close(s->recv_fd);
    }
    if (s->send_fd >= 0) {
        close(s->send_fd);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    sk_free(s->outgoing);
    sk_free(s->sending);
    sk_free(s);
}
