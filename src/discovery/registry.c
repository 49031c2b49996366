/* SPDX-License-Identifier: MIT */
/*
 * The instance registry over a NATS KV bucket. Registering puts this
 * process's entry and starts a heartbeat thread that re-puts it every ttl/3.
 * Watching runs one KV watcher on ">" that keeps a table of live entries
 * with the local monotonic time each was last put, and one discovery thread
 * that expires entries older than the TTL (nats-server 2.9 sends no event
 * when an entry's TTL passes) and calls the watch callbacks, one at a time
 * and never with a lock held. Invariant: every entry in the table has a
 * service record whose n_entries counts it, and every watcher one whose
 * n_watchers counts it. sk_registry_unwatch waits, on call_cond, for a
 * callback of the watch it removes that is in progress (the "call in
 * progress" marker is_calling/call_fn/call_ctx), unless the discovery thread
 * itself calls it from inside that callback.
 *
 * When does an entry expire? The bucket is one ordered stream: once the
 * watch has delivered any put written a TTL or more after an entry's last
 * heartbeat, every later heartbeat of that entry would have come before it,
 * so the instance really has been silent for a TTL. A process that
 * registers (and heartbeats every ttl/3) expires entries by that clock, the
 * newest heartbeat heard from anyone, its own included. So when its watch,
 * or the broker behind it, stops delivering, it expires nothing: the
 * silence says nothing about the other instances. It keeps them, as Envoy
 * keeps its last endpoints while its control plane is away (the mesh's
 * outlier detection deals with any that did stop), until puts arrive again.
 * A process that does not register has no such clock of its own and expires
 * entries by its local clock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "discovery/discovery_int.h"

/* Minimum time between two warnings about bad entries, and retry delay after OOM. */
#define WARN_INTERVAL_MS 10000
#define RETRY_MS         100

/* One live instance seen in the bucket. */
typedef struct entry {
    sk_instance inst;     /* owned strings */
    int64_t seen_mono_ms; /* local monotonic time of the last put seen */
} entry;

/* Change tracking of one service: the version changes whenever its live set changes. */
typedef struct svc_state {
    char *name;
    uint64_t version;  /* value of change_seq at its last change; 0 = never changed */
    size_t n_entries;  /* entries of this service in the table */
    size_t n_watchers; /* watchers of this service */
} svc_state;

typedef struct watcher {
    char *service; /* owned; freed by sk_registry_unwatch or close */
    sk_registry_watch_fn fn;
    void *ctx;
    uint64_t seen_version; /* service version last delivered to it */
} watcher;

/*
 * Lock order: start_mu, then reg_mu, then mu. Never call a callback or a
 * blocking bus operation with mu held. sk_registry_unwatch takes mu only
 * (and waits on call_cond with it), so a callback may call it.
 */
struct sk_registry {
    sk_bus *bus; /* borrowed */
    sk_kv *kv;   /* owned */
    int64_t ttl_ms;

    /* Serialises starting the bucket watch; protects watch and is_watching. */
    pthread_mutex_t start_mu;
    sk_kv_watch *watch;
    bool is_watching;

    /* Protects the registration below and serialises the puts and deletes
     * of our entry, so that an older value never overtakes a newer one. */
    pthread_mutex_t reg_mu;
    bool is_registered;
    sk_instance self; /* owned strings */
    char *self_key;   /* "<service>.<instance>" */
    bool is_hb_failing;

    /* Protects everything below. */
    pthread_mutex_t mu;
    pthread_cond_t hb_cond;   /* wakes the heartbeat thread (stop) */
    pthread_cond_t disp_cond; /* wakes the discovery thread (change, stop) */
    pthread_cond_t call_cond; /* broadcast when a watch callback returns */
    bool is_hb_running;
    bool is_hb_stop;
    pthread_t hb_thread;
    bool is_disp_running;
    bool is_disp_stop;
    pthread_t disp_thread;
    entry *entries;
    size_t n_entries, cap_entries;
    svc_state *svcs;
    size_t n_svcs, cap_svcs;
    watcher *watchers;
    size_t n_watchers, cap_watchers;
    uint64_t change_seq;
    /* The watch callback in progress on the discovery thread, if is_calling;
     * call_seq counts the calls, so that a waiter can tell its call ended
     * even when the same (fn, ctx) is watched again and called anew. */
    bool is_calling;
    sk_registry_watch_fn call_fn;
    void *call_ctx;
    uint64_t call_seq;
    int64_t last_warn_mono_ms;
    uint64_t n_warn_suppressed;
    /* The clock entries expire by while we heartbeat (see the top of the
     * file): when the newest put heard was written, and when it arrived
     * (monotonic; 0: none yet). The earliest expiry the discovery thread
     * waits for, and whether it logged that the watch is silent. */
    int64_t heard_written_mono_ms;
    int64_t heard_arrived_mono_ms;
    int64_t next_expiry_mono_ms;
    bool is_silent;
};

