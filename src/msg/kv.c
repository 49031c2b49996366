/* SPDX-License-Identifier: MIT */
/*
 * A JetStream key-value bucket (nats.c kvStore) and a watcher thread.
 * Entries that expire by the bucket TTL produce no watch event: a watcher
 * sees puts and deletes only, so users that care about expiry (discovery)
 * track it themselves.
 */
#include <string.h>
#include <time.h>

#include "msg/msg_int.h"

/* How long one kvWatcher_Next waits; bounds sk_kv_watch_stop. */
#define WATCH_POLL_MS 250
/* Longest key accepted. */
#define MAX_KEY_LEN 255

/*
 * Operations use kv->kv under the read lock; moving to the bus's current
 * connection after a certificate reload swaps link and kv under the write
 * lock. Lock order: kv->lock, then the bus's.
 */
struct sk_kv {
    sk_bus *bus;
    char *name;
    pthread_rwlock_t lock;
    bool has_lock;
    sk__bus_link *link; /* lock: the connection kv lives on */
    kvStore *kv;        /* lock */
    _Atomic int64_t last_warn_ms; /* rate limit of the "moving" warning */
};

struct sk_kv_watch {
    sk_kv *kv;
    sk__bus_link *link; /* watch thread (and start/stop): the connection w lives on */
    char *pattern;
    pthread_mutex_t mu; /* guards swapping w against sk_kv_watch_stop waking it */
    bool has_mu;
    kvWatcher *w;
    sk_kv_watch_fn fn;
    void *ctx;
    pthread_t thread;
    bool has_thread;
    _Atomic bool is_stopping;
};

/* Keys: 1..255 of [-/_=.a-zA-Z0-9], not starting or ending with '.'. */
static sk_status key_check(const char *key, const char *fn)
{
    size_t len;

    if (key == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: key must not be NULL", fn);
    }
    len = strnlen(key, MAX_KEY_LEN + 1);
    if (len == 0 || len > MAX_KEY_LEN || key[0] == '.' || key[len - 1] == '.') {
        return SK_FAIL(SK_EINVAL, "%s: key: expected 1..%d characters, not starting or ending "
                                  "with '.'",
                       fn, MAX_KEY_LEN);
    }
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '/' || c == '_' || c == '=' || c == '.')) {
            return SK_FAIL(SK_EINVAL, "%s: key: invalid character 0x%02x at offset %zu", fn,
                           (unsigned)(unsigned char)c, i);
        }
    }
    return SK_OK;
}

/*
 * Open bucket kv->name on @p link, creating it (with @p ttl_ms; < 0: never
 * create) when it is missing.
 */
static sk_status kv_bind(sk_kv *kv, sk__bus_link *link, int64_t ttl_ms, kvStore **out)
{
    natsStatus s = js_KeyValue(out, link->js, kv->name);

    if (s == NATS_NOT_FOUND && ttl_ms >= 0) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = kv->name;
        kc.History = 1;
        kc.TTL = ttl_ms * 1000000; /* nanoseconds */
        kc.StorageType = js_FileStorage;
        kc.Replicas = sk__bus_replicas(kv->bus);
        s = js_CreateKeyValue(out, link->js, &kc);
        if (s != NATS_OK) {
            *out = NULL;
            return sk__nats_fail(s, 0, "creating key-value bucket");
        }
        return SK_OK;
    }
    if (s != NATS_OK) {
        *out = NULL;
        return sk__nats_fail(s, 0, "opening key-value bucket");
    }
    return SK_OK;
}

/*
 * Take the read lock on a kv bound to the bus's current connection, moving
 * it there first when a certificate reload replaced the connection (if that
 * fails the old binding is used and the move is tried again next time).
 */
static void kv_read_lock(sk_kv *kv)
{
    pthread_rwlock_rdlock(&kv->lock);
    if (sk__bus_link_is_current(kv->bus, kv->link)) {
        return;
    }
    pthread_rwlock_unlock(&kv->lock);
    pthread_rwlock_wrlock(&kv->lock);
    sk__bus_link *done = NULL; /* released once the lock is let go: its close may take a while */
    if (!sk__bus_link_is_current(kv->bus, kv->link)) {
        sk__bus_link *fresh = sk__bus_link_acquire(kv->bus);
        kvStore *store = NULL;
        if (kv_bind(kv, fresh, -1, &store) == SK_OK) {
            kvStore_Destroy(kv->kv);
            done = kv->link;
            kv->kv = store;
            kv->link = fresh;
        } else {
            int64_t now = sk_time_mono_ms(), last = atomic_load(&kv->last_warn_ms);
            if (last == 0 || now - last >= 5000) {
                atomic_store(&kv->last_warn_ms, now);
                SK_LOG_WARN("kv %s: moving to the new connection: %s (retrying)", kv->name,
                            sk_error_message());
            }
            done = fresh;
        }
    }
    pthread_rwlock_unlock(&kv->lock);
    sk__bus_link_release(done);
    pthread_rwlock_rdlock(&kv->lock);
}

