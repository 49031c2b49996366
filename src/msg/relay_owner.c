/* SPDX-License-Identifier: MIT */
/*
 * Which relay publishes a shared database's outbox (see msg_int.h).
 *
 * Ownership: an exclusive flock on "<database>-relay.lock", created beside
 * the database (mode 0600, so only who may write the database may take it).
 * The kernel releases the lock when the holder's process dies, so there is
 * no lease to renew and no clock to trust; standbys retry every
 * SK__RELAY_OWNER_RETRY_MS.
 *
 * Wake-ups: the holder also binds an abstract UNIX datagram socket named
 * after the lock file's path, and turns every datagram from the standbys into
 * a wake-up of its relay. That name is only a hint: should another process
 * hold it, the holder runs on its relay's idle poll instead (rows wait a few
 * hundred milliseconds longer), but ownership is never in doubt.
 */
#define _GNU_SOURCE /* abstract UNIX socket names */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "msg/msg_int.h"

struct sk__relay_owner {
    const sk_store *store;
    void (*on_wake)(void *ctx);
    void *ctx;
    char *lock_path;
    struct sockaddr_un addr; /* the wake-up name: sun_path[0] == '\0' (abstract) */
    socklen_t addr_len;
    int send_fd; /* unbound, non-blocking: notifies the holder */
    pthread_t thread;
    bool has_thread;
    _Atomic bool is_holder;

    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool is_stopping;    /* mu */
};

static int wake_name(const char *lock_path, char *out, size_t cap)
{
    return snprintf(out, cap, "skald-relay-%016llx", (unsigned long long)sk_hash_text(lock_path));
}

int sk__relay_owner_wake_name(const sk_store *store, char *out, size_t cap)
{
    char *lock_path = NULL;
    int n = sk_store_lock_path(store, "relay", &lock_path) == SK_OK && lock_path != NULL
                ? wake_name(lock_path, out, cap)
                : -1;

    sk_free(lock_path);
    return n;
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

/* The lock file's descriptor once this process holds it, else -1. */
static int try_lock(const sk__relay_owner *o)
{
    int fd = -1;

    if (sk_store_lock_try(o->store, "relay", &fd) != SK_OK) {
        sk_error_clear(); /* held elsewhere (or not openable now): try again later */
        return -1;
    }
    return fd;
}

/* Hold the lock: wake the relay once, then on every datagram, until stop. */
static void serve(sk__relay_owner *o)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    char byte;

    if (fd >= 0 && bind(fd, (const struct sockaddr *)&o->addr, o->addr_len) != 0) {
        SK_LOG_WARN("relay: the wake-up name of %s is taken by another process: other instances' "
                    "rows wait for this relay's idle poll",
                    o->lock_path);
        close(fd);
        fd = -1;
    }
    atomic_store(&o->is_holder, true);
    o->on_wake(o->ctx);
    while (fd >= 0 && !is_stopping(o)) {
        ssize_t n = recv(fd, &byte, sizeof(byte), 0);
        if (n < 0 && errno != EINTR) {
            close(fd); /* cannot happen on a bound datagram socket; the relay still polls */
            fd = -1;
            break;
        }
        if (!is_stopping(o)) {
            o->on_wake(o->ctx);
        }
    }
    if (fd >= 0) {
        close(fd); /* before the lock goes: the next holder binds the name */
    }
    /* Without a socket, keep the lock until stop: the relay finds rows by its idle poll. */
    while (!wait_stop(o, 60 * 1000)) {
    }
    atomic_store(&o->is_holder, false);
}

static void *owner_main(void *arg)
{
    sk__relay_owner *o = arg;
    bool logged = false;

    sk_thread_name("sk-relay-owner");
    do {
        int lock_fd = try_lock(o);
        if (lock_fd >= 0) {
            if (logged) {
                SK_LOG_INFO("relay: this instance publishes the outbox now");
            }
            serve(o);
            close(lock_fd); /* releases the lock */
            break;
        }
        if (!logged) {
            SK_LOG_INFO("relay: another instance publishes this database's outbox; standing by");
            logged = true;
        }
    } while (!wait_stop(o, SK__RELAY_OWNER_RETRY_MS));
    return NULL;
}

sk_status sk__relay_owner_start(sk__relay_owner **out,
                                const sk_store *store,
                                void (*on_wake)(void *ctx),
                                void *ctx)
{
    pthread_condattr_t ca;
    sk__relay_owner *o;

    *out = NULL;
    o = sk_calloc(1, sizeof(*o));
    if (o == NULL) {
        return SK_FAIL(SK_ENOMEM, "relay: allocating the owner");
    }
    o->store = store;
    o->on_wake = on_wake;
    o->ctx = ctx;
    o->send_fd = -1;
    pthread_mutex_init(&o->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&o->cond, &ca);
    pthread_condattr_destroy(&ca);
    sk_status st = sk_store_lock_path(store, "relay", &o->lock_path);
    if (st != SK_OK) {
        sk__relay_owner_stop(o);
        return SK_WRAP(st, "relay");
    }
    if (o->lock_path == NULL) {
        /* In memory: nobody else can share it. */
        atomic_store(&o->is_holder, true);
        *out = o;
        return SK_OK;
    }
    o->addr.sun_family = AF_UNIX;
    /* sun_path[0] stays '\0': an abstract name, no file to clean up. */
    int n = wake_name(o->lock_path, o->addr.sun_path + 1, sizeof(o->addr.sun_path) - 1);
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
         * extra wake there, and our thread is in a timed wait instead.)
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
    sk_free(o->lock_path);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->mu);
    sk_free(o);
}