/* ---------------------------------------------------------------- sync helpers */

/* Errors from these pthread calls mean a corrupted lock: there is no way to go on. */
static void lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0) {
        abort();
    }
}

static void unlock(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0) {
        abort();
    }
}

/* Wait on @p c until signalled or the monotonic clock reaches @p deadline_ms (INT64_MAX: no limit).
 */
static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ms)
{
    int rc;

    if (deadline_ms == INT64_MAX) {
        rc = pthread_cond_wait(c, m);
    } else {
        struct timespec ts;
        ts.tv_sec = (time_t)(deadline_ms / 1000);
        ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
        rc = pthread_cond_timedwait(c, m, &ts);
    }
    if (rc != 0 && rc != ETIMEDOUT) {
        abort();
    }
}

static int init_cond(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);

    if (rc != 0) {
        return rc;
    }
    /* Deadlines are computed on the monotonic clock (sk_time_mono_ms). */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(c, &attr);
    }
    pthread_condattr_destroy(&attr);
    return rc;
}

/* ---------------------------------------------------------------- tables (mu held) */

static svc_state *svc_find(sk_registry *r, const char *name)
{
    for (size_t i = 0; i < r->n_svcs; i++) {
        if (strcmp(r->svcs[i].name, name) == 0) {
            return &r->svcs[i];
        }
    }
    return NULL;
}

/* Find or create the record of @p name; NULL on out of memory. */
static svc_state *svc_get(sk_registry *r, const char *name)
{
    svc_state *s = svc_find(r, name);

    if (s != NULL) {
        return s;
    }
    if (r->n_svcs == r->cap_svcs) {
        size_t cap = r->cap_svcs == 0 ? 8 : r->cap_svcs * 2;
        svc_state *grown = sk_realloc(r->svcs, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        r->svcs = grown;
        r->cap_svcs = cap;
    }
    s = &r->svcs[r->n_svcs];
    memset(s, 0, sizeof(*s));
    s->name = sk_strdup(name);
    if (s->name == NULL) {
        return NULL;
    }
    r->n_svcs++;
    return s;
}

/* Record a change of @p s's live set and wake the discovery thread. */
static void svc_bump(sk_registry *r, svc_state *s)
{
    s->version = ++r->change_seq;
    if (pthread_cond_signal(&r->disp_cond) != 0) {
        abort();
    }
}

/* Drop @p s when nothing refers to it any more, keeping the table bounded. */
static void svc_maybe_drop(sk_registry *r, svc_state *s)
{
    if (s->n_entries != 0 || s->n_watchers != 0) {
        return;
    }
    sk_free(s->name);
    *s = r->svcs[--r->n_svcs]; /* order does not matter */
}

static entry *entry_find(sk_registry *r, const char *service, const char *instance)
{
    for (size_t i = 0; i < r->n_entries; i++) {
        if (strcmp(r->entries[i].inst.instance, instance) == 0 &&
            strcmp(r->entries[i].inst.service, service) == 0) {
            return &r->entries[i];
        }
    }
    return NULL;
}

/* Remove entry @p e and record the change of its service. */
static void entry_remove(sk_registry *r, entry *e)
{
    svc_state *s = svc_find(r, e->inst.service);

    SK_ASSERT(s != NULL && s->n_entries > 0);
    sk__instance_fini(&e->inst);
    *e = r->entries[--r->n_entries];
    if (s != NULL) {
        s->n_entries--;
        svc_bump(r, s);
        svc_maybe_drop(r, s);
    }
}

/*
 * The time entries expire by (see the top of the file): while we heartbeat,
 * when the newest put heard was written; else the local clock @p now_ms.
 */
static int64_t expiry_clock(const sk_registry *r, int64_t now_ms)
{
    return r->is_hb_running ? r->heard_written_mono_ms : now_ms;
}

static bool entry_is_live(const sk_registry *r, const entry *e, int64_t now_ms)
{
    return expiry_clock(r, now_ms) - e->seen_mono_ms < r->ttl_ms;
}

/* Log a warning about a bad entry, at most once per WARN_INTERVAL_MS. */
static void warn_bad_entry(sk_registry *r, const char *key, const char *why)
{
    int64_t now = sk_time_mono_ms();

    if (r->last_warn_mono_ms != 0 && now - r->last_warn_mono_ms < WARN_INTERVAL_MS) {
        r->n_warn_suppressed++;
        return;
    }
    /* Keys come from the bucket: quote a bounded prefix only. */
    SK_LOG_WARN("ignoring registry entry key=\"%.80s\" bucket=%s error=\"%s\" suppressed=%llu", key,
                SK_DISCOVERY_BUCKET, why, (unsigned long long)r->n_warn_suppressed);
    r->last_warn_mono_ms = now;
    r->n_warn_suppressed = 0;
}

static int cmp_instance(const void *a, const void *b)
{
    const sk_instance *x = a;
    const sk_instance *y = b;
    int c = strcmp(x->service, y->service);

    return c != 0 ? c : strcmp(x->instance, y->instance);
}

/*
 * Deep copy of the live entries of @p service (every service when NULL),
 * sorted by service then instance name.
 */
static sk_status snapshot(sk_registry *r, const char *service, sk_instance **out, size_t *n_out)
{
    sk_status st = SK_OK;
    int64_t now = sk_time_mono_ms();
    sk_instance *list = NULL;
    size_t n = 0;

    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < r->n_entries; i++) {
        if ((service == NULL || strcmp(r->entries[i].inst.service, service) == 0) &&
            entry_is_live(r, &r->entries[i], now)) {
            n++;
        }
    }
    if (n == 0) {
        return SK_OK;
    }
    list = sk_calloc(n, sizeof(*list));
    if (list == NULL) {
        return SK_FAIL(SK_ENOMEM, "copying %zu registry entries", n);
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_entries && k < n; i++) {
        const entry *e = &r->entries[i];
        if ((service == NULL || strcmp(e->inst.service, service) == 0) &&
            entry_is_live(r, e, now)) {
            st = sk__instance_copy(&list[k], &e->inst);
            if (st != SK_OK) {
                sk_registry_list_free(list, k);
                return st;
            }
            k++;
        }
    }
    qsort(list, n, sizeof(*list), cmp_instance);
    *out = list;
    *n_out = n;
    return SK_OK;
}