sk_status sk_kv_open(sk_kv **out, sk_bus *bus, const char *name, int64_t ttl_ms)
{
    sk_status st = SK_OK;
    sk_kv *kv = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: bus must not be NULL");
    }
    if (!sk_name_is_valid(name, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: name: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (ttl_ms < 0 || ttl_ms > INT64_MAX / 1000000) {
        return SK_FAIL(SK_EINVAL, "sk_kv_open: ttl_ms: expected 0 (no expiry) or a positive "
                                  "number of milliseconds");
    }
    kv = sk_calloc(1, sizeof(*kv));
    if (kv == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_kv_open: allocating");
    }
    kv->bus = bus;
    kv->name = sk_strdup(name);
    if (kv->name == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_kv_open: copying the name");
        goto out;
    }
    if (pthread_rwlock_init(&kv->lock, NULL) != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_kv_open: creating a lock");
        goto out;
    }
    kv->has_lock = true;
    kv->link = sk__bus_link_acquire(bus);
    if ((st = kv_bind(kv, kv->link, ttl_ms, &kv->kv)) != SK_OK) {
        st = SK_WRAP(st, "sk_kv_open: %s", name);
        goto out;
    }
    *out = kv;
    kv = NULL;
out:
    sk_kv_close(kv);
    return st;
}

void sk_kv_close(sk_kv *kv)
{
    if (kv == NULL) {
        return;
    }
    kvStore_Destroy(kv->kv);
    sk__bus_link_release(kv->link);
    if (kv->has_lock) {
        pthread_rwlock_destroy(&kv->lock);
    }
    sk_free(kv->name);
    sk_free(kv);
}

sk_status sk_kv_put(sk_kv *kv, const char *key, sk_slice value)
{
    sk_status st;
    natsStatus s;

    if (kv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_put: kv must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_put")) != SK_OK) {
        return st;
    }
    if (value.ptr == NULL && value.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_kv_put: value.ptr must not be NULL");
    }
    if (value.len > SK_MAX_MSG_PAYLOAD) {
        return SK_FAIL(SK_ELIMIT, "sk_kv_put: value of %zu bytes is over %u bytes", value.len,
                       SK_MAX_MSG_PAYLOAD);
    }
    kv_read_lock(kv);
    s = kvStore_Put(NULL, kv->kv, key, value.ptr, (int)value.len);
    pthread_rwlock_unlock(&kv->lock);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv put");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    return SK_OK;
}

sk_status sk_kv_delete(sk_kv *kv, const char *key)
{
    sk_status st;
    natsStatus s;

    if (kv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_delete: kv must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_delete")) != SK_OK) {
        return st;
    }
    kv_read_lock(kv);
    s = kvStore_Delete(kv->kv, key);
    pthread_rwlock_unlock(&kv->lock);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv delete");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    return SK_OK;
}

sk_status sk_kv_get(sk_kv *kv, const char *key, char **out, size_t *len)
{
    kvEntry *e = NULL;
    sk_status st = SK_OK;
    natsStatus s;

    if (out != NULL) {
        *out = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (kv == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_get: kv and out must not be NULL");
    }
    if ((st = key_check(key, "sk_kv_get")) != SK_OK) {
        return st;
    }
    kv_read_lock(kv);
    s = kvStore_Get(&e, kv->kv, key);
    pthread_rwlock_unlock(&kv->lock);
    if (s == NATS_NOT_FOUND) {
        return SK_FAIL(SK_ENOTFOUND, "sk_kv_get: %s/%s: no such key", kv->name, key);
    }
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "kv get");
        return SK_WRAP(st, "%s/%s", kv->name, key);
    }
    {
        int n = kvEntry_ValueLen(e);
        size_t vlen = n > 0 ? (size_t)n : 0;
        char *copy = sk_malloc(vlen + 1);
        if (copy == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_kv_get: copying the value");
        } else {
            if (vlen > 0) {
                memcpy(copy, kvEntry_Value(e), vlen);
            }
            copy[vlen] = '\0';
            *out = copy;
            if (len != NULL) {
                *len = vlen;
            }
        }
    }
    kvEntry_Destroy(e);
    return st;
}

/* ---------------------------------------------------------------- watch */

/* Start a watcher on the kv's connection (moving the kv first when it is stale). */
static sk_status watch_bind(sk_kv_watch *w)
{
    natsStatus s;

    kvWatcher *watcher = NULL;

    kv_read_lock(w->kv);
    s = kvStore_Watch(&watcher, w->kv->kv, w->pattern, NULL);
    if (s == NATS_OK) {
        w->link = w->kv->link;
        sk__bus_link_retain(w->link);
        pthread_mutex_lock(&w->mu);
        w->w = watcher;
        pthread_mutex_unlock(&w->mu);
    }
    pthread_rwlock_unlock(&w->kv->lock);
    if (s != NATS_OK) {
        return sk__nats_fail(s, 0, "kv watch");
    }
    return SK_OK;
}

static void watch_unbind(sk_kv_watch *w)
{
    kvWatcher *watcher;

    pthread_mutex_lock(&w->mu);
    watcher = w->w;
    w->w = NULL;
    pthread_mutex_unlock(&w->mu);
    if (watcher != NULL) {
        SK_IGNORE(kvWatcher_Stop(watcher)); /* failure means already stopped */
        kvWatcher_Destroy(watcher);
    }
    sk__bus_link_release(w->link);
    w->link = NULL;
}

