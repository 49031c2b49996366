/* SPDX-License-Identifier: MIT */
/*
 * Which relay publishes a shared database's outbox (see msg_int.h). A
 * thread tries to bind the database's abstract socket name; once it holds
 * it, it turns every datagram from the other instances into a wake-up of
 * the relay. Binding is the whole protocol: the kernel keeps the name
 * unique and releases it with the process, so there is no lease to renew
 * and no clock to trust.
 */
#define _GNU_SOURCE /* realpath, abstract UNIX socket names */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "msg/msg_int.h"

struct sk__relay_owner {
    void (*on_wake)(void *ctx);
    void *ctx;
    struct sockaddr_un addr; /* the abstract name: sun_path[0] == '\0' */
    socklen_t addr_len;
    int send_fd; /* unbound, non-blocking: notifies the holder */
    pthread_t thread;
    bool has_thread;
    _Atomic bool is_holder;

    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool is_stopping;    /* mu */
};

/* FNV-1a: names the database; a collision only means two databases share one publisher turn. */
static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    }
    return h;
}

/* Wait up to @p ms for stop. @return true when stopping. */
static bool wait_stop(sk__relay_owner *o, int64_t ms)
{
    struct timespec ts;
    bool stop;

    sk_time_mono_deadline(ms, &ts);
    pthread_mutex_lock(&o->mu);
    while (!o->is_stopping) {
        if (pthread_cond_timedwait(&o->cond, &o->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    stop = o->is_stopping;
    pthread_mutex_unlock(&o->mu);
    return stop;
}

static bool is_stopping(sk__relay_owner *o)
{
    pthread_mutex_lock(&o->mu);
    bool stop = o->is_stopping;
    pthread_mutex_unlock(&o->mu);
    return stop;
}

/* Hold the name: wake the relay once, then on every datagram, until stop. */
static void serve(sk__relay_owner *o, int fd)
{
    char byte;

    atomic_store(&o->is_holder, true);
    o->on_wake(o->ctx);
    while (!is_stopping(o)) {
        ssize_t n = recv(fd, &byte, sizeof(byte), 0);
        if (n < 0 && errno != EINTR) {
            break; /* cannot happen on a bound datagram socket; give the name up */
        }
        if (!is_stopping(o)) {
            o->on_wake(o->ctx);
        }
    }
    atomic_store(&o->is_holder, false);
}

static void *owner_main(void *arg)
{
    sk__relay_owner *o = arg;
    bool logged = false;

    sk_thread_name("sk-relay-owner");
    do {
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && bind(fd, (const struct sockaddr *)&o->addr, o->addr_len) == 0) {
            if (logged) {
                SK_LOG_INFO("relay: this instance publishes the outbox now");
            }
            serve(o, fd);
            close(fd);
            break;
        }
        if (fd >= 0) {
            close(fd);
        }
        if (!logged) {
            SK_LOG_INFO("relay: another instance publishes this database's outbox; standing by");
            logged = true;
        }
    } while (!wait_stop(o, SK__RELAY_OWNER_RETRY_MS));
    return NULL;
}

sk_status sk__relay_owner_start(sk__relay_owner **out,
                                const char *db_location,
                                void (*on_wake)(void *ctx),
                                void *ctx)
{
    pthread_condattr_t ca;
    char real[PATH_MAX];
    sk__relay_owner *o;

    *out = NULL;
    o = sk_calloc(1, sizeof(*o));
    if (o == NULL) {
        return SK_FAIL(SK_ENOMEM, "relay: allocating the owner");
    }
    o->on_wake = on_wake;
    o->ctx = ctx;
    o->send_fd = -1;
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (db_location == NULL || realpath(db_location, real) == NULL) {
        /* Not a file (in-memory): nobody else can share it. */
        atomic_store(&o->is_holder, true);
        *out = o;
        return SK_OK;
    }
    o->addr.sun_family = AF_UNIX;
    /* sun_path[0] stays '\0': an abstract name, no file to clean up. */
    int n = snprintf(o->addr.sun_path + 1, sizeof(o->addr.sun_path) - 1, "skald-relay-%016llx",
                     (unsigned long long)hash_text(real));
    o->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    o->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (o->send_fd < 0) {
        sk__relay_owner_stop(o);
        return SK_FAIL(SK_EIO, "relay: creating a socket: %s", strerror(errno));
    }
    if (pthread_create(&o->thread, NULL, owner_main, o) != 0) {
        sk__relay_owner_stop(o);
        return SK_FAIL(SK_EINTERNAL, "relay: creating the owner thread");
    }
    o->has_thread = true;
    *out = o;
    return SK_OK;
}

bool sk__relay_owner_is_holder(sk__relay_owner *o)
{
    return atomic_load(&o->is_holder);
}

void sk__relay_owner_notify(sk__relay_owner *o)
{
    char byte = 1;

    if (o->send_fd >= 0) {
        /* No holder (ECONNREFUSED) or its queue is full (EAGAIN): it will look anyway. */
        (void)sendto(o->send_fd, &byte, sizeof(byte), MSG_DONTWAIT, (const struct sockaddr *)&o->addr,
                     o->addr_len);
    }
}

void sk__relay_owner_stop(sk__relay_owner *o)
{
    if (o == NULL) {
        return;
    }
    if (o->has_thread) {
        pthread_mutex_lock(&o->mu);
        o->is_stopping = true;
        pthread_cond_broadcast(&o->cond);
        pthread_mutex_unlock(&o->mu);
        /*
         * A holder sits in recv: a datagram to the name wakes it. (Sent to
         * another process's socket when that one holds the name: a harmless
         * extra wake there, and our thread is in its timed wait instead.)
         */
        while (atomic_load(&o->is_holder)) {
            sk__relay_owner_notify(o);
            struct timespec pause = { 0, 1000000 };
            nanosleep(&pause, NULL);
        }
        pthread_join(o->thread, NULL);
    }
    if (o->send_fd >= 0) {
        close(o->send_fd);
    }
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    sk_free(o);
}