/* ---------------------------------------------------------------- KV watch (bus thread) */

/* Split "<service>.<instance>" into its two names (copied into @p svc and @p ins). */
static bool
key_parse(const char *key, char svc[SK_DISCOVERY_MAX_NAME + 1], char ins[SK_DISCOVERY_MAX_NAME + 1])
{
    const char *dot = strchr(key, '.');
    size_t svc_len, ins_len;

    if (dot == NULL) {
        return false;
    }
    svc_len = (size_t)(dot - key);
    ins_len = strlen(dot + 1);
    if (!sk__discovery_name_is_valid(key, svc_len) ||
        !sk__discovery_name_is_valid(dot + 1, ins_len)) {
        return false;
    }
    memcpy(svc, key, svc_len);
    svc[svc_len] = '\0';
    memcpy(ins, dot + 1, ins_len);
    ins[ins_len] = '\0';
    return true;
}

/* A put written at @p written_ms arrived: advance the expiry clock. */
static void hear(sk_registry *r, int64_t written_ms)
{
    if (written_ms > r->heard_written_mono_ms) {
        r->heard_written_mono_ms = written_ms;
    }
    r->heard_arrived_mono_ms = sk_time_mono_ms();
    /* Wake the discovery thread when an entry is due now, or to log that puts arrive again. */
    if ((r->is_hb_running && r->heard_written_mono_ms >= r->next_expiry_mono_ms) || r->is_silent) {
        if (pthread_cond_signal(&r->disp_cond) != 0) {
            abort();
        }
    }
}

/*
 * Store a decoded put of @p inst (taken). It counts as seen when its
 * heartbeat was written (wall clock, clamped to now), not when it arrived:
 * a process that starts watching gets the bucket's current entries, and one
 * whose heartbeat is already older than the TTL (the server has not dropped
 * it yet) must not look alive for another whole TTL.
 */
static void table_put(sk_registry *r, sk_instance *inst, const char *key)
{
    int64_t age = inst->heartbeat_ms > 0 ? sk_time_now_ms() - inst->heartbeat_ms : 0;
    if (age < 0) {
        age = 0; /* a clock ahead of ours: trust the time of receipt */
    }
    if (age >= r->ttl_ms) {
        sk__instance_fini(inst); /* expired already; the live entry, if any, expires on its own */
        return;
    }
    int64_t now = sk_time_mono_ms() - age;
    hear(r, now);
    entry *e = entry_find(r, inst->service, inst->instance);

    if (e != NULL) {
        /* A heartbeat alone is no change of the live set; other fields are. */
        bool is_changed = e->inst.is_ready != inst->is_ready || e->inst.pid != inst->pid ||
                          strcmp(e->inst.address, inst->address) != 0 || !entry_is_live(r, e, now);
        sk__instance_fini(&e->inst);
        e->inst = *inst;
        memset(inst, 0, sizeof(*inst));
        e->seen_mono_ms = now;
        if (is_changed) {
            svc_state *s = svc_find(r, e->inst.service);
            SK_ASSERT(s != NULL);
            if (s != NULL) {
                svc_bump(r, s);
            }
        }
        return;
    }
    if (r->n_entries >= SK__DISCOVERY_MAX_ENTRIES) {
        warn_bad_entry(r, key, "too many registry entries");
        return;
    }
    if (r->n_entries == r->cap_entries) {
        size_t cap = r->cap_entries == 0 ? 16 : r->cap_entries * 2;
        entry *grown = sk_realloc(r->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            warn_bad_entry(r, key, "out of memory");
            return;
        }
        r->entries = grown;
        r->cap_entries = cap;
    }
    svc_state *s = svc_get(r, inst->service);
    if (s == NULL) {
        warn_bad_entry(r, key, "out of memory");
        return;
    }
    e = &r->entries[r->n_entries++];
    e->inst = *inst;
    memset(inst, 0, sizeof(*inst));
    e->seen_mono_ms = now;
    s->n_entries++;
    svc_bump(r, s);
}