/*
 * Move to the bus's current connection after a certificate reload. The new
 * watcher delivers every current entry again, which users see as puts of
 * the values they already have.
 */
static bool watch_move(sk_kv_watch *w)
{
    if (w->w != NULL) {
        /* Only once the kv handle itself has moved: else this would bind to the old link again. */
        kv_read_lock(w->kv);
        bool kv_moved = w->kv->link != w->link;
        pthread_rwlock_unlock(&w->kv->lock);
        if (!kv_moved) {
            return false;
        }
    }
    watch_unbind(w);
    if (watch_bind(w) != SK_OK) {
        SK_LOG_WARN("kv watch %s: moving to the new connection: %s (retrying)", w->kv->name,
                    sk_error_message());
        return false;
    }
    return true;
}

static void *watch_main(void *arg)
{
    sk_kv_watch *w = arg;
    int64_t last_log = 0;

    sk_thread_name("sk-kv-watch");
    while (!atomic_load(&w->is_stopping)) {
        kvEntry *e = NULL;
        natsStatus s;

        /* A watcher that cannot move yet keeps reading the old connection meanwhile. */
        if ((w->w == NULL || !sk__bus_link_is_current(w->kv->bus, w->link)) && !watch_move(w) &&
            w->w == NULL) {
            struct timespec ts = { 0, WATCH_POLL_MS * 1000 * 1000 };
            nanosleep(&ts, NULL); /* retry pace; stop waits at most this long */
            continue;
        }
        s = kvWatcher_Next(&e, w->w, WATCH_POLL_MS);

        if (s == NATS_TIMEOUT) {
            continue;
        }
        if (s != NATS_OK) {
            int64_t now = sk_time_mono_ms();
            if (atomic_load(&w->is_stopping)) {
                break;
            }
            if (sk__log_is_due(&last_log, now)) {
                SK_LOG_WARN("kv watch %s: %s", w->kv->name, natsStatus_GetText(s));
            }
            if (s == NATS_ILLEGAL_STATE || s == NATS_INVALID_SUBSCRIPTION) {
                break; /* the watcher is gone; nothing more will come */
            }
            continue;
        }
        if (e == NULL) {
            continue; /* marks the end of the initial values */
        }
        {
            kvOperation op = kvEntry_Operation(e);
            int n = kvEntry_ValueLen(e);
            sk_slice v = { (const uint8_t *)kvEntry_Value(e), n > 0 ? (size_t)n : 0 };
            if (v.ptr == NULL) {
                v.ptr = (const uint8_t *)"";
            }
            w->fn(kvEntry_Key(e), v, op == kvOp_Delete || op == kvOp_Purge, w->ctx);
        }
        kvEntry_Destroy(e);
    }
    return NULL;
}

sk_status sk_kv_watch_start(sk_kv_watch **out, sk_kv *kv, const char *pattern, sk_kv_watch_fn fn, void *ctx)
{
    sk_kv_watch *w = NULL;
    sk_status st = SK_OK;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_watch_start: out must not be NULL");
    }
    *out = NULL;
    if (kv == NULL || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_kv_watch_start: kv and fn must not be NULL");
    }
    if ((st = sk__subject_check(pattern, true, "sk_kv_watch_start: pattern")) != SK_OK) {
        return st;
    }
    w = sk_calloc(1, sizeof(*w));
    if (w == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_kv_watch_start: allocating");
    }
    w->kv = kv;
    w->fn = fn;
    w->ctx = ctx;
    w->pattern = sk_strdup(pattern);
    if (w->pattern == NULL || pthread_mutex_init(&w->mu, NULL) != 0) {
        sk_free(w->pattern);
        w->pattern = NULL;
        st = SK_FAIL(SK_ENOMEM, "sk_kv_watch_start: copying the pattern");
        goto out;
    }
    w->has_mu = true;
    if ((st = watch_bind(w)) != SK_OK) {
        st = SK_WRAP(st, "sk_kv_watch_start: %s", kv->name);
        goto out;
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_kv_watch_start: creating the watch thread");
        goto out;
    }
    w->has_thread = true;
    *out = w;
    w = NULL;
out:
    sk_kv_watch_stop(w);
    return st;
}

void sk_kv_watch_stop(sk_kv_watch *w)
{
    if (w == NULL) {
        return;
    }
    atomic_store(&w->is_stopping, true);
    if (w->has_mu) {
        pthread_mutex_lock(&w->mu);
        if (w->w != NULL) {
            SK_IGNORE(kvWatcher_Stop(w->w)); /* wakes kvWatcher_Next; failure: already stopped */
        }
        pthread_mutex_unlock(&w->mu);
    }
    if (w->has_thread) {
        pthread_join(w->thread, NULL);
    }
    if (w->has_mu) {
        watch_unbind(w);
        pthread_mutex_destroy(&w->mu);
    }
    sk_free(w->pattern);
    sk_free(w);
}