/* Forget the entry of @p svc/@p ins, if any. */
static void table_delete(sk_registry *r, const char *svc, const char *ins)
{
    entry *e = entry_find(r, svc, ins);

    if (e != NULL) {
        entry_remove(r, e);
    }
}

static void on_kv_event(const char *key, sk_slice value, bool is_deleted, void *ctx)
{
    sk_registry *r = ctx;
    char svc[SK_DISCOVERY_MAX_NAME + 1];
    char ins[SK_DISCOVERY_MAX_NAME + 1];
    sk_instance inst;
    sk_status st = SK_OK;

    memset(&inst, 0, sizeof(inst));
    if (key == NULL) {
        return;
    }
    if (!key_parse(key, svc, ins)) {
        lock(&r->mu);
        warn_bad_entry(r, key, "key is not <service>.<instance>");
        unlock(&r->mu);
        return;
    }
    if (!is_deleted) {
        st = sk__instance_decode(value, &inst);
        if (st == SK_OK && (strcmp(inst.service, svc) != 0 || strcmp(inst.instance, ins) != 0)) {
            st = SK_FAIL(SK_EPROTO, "instance value: service/instance do not match the key");
        }
    }
    lock(&r->mu);
    if (is_deleted) {
        table_delete(r, svc, ins);
    } else if (st != SK_OK) {
        /* The key's current value is unusable: the instance is not reachable through it. */
        warn_bad_entry(r, key, sk_error_message());
        table_delete(r, svc, ins);
    } else {
        table_put(r, &inst, key);
    }
    unlock(&r->mu);
    sk__instance_fini(&inst);
    sk_error_clear(); /* the bus thread's error slot is not ours to leave dirty */
}

/* ---------------------------------------------------------------- discovery thread */

/*
 * Drop expired entries; return the monotonic time at which to look again
 * (INT64_MAX: only when woken). While we heartbeat, entries expire by the
 * heard clock, which moves only when puts arrive (hear() wakes this thread
 * when one makes an entry due), so the only timed look then is the one that
 * notices a silent watch.
 */
static int64_t sweep(sk_registry *r, int64_t now)
{
    int64_t next_expiry = INT64_MAX;
    size_t i = 0;

    while (i < r->n_entries) {
        entry *e = &r->entries[i];
        if (!entry_is_live(r, e, now)) {
            entry_remove(r, e); /* moves the last entry to i */
            continue;
        }
        if (e->seen_mono_ms + r->ttl_ms < next_expiry) {
            next_expiry = e->seen_mono_ms + r->ttl_ms;
        }
        i++;
    }
    r->next_expiry_mono_ms = next_expiry;
    if (!r->is_hb_running || r->heard_arrived_mono_ms == 0) {
        r->is_silent = false;
        return r->is_hb_running ? INT64_MAX : next_expiry;
    }
    /* Our own heartbeat alone comes every ttl/3: a TTL without any put is a silent watch. */
    bool is_silent = now - r->heard_arrived_mono_ms >= r->ttl_ms;
    if (is_silent && !r->is_silent) {
        SK_LOG_WARN("no heartbeat, our own included, has come through the watch of %s for %lld ms: "
                    "keeping the %zu known instances until they do",
                    SK_DISCOVERY_BUCKET, (long long)(now - r->heard_arrived_mono_ms), r->n_entries);
    } else if (!is_silent && r->is_silent) {
        SK_LOG_INFO("heartbeats come through the watch of %s again", SK_DISCOVERY_BUCKET);
    }
    r->is_silent = is_silent;
    return is_silent ? INT64_MAX : r->heard_arrived_mono_ms + r->ttl_ms;
}

static uint64_t svc_version(sk_registry *r, const char *service)
{
    const svc_state *s = svc_find(r, service);

    return s != NULL ? s->version : 0;
}

static void *disp_main(void *arg)
{
    sk_registry *r = arg;
    int64_t retry_at = 0; /* after an allocation failure, no delivery before this */

    sk_thread_name("sk-disc-watch");
    lock(&r->mu);
    while (!r->is_disp_stop) {
        int64_t now = sk_time_mono_ms();
        int64_t next = sweep(r, now);
        bool is_delivered = false;

        for (size_t i = 0; i < r->n_watchers && now >= retry_at; i++) {
            watcher *w = &r->watchers[i];
            uint64_t version = svc_version(r, w->service);
            sk_instance *list = NULL;
            size_t n = 0;

            if (version == w->seen_version) {
                continue;
            }
            if (snapshot(r, w->service, &list, &n) != SK_OK) {
                SK_LOG_WARN("cannot copy instances of %s: %s; retrying", w->service,
                            sk_error_message());
                retry_at = now + RETRY_MS;
                break;
            }
            w->seen_version = version;
            /* Copy what the call needs: the watchers array may move, and the
             * watcher (with its service string) may be removed by an unwatch
             * from inside the callback, while unlocked. Names are validated
             * to at most SK_DISCOVERY_MAX_NAME bytes. */
            sk_registry_watch_fn fn = w->fn;
            void *ctx = w->ctx;
            char service[SK_DISCOVERY_MAX_NAME + 1];
            size_t service_len = strlen(w->service);
            SK_ASSERT(service_len <= SK_DISCOVERY_MAX_NAME);
            if (service_len > SK_DISCOVERY_MAX_NAME) {
                service_len = SK_DISCOVERY_MAX_NAME;
            }
            memcpy(service, w->service, service_len);
            service[service_len] = '\0';
            r->is_calling = true;
            r->call_fn = fn;
            r->call_ctx = ctx;
            r->call_seq++;
            unlock(&r->mu);
            fn(service, list, n, ctx);
            sk_registry_list_free(list, n);
            lock(&r->mu);
            r->is_calling = false;
            r->call_fn = NULL;
            r->call_ctx = NULL;
            if (pthread_cond_broadcast(&r->call_cond) != 0) {
                abort();
            }
            is_delivered = true;
            break; /* tables may have changed: start over */
        }
        if (is_delivered) {
            continue;
        }
        if (retry_at > now && retry_at < next) {
            next = retry_at;
        }
        if (!r->is_disp_stop) {
            wait_until(&r->disp_cond, &r->mu, next);
        }
    }
    unlock(&r->mu);
    return NULL;
}

/* Stop and join the discovery thread, if running. */
static void disp_stop(sk_registry *r)
{
    bool is_running;

    lock(&r->mu);
    is_running = r->is_disp_running;
    r->is_disp_stop = true;
    if (pthread_cond_broadcast(&r->disp_cond) != 0) {
        abort();
    }
    unlock(&r->mu);
    if (is_running) {
        if (pthread_join(r->disp_thread, NULL) != 0) {
            abort();
        }
    }
    lock(&r->mu);
    r->is_disp_running = false;
    r->is_disp_stop = false;
    unlock(&r->mu);
}

/* Start the bucket watch and the discovery thread once. */
static sk_status watch_ensure(sk_registry *r)
{
    sk_status st = SK_OK;
    sk_kv_watch *w = NULL;

    lock(&r->start_mu);
    if (r->is_watching) {
        goto out;
    }
    lock(&r->mu);
    r->is_disp_stop = false;
    int rc = pthread_create(&r->disp_thread, NULL, disp_main, r);
    if (rc == 0) {
        r->is_disp_running = true;
    }
    unlock(&r->mu);
    if (rc != 0) {
        st = SK_FAIL(SK_ELIMIT, "sk_registry: cannot start the discovery thread: %s", strerror(rc));
        goto out;
    }
    st = sk_kv_watch_start(&w, r->kv, ">", on_kv_event, r);
    if (st != SK_OK) {
        st = SK_WRAP(st, "watching bucket %s", SK_DISCOVERY_BUCKET);
        disp_stop(r);
        goto out;
    }
    r->watch = w;
    r->is_watching = true;
out:
    unlock(&r->start_mu);
    return st;
}

/* ---------------------------------------------------------------- heartbeat */

/* Put our entry with a fresh heartbeat. reg_mu held and is_registered. */
static sk_status self_put(sk_registry *r)
{
    sk_status st;
    char *value = NULL;
    size_t len = 0;

    r->self.heartbeat_ms = sk_time_now_ms();
    st = sk__instance_encode(&r->self, &value, &len);
    if (st == SK_OK) {
        sk_slice v = { (const uint8_t *)value, len };
        st = sk_kv_put(r->kv, r->self_key, v);
    }
    sk_free(value);
    return st;
}

/* Heartbeat once, logging a failure once per run of failures. */
static void heartbeat(sk_registry *r)
{
    lock(&r->reg_mu);
    if (r->is_registered) {
        sk_status st = self_put(r);
        if (st != SK_OK && !r->is_hb_failing) {
            SK_LOG_WARN("heartbeat of %s failed: %s", r->self_key, sk_error_message());
            r->is_hb_failing = true;
        } else if (st == SK_OK && r->is_hb_failing) {
            SK_LOG_INFO("heartbeat of %s works again", r->self_key);
            r->is_hb_failing = false;
        }
    }
    unlock(&r->reg_mu);
    sk_error_clear();
}

static void *hb_main(void *arg)
{
    sk_registry *r = arg;

    sk_thread_name("sk-heartbeat");
    lock(&r->mu);
    while (!r->is_hb_stop) {
        int64_t deadline = sk_time_mono_ms() + r->ttl_ms / 3;
        while (!r->is_hb_stop && sk_time_mono_ms() < deadline) {
            wait_until(&r->hb_cond, &r->mu, deadline);
        }
        if (r->is_hb_stop) {
            break;
        }
        unlock(&r->mu);
        heartbeat(r);
        lock(&r->mu);
    }
    unlock(&r->mu);
    return NULL;
}

/* Stop and join the heartbeat thread, if running. Never with reg_mu held (it takes it). */
static void hb_stop(sk_registry *r)
{
    bool is_running;

    lock(&r->mu);
    is_running = r->is_hb_running;
    r->is_hb_stop = true;
    if (pthread_cond_broadcast(&r->hb_cond) != 0) {
        abort();
    }
    unlock(&r->mu);
    if (is_running) {
        if (pthread_join(r->hb_thread, NULL) != 0) {
            abort();
        }
    }
    lock(&r->mu);
    r->is_hb_running = false;
    r->is_hb_stop = false;
    /* Entries expire by the local clock from now on: the discovery thread re-times them. */
    if (pthread_cond_signal(&r->disp_cond) != 0) {
        abort();
    }
    unlock(&r->mu);
}

static sk_status hb_ensure(sk_registry *r)
{
    sk_status st = SK_OK;

    lock(&r->mu);
    if (!r->is_hb_running) {
        r->is_hb_stop = false;
        int rc = pthread_create(&r->hb_thread, NULL, hb_main, r);
        if (rc != 0) {
            st = SK_FAIL(SK_ELIMIT, "sk_registry_register: cannot start the heartbeat thread: %s",
                         strerror(rc));
        } else {
            r->is_hb_running = true;
        }
    }
    unlock(&r->mu);
    return st;
}

/* ---------------------------------------------------------------- public API */

sk_status sk_registry_open(sk_registry **out, sk_bus *bus, int64_t ttl_ms)
{
    sk_status st = SK_OK;
    sk_registry *r = NULL;
    int n_sync = 0;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_open: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_open: bus must not be NULL");
    }
    if (ttl_ms == 0) {
        ttl_ms = SK_DISCOVERY_DEFAULT_TTL_MS;
    }
    if (ttl_ms < SK_DISCOVERY_MIN_TTL_MS || ttl_ms > SK_DISCOVERY_MAX_TTL_MS) {
        return SK_FAIL(SK_EINVAL, "sk_registry_open: ttl_ms: expected 0 or %d..%d, got %lld",
                       SK_DISCOVERY_MIN_TTL_MS, SK_DISCOVERY_MAX_TTL_MS, (long long)ttl_ms);
    }
    r = sk_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_registry_open: allocating the registry");
    }
    r->bus = bus;
    r->ttl_ms = ttl_ms;
    /* n_sync counts the primitives initialised so far, for the cleanup below. */
    if (pthread_mutex_init(&r->start_mu, NULL) == 0) {
        n_sync++;
        if (pthread_mutex_init(&r->reg_mu, NULL) == 0) {
            n_sync++;
            if (pthread_mutex_init(&r->mu, NULL) == 0) {
                n_sync++;
                if (init_cond(&r->hb_cond) == 0) {
                    n_sync++;
                    if (init_cond(&r->disp_cond) == 0) {
                        n_sync++;
                        if (init_cond(&r->call_cond) == 0) {
                            n_sync++;
                        }
                    }
                }
            }
        }
    }
    if (n_sync != 6) {
        st = SK_FAIL(SK_ENOMEM, "sk_registry_open: initialising locks");
        goto out;
    }
    st = sk_kv_open(&r->kv, bus, SK_DISCOVERY_BUCKET, ttl_ms);
    if (st != SK_OK) {
        st = SK_WRAP(st, "opening bucket %s", SK_DISCOVERY_BUCKET);
        goto out;
    }
    *out = r;
    r = NULL;
out:
    if (r != NULL) {
        /* Destroy exactly the primitives that were initialised, in reverse. */
        if (n_sync >= 6) {
            pthread_cond_destroy(&r->call_cond);
        }
        if (n_sync >= 5) {
            pthread_cond_destroy(&r->disp_cond);
        }
        if (n_sync >= 4) {
            pthread_cond_destroy(&r->hb_cond);
        }
        if (n_sync >= 3) {
            pthread_mutex_destroy(&r->mu);
        }
        if (n_sync >= 2) {
            pthread_mutex_destroy(&r->reg_mu);
        }
        if (n_sync >= 1) {
            pthread_mutex_destroy(&r->start_mu);
        }
        sk_free(r);
    }
    return st;
}

void sk_registry_close(sk_registry *r)
{
    if (r == NULL) {
        return;
    }
    hb_stop(r);
    /* Stop watching before deregistering: once the watch is stopped no bus
     * thread touches the tables, and our own delete event does not race
     * with the watcher's shutdown (nats.c 3.4.1 leaks a message that
     * arrives while kvWatcher_Next is being stopped). */
    sk_kv_watch_stop(r->watch);
    r->watch = NULL;
    disp_stop(r);
    lock(&r->reg_mu);
    if (r->is_registered) {
        if (sk_kv_delete(r->kv, r->self_key) != SK_OK) {
            SK_LOG_WARN("deregistering %s failed (its TTL will expire it): %s", r->self_key,
                        sk_error_message());
            sk_error_clear();
        }
        r->is_registered = false;
    }
    sk__instance_fini(&r->self);
    sk_free(r->self_key);
    r->self_key = NULL;
    unlock(&r->reg_mu);
    sk_kv_close(r->kv);
    for (size_t i = 0; i < r->n_entries; i++) {
        sk__instance_fini(&r->entries[i].inst);
    }
    sk_free(r->entries);
    for (size_t i = 0; i < r->n_svcs; i++) {
        sk_free(r->svcs[i].name);
    }
    sk_free(r->svcs);
    for (size_t i = 0; i < r->n_watchers; i++) {
        sk_free(r->watchers[i].service);
    }
    sk_free(r->watchers);
    pthread_cond_destroy(&r->call_cond);
    pthread_cond_destroy(&r->disp_cond);
    pthread_cond_destroy(&r->hb_cond);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->reg_mu);
    pthread_mutex_destroy(&r->start_mu);
    sk_free(r);
}

sk_status sk_registry_register(sk_registry *r, const sk_instance *self)
{
    sk_status st = SK_OK;
    sk_instance inst;
    char *key = NULL;

    memset(&inst, 0, sizeof(inst));
    if (r == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_register: r must not be NULL");
    }
    if (self == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_register: self must not be NULL");
    }
    st = sk__instance_validate(self);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_registry_register");
    }
    st = sk__instance_copy(&inst, self);
    if (st != SK_OK) {
        goto out;
    }
    if (inst.pid == 0) {
        inst.pid = (int)getpid();
    }
    key = sk_asprintf("%s.%s", inst.service, inst.instance);
    if (key == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_registry_register: building the key");
        goto out;
    }
    st = hb_ensure(r);
    if (st != SK_OK) {
        goto out;
    }

    lock(&r->reg_mu);
    /* Swap the new registration in; swap it back out if the first put fails. */
    bool was_registered = r->is_registered;
    sk_instance old = r->self;
    char *old_key = r->self_key;
    r->self = inst;
    r->self_key = key;
    r->is_registered = true;
    st = self_put(r);
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_registry_register: putting %s", key);
        r->self = old;
        r->self_key = old_key;
        r->is_registered = was_registered;
        /* inst and key are still ours: freed below. */
    } else {
        r->is_hb_failing = false;
        if (was_registered && strcmp(old_key, key) != 0 && sk_kv_delete(r->kv, old_key) != SK_OK) {
            SK_LOG_WARN("removing the previous registration %s failed: %s", old_key,
                        sk_error_message());
            sk_error_clear();
        }
        sk__instance_fini(&old);
        sk_free(old_key);
        memset(&inst, 0, sizeof(inst));
        key = NULL;
    }
    unlock(&r->reg_mu);
out:
    sk__instance_fini(&inst);
    sk_free(key);
    return st;
}

void sk_registry_set_ready(sk_registry *r, bool is_ready)
{
    if (r == NULL) {
        return;
    }
    lock(&r->reg_mu);
    if (r->is_registered) {
        r->self.is_ready = is_ready;
        if (self_put(r) != SK_OK) {
            /* The value is kept: the next heartbeat (ttl/3 away) sends it again. */
            SK_LOG_WARN("announcing %s as %s failed: %s", r->self_key,
                        is_ready ? "ready" : "not ready", sk_error_message());
            sk_error_clear();
        }
    }
    unlock(&r->reg_mu);
}

sk_status sk_registry_watch(sk_registry *r, const char *service, sk_registry_watch_fn fn, void *ctx)
{
    sk_status st = SK_OK;
    char *name = NULL;

    if (r == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_watch: r must not be NULL");
    }
    if (service == NULL || !sk__discovery_name_is_valid(service, strlen(service))) {
        return SK_FAIL(SK_EINVAL,
                       "sk_registry_watch: service: expected [a-z0-9-]{1,%d}, got \"%.64s\"",
                       SK_DISCOVERY_MAX_NAME, service != NULL ? service : "(null)");
    }
    if (fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_watch: fn must not be NULL");
    }
    st = watch_ensure(r);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_registry_watch");
    }
    name = sk_strdup(service);
    if (name == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_registry_watch: copying the service name");
    }
    lock(&r->mu);
    if (r->n_watchers == r->cap_watchers) {
        size_t cap = r->cap_watchers == 0 ? 4 : r->cap_watchers * 2;
        watcher *grown = sk_realloc(r->watchers, cap * sizeof(*grown));
        if (grown == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_registry_watch: growing the watcher table");
            goto out;
        }
        r->watchers = grown;
        r->cap_watchers = cap;
    }
    svc_state *s = svc_get(r, service);
    if (s == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_registry_watch: adding the service record");
        goto out;
    }
    s->n_watchers++;
    watcher *w = &r->watchers[r->n_watchers++];
    w->service = name;
    w->fn = fn;
    w->ctx = ctx;
    /* The current list is delivered at once when it is not empty; an empty
     * service is reported at its first change. */
    w->seen_version = s->n_entries > 0 ? 0 : s->version;
    SK_ASSERT(s->n_entries == 0 || s->version != 0); /* adding an entry bumps the version */
    name = NULL;
    if (pthread_cond_signal(&r->disp_cond) != 0) {
        abort();
    }
out:
    unlock(&r->mu);
    sk_free(name);
    return st;
}

void sk_registry_unwatch(sk_registry *r, sk_registry_watch_fn fn, void *ctx)
{
    size_t kept = 0;

    if (r == NULL || fn == NULL) {
        return;
    }
    lock(&r->mu);
    /* Compact the table in place, keeping the order in which watches were added. */
    for (size_t i = 0; i < r->n_watchers; i++) {
        watcher *w = &r->watchers[i];
        if (w->fn != fn || w->ctx != ctx) {
            if (kept != i) {
                r->watchers[kept] = *w;
            }
            kept++;
            continue;
        }
        svc_state *s = svc_find(r, w->service);
        SK_ASSERT(s != NULL && s->n_watchers > 0);
        if (s != NULL && s->n_watchers > 0) {
            s->n_watchers--;
            svc_maybe_drop(r, s);
        }
        sk_free(w->service);
    }
    r->n_watchers = kept;
    /*
     * The discovery thread may have copied fn and ctx before we took mu and
     * be calling them now: wait for that call to return, so that the caller
     * may free ctx. Not when we are that thread (an unwatch from inside the
     * callback): waiting for ourselves would never end. is_calling is only
     * set while the thread runs, so disp_thread is valid here.
     */
    if (r->is_calling && r->call_fn == fn && r->call_ctx == ctx &&
        !pthread_equal(pthread_self(), r->disp_thread)) {
        uint64_t seq = r->call_seq;
        while (r->is_calling && r->call_seq == seq) {
            wait_until(&r->call_cond, &r->mu, INT64_MAX);
        }
    }
    unlock(&r->mu);
}

sk_status sk_registry_list(sk_registry *r, sk_instance **out, size_t *n)
{
    sk_status st;

    if (out != NULL) {
        *out = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    if (r == NULL || out == NULL || n == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_registry_list: %s must not be NULL",
                       r == NULL     ? "r"
                       : out == NULL ? "out"
                                     : "n");
    }
    st = watch_ensure(r);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_registry_list");
    }
    lock(&r->mu);
    st = snapshot(r, NULL, out, n);
    unlock(&r->mu);
    return st;
}

void sk_registry_list_free(sk_instance *list, size_t n)
{
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sk__instance_fini(&list[i]);
    }
    sk_free(list);
}

void sk__registry_test_stop_heartbeat(sk_registry *r)
{
    if (r != NULL) {
        hb_stop(r);
    }
}

int64_t sk__registry_ttl_ms(const sk_registry *r)
{
    return r != NULL ? r->ttl_ms : 0;
}
