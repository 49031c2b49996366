/* SPDX-License-Identifier: MIT */
/*
 * Consistency tokens ("v1|<id>|<version>" in unpadded base64url; exactly one
 * accepted text per id and version) and waiters: queries parked until a
 * version of an aggregate is visible. Invariant: a waiter is in the id map
 * and the deadline heap exactly while its state is PENDING; whoever moves it
 * to DONE under the lock calls its callback, outside the lock, once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cqrs/cqrs_int.h"

#define CTOKEN_PREFIX     "v1|"
#define CTOKEN_PREFIX_LEN 3
/* Waiters of one id checked per notification from a peer (more wait for the re-check). */
#define PEER_CHECKS_MAX 32
/* Shared waiters: how often pending ones are looked at again, and how many at a time. */
#define RECHECK_MS  100
#define RECHECK_MAX 64
/* Longest decoded token: prefix + id + '|' + 16 digits. */
#define CTOKEN_RAW_MAX (CTOKEN_PREFIX_LEN + SK__CTOKEN_ID_MAX + 1 + 16)

/* ---------------------------------------------------------------- tokens */

bool sk__ctoken_id_is_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > SK__CTOKEN_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

sk_status sk_ctoken_encode(const char *id, int64_t version, char out[SK_CTOKEN_MAX])
{
    char raw[CTOKEN_RAW_MAX + 1];
    size_t id_len;
    int n;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_encode: out must not be NULL");
    }
    out[0] = '\0';
    if (id == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_encode: id must not be NULL");
    }
    id_len = strnlen(id, SK__CTOKEN_ID_MAX + 1);
    if (!sk__ctoken_id_is_valid(id, id_len)) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_encode: id must be 1..%d bytes of [A-Za-z0-9._:-]",
                       SK__CTOKEN_ID_MAX);
    }
    if (version < 1 || version > SK__CTOKEN_VERSION_MAX) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_encode: version must be 1..2^53, got %lld",
                       (long long)version);
    }
    n = snprintf(raw, sizeof(raw), CTOKEN_PREFIX "%s|%lld", id, (long long)version);
    if (n < 0 || (size_t)n >= sizeof(raw)) {
        return SK_FAIL(SK_EINTERNAL, "sk_ctoken_encode: token text does not fit");
    }
    /* 4 * ceil(120 / 3) + 1 = 161 <= SK_CTOKEN_MAX. */
    sk_base64url_encode(raw, (size_t)n, out);
    return SK_OK;
}

static sk_status malformed(const char *why)
{
    return SK_FAIL(SK_EPROTO, "consistency token: malformed (%s)", why);
}

sk_status sk_ctoken_decode(sk_slice token, char *id_out, size_t id_out_len, int64_t *version)
{
    uint8_t raw[CTOKEN_RAW_MAX + 8];
    size_t raw_len = 0;
    size_t id_len = 0;
    size_t i;
    int64_t v = 0;
    const char *digits;
    size_t n_digits;

    if (version == NULL || id_out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_decode: id_out and version must not be NULL");
    }
    *version = 0;
    if (id_out_len > 0) {
        id_out[0] = '\0';
    }
    if (token.ptr == NULL && token.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_decode: token.ptr must not be NULL");
    }
    if (token.len == 0) {
        return malformed("empty");
    }
    if (token.len > SK_CTOKEN_MAX - 1) {
        return malformed("too long");
    }
    /* The decoder needs len*3/4 + 1 bytes: at most 123 for 163 characters. */
    if (sk_base64url_decode(token, raw, &raw_len) != SK_OK) {
        return malformed("not base64url");
    }
    if (raw_len < CTOKEN_PREFIX_LEN || memcmp(raw, CTOKEN_PREFIX, CTOKEN_PREFIX_LEN) != 0) {
        return malformed("unknown version prefix");
    }
    for (i = CTOKEN_PREFIX_LEN; i < raw_len && raw[i] != '|'; i++) {
        id_len++;
    }
    if (i >= raw_len) {
        return malformed("no version");
    }
    if (!sk__ctoken_id_is_valid((const char *)raw + CTOKEN_PREFIX_LEN, id_len)) {
        return malformed("bad id");
    }
    digits = (const char *)raw + i + 1;
    n_digits = raw_len - i - 1;
    if (n_digits == 0 || n_digits > 16 || digits[0] == '0') {
        return malformed("bad version");
    }
    for (size_t k = 0; k < n_digits; k++) {
        if (digits[k] < '0' || digits[k] > '9') {
            return malformed("bad version");
        }
        v = v * 10 + (digits[k] - '0'); /* at most 16 digits: no overflow */
    }
    if (v > SK__CTOKEN_VERSION_MAX) {
        return malformed("version too large");
    }
    if (id_out_len <= id_len) {
        return SK_FAIL(SK_EINVAL, "sk_ctoken_decode: id_out_len %zu too small for a %zu-byte id",
                       id_out_len, id_len);
    }
    memcpy(id_out, raw + CTOKEN_PREFIX_LEN, id_len);
    id_out[id_len] = '\0';
    *version = v;
    return SK_OK;
}

/* ---------------------------------------------------------------- waiters */

enum { WAITER_PENDING = 0, WAITER_DONE = 1 };

typedef struct waiter waiter;
typedef struct id_entry id_entry;

struct waiter {
    waiter *prev, *next; /* in entry->head; under sk_waiters.mu */
    id_entry *entry;     /* under sk_waiters.mu */
    size_t heap_idx;     /* under sk_waiters.mu */
    int state;           /* under sk_waiters.mu */
    int64_t version;
    int64_t deadline_ns;
    sk_waiter_fn fn;
    void *ctx;
    sk_version_fn current; /* checked again when a peer process notifies (may be NULL) */
    void *current_ctx;
    /* The map's reference and, during sk_waiters_add, the adder's. */
    atomic_int refs;
};

struct id_entry {
    id_entry *next; /* bucket chain */
    waiter *head;
    char *id;
};

/*
 * Lock order: mu only; callbacks and the version function run without it.
 */
struct sk_waiters {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* the timer waits on it; signalled on a new earliest deadline or stop */
    id_entry **buckets;  /* under mu; n_buckets, a power of two */
    size_t n_buckets;    /* under mu */
    size_t n_ids;        /* under mu */
    waiter **heap;       /* under mu; min-heap by deadline_ns */
    size_t n_heap;       /* under mu; also the number of pending waiters */
    size_t cap_heap;     /* under mu */
    bool is_stopping;    /* under mu */
    bool has_thread;
    pthread_t thread;
    /* Set once by sk_waiters_share, before the waiters are used. */
    sk__waiters_share *_Atomic share;
};

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void waiter_unref(waiter *wt)
{
    if (atomic_fetch_sub(&wt->refs, 1) == 1) {
        sk_free(wt);
    }
}

/* ---- heap (caller holds mu) */

static void heap_swap(sk_waiters *w, size_t a, size_t b)
{
    waiter *t = w->heap[a];

    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_idx = a;
    w->heap[b]->heap_idx = b;
}

static void heap_up(sk_waiters *w, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (w->heap[parent]->deadline_ns <= w->heap[i]->deadline_ns) {
            break;
        }
        heap_swap(w, parent, i);
        i = parent;
    }
}

static void heap_down(sk_waiters *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;

        if (l < w->n_heap && w->heap[l]->deadline_ns < w->heap[m]->deadline_ns) {
            m = l;
        }
        if (r < w->n_heap && w->heap[r]->deadline_ns < w->heap[m]->deadline_ns) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(w, i, m);
        i = m;
    }
}

static void heap_remove(sk_waiters *w, waiter *wt)
{
    size_t i = wt->heap_idx;

    w->n_heap--;
    if (i != w->n_heap) {
        w->heap[i] = w->heap[w->n_heap];
        w->heap[i]->heap_idx = i;
        heap_down(w, i);
        heap_up(w, i);
    }
}

/* ---- id map (caller holds mu) */

static id_entry *map_find(sk_waiters *w, const char *id)
{
    id_entry *e = w->buckets[(size_t)sk_hash_text(id) & (w->n_buckets - 1)];

    while (e != NULL && strcmp(e->id, id) != 0) {
        e = e->next;
    }
    return e;
}

/* Grow the table when it is fuller than one id per bucket; failure only costs speed. */
static void map_maybe_grow(sk_waiters *w)
{
    size_t n = w->n_buckets * 2;
    id_entry **b;

    if (w->n_ids <= w->n_buckets || n > SK_WAITERS_MAX) {
        return;
    }
    b = sk_calloc(n, sizeof(*b));
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < w->n_buckets; i++) {
        id_entry *e = w->buckets[i];
        while (e != NULL) {
            id_entry *next = e->next;
            size_t at = (size_t)sk_hash_text(e->id) & (n - 1);
            e->next = b[at];
            b[at] = e;
            e = next;
        }
    }
    sk_free(w->buckets);
    w->buckets = b;
    w->n_buckets = n;
}

static void map_remove_entry(sk_waiters *w, id_entry *e)
{
    id_entry **pp = &w->buckets[(size_t)sk_hash_text(e->id) & (w->n_buckets - 1)];

    while (*pp != e) {
        pp = &(*pp)->next;
    }
    *pp = e->next;
    w->n_ids--;
    sk_free(e->id);
    sk_free(e);
}

/*
 * Take a pending waiter out of the map and the heap and mark it DONE; the
 * caller then owns the call of its callback. Caller holds mu.
 */
static void waiter_detach(sk_waiters *w, waiter *wt)
{
    id_entry *e = wt->entry;

    if (wt->prev != NULL) {
        wt->prev->next = wt->next;
    } else {
        e->head = wt->next;
    }
    if (wt->next != NULL) {
        wt->next->prev = wt->prev;
    }
    wt->prev = wt->next = NULL;
    wt->entry = NULL;
    if (e->head == NULL) {
        map_remove_entry(w, e);
    }
    heap_remove(w, wt);
    wt->state = WAITER_DONE;
}

/* Callbacks of detached waiters chained through ->next; runs without mu. */
static void run_detached(waiter *list, sk_status st)
{
    while (list != NULL) {
        waiter *next = list->next;
        list->fn(st, list->ctx);
        waiter_unref(list);
        list = next;
    }
}

/*
 * Complete @p wt with SK_OK unless a notify, the timer or stop did first.
 * The caller holds a reference to it and not mu.
 */
static void complete_if_pending(sk_waiters *w, waiter *wt)
{
    bool is_mine = false;

    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    if (wt->state == WAITER_PENDING) {
        waiter_detach(w, wt);
        is_mine = true;
    }
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    if (is_mine) {
        wt->fn(SK_OK, wt->ctx);
        waiter_unref(wt); /* the map's reference, now ours */
    }
}

/* A pending waiter taken out of the lock to check: our reference to it, and its id. */
typedef struct candidate {
    waiter *wt;
    char id[SK__CTOKEN_ID_MAX + 1];
} candidate;

/* Take a reference to @p wt for checking it without mu. Caller holds mu. */
static void candidate_take(candidate *c, waiter *wt)
{
    atomic_fetch_add(&wt->refs, 1);
    c->wt = wt;
    snprintf(c->id, sizeof(c->id), "%s", wt->entry->id);
}

/*
 * Complete each candidate whose version function confirms its version (or
 * that has none), and drop our references. Runs without mu.
 */
static void candidates_confirm(sk_waiters *w, candidate *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        waiter *wt = c[i].wt;
        if (wt->current == NULL || wt->current(c[i].id, wt->current_ctx) >= wt->version) {
            complete_if_pending(w, wt);
        }
        waiter_unref(wt);
    }
}

/*
 * Shared waiters: look again at up to RECHECK_MAX pending waiters, from a
 * position that moves on each round (a peer's notification may have been
 * lost). Runs without mu.
 */
static void recheck_pending(sk_waiters *w, size_t *from)
{
    candidate found[RECHECK_MAX];
    size_t n = 0;

    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    for (size_t k = 0; k < w->n_heap && n < RECHECK_MAX; k++) {
        waiter *wt = w->heap[(*from + k) % w->n_heap];
        if (wt->current != NULL) {
            candidate_take(&found[n++], wt);
        }
    }
    *from = w->n_heap > 0 ? (*from + RECHECK_MAX) % w->n_heap : 0;
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    candidates_confirm(w, found, n);
}

static void *timer_main(void *arg)
{
    sk_waiters *w = arg;
    int64_t next_recheck_ns = 0; /* 0: nothing pending (shared waiters only) */
    size_t recheck_from = 0;

    sk_thread_name("sk-consistency");
    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    while (!w->is_stopping) {
        int64_t now = mono_ns();
        waiter *expired = NULL;

        while (w->n_heap > 0 && w->heap[0]->deadline_ns <= now) {
            waiter *wt = w->heap[0];
            waiter_detach(w, wt);
            wt->next = expired;
            expired = wt;
        }
        if (expired != NULL) {
            sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
            run_detached(expired, SK_ETIMEDOUT);
            sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
            continue;
        }
        if (atomic_load(&w->share) == NULL || w->n_heap == 0) {
            next_recheck_ns = 0;
        } else if (next_recheck_ns == 0) {
            next_recheck_ns = now + RECHECK_MS * 1000000LL;
        } else if (now >= next_recheck_ns) {
            sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
            recheck_pending(w, &recheck_from);
            sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
            next_recheck_ns = mono_ns() + RECHECK_MS * 1000000LL;
            continue;
        }
        if (w->n_heap == 0) {
            sk__cqrs_pthread_check(pthread_cond_wait(&w->cond, &w->mu), "pthread_cond_wait");
        } else {
            struct timespec ts;
            int64_t wake_ns = w->heap[0]->deadline_ns;
            int rc;

            if (next_recheck_ns != 0 && next_recheck_ns < wake_ns) {
                wake_ns = next_recheck_ns;
            }
            ts.tv_sec = (time_t)(wake_ns / 1000000000LL);
            ts.tv_nsec = (long)(wake_ns % 1000000000LL);
            rc = pthread_cond_timedwait(&w->cond, &w->mu, &ts);
            if (rc != 0 && rc != ETIMEDOUT) {
                sk__cqrs_pthread_check(rc, "pthread_cond_timedwait");
            }
        }
    }
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    return NULL;
}

sk_status sk_waiters_create(sk_waiters **out)
{
    sk_status st = SK_OK;
    sk_waiters *w = NULL;
    pthread_condattr_t attr;
    bool has_mu = false;
    bool has_cond = false;
    int rc;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_create: out must not be NULL");
    }
    *out = NULL;
    w = sk_calloc(1, sizeof(*w));
    if (w == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_waiters_create: allocating");
        goto out;
    }
    w->n_buckets = 64;
    w->buckets = sk_calloc(w->n_buckets, sizeof(*w->buckets));
    if (w->buckets == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_waiters_create: allocating the id map");
        goto out;
    }
    rc = pthread_mutex_init(&w->mu, NULL);
    if (rc != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_waiters_create: pthread_mutex_init: %s", strerror(rc));
        goto out;
    }
    has_mu = true;
    rc = pthread_condattr_init(&attr);
    if (rc != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_waiters_create: pthread_condattr_init: %s", strerror(rc));
        goto out;
    }
    /* Deadlines are monotonic: a wall-clock step must not fire or stall the timeouts. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(&w->cond, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        st =
            SK_FAIL(SK_ENOMEM, "sk_waiters_create: monotonic condition variable: %s", strerror(rc));
        goto out;
    }
    has_cond = true;
    rc = pthread_create(&w->thread, NULL, timer_main, w);
    if (rc != 0) {
        st = SK_FAIL(rc == EAGAIN ? SK_ELIMIT : SK_EINTERNAL,
                     "sk_waiters_create: starting the timer thread: %s", strerror(rc));
        goto out;
    }
    w->has_thread = true;
    *out = w;
    w = NULL;
out:
    if (w != NULL) {
        if (has_cond) {
            pthread_cond_destroy(&w->cond);
        }
        if (has_mu) {
            pthread_mutex_destroy(&w->mu);
        }
        sk_free(w->buckets);
        sk_free(w);
    }
    return st;
}

void sk_waiters_destroy(sk_waiters *w)
{
    waiter *all = NULL;

    if (w == NULL) {
        return;
    }
    sk__waiters_share_stop(atomic_load(&w->share)); /* no peer delivers from here on */
    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    w->is_stopping = true;
    while (w->n_heap > 0) {
        waiter *wt = w->heap[w->n_heap - 1];
        waiter_detach(w, wt);
        wt->next = all;
        all = wt;
    }
    sk__cqrs_pthread_check(pthread_cond_signal(&w->cond), "pthread_cond_signal");
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    if (w->has_thread) {
        sk__cqrs_pthread_check(pthread_join(w->thread, NULL), "pthread_join");
    }
    run_detached(all, SK_ECANCELED);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    sk_free(w->heap);
    sk_free(w->buckets);
    sk_free(w);
}

size_t sk__waiters_pending(sk_waiters *w)
{
    size_t n;

    if (w == NULL) {
        return 0;
    }
    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    n = w->n_heap;
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    return n;
}

/* Register @p wt under @p id. Caller holds mu. */
static sk_status waiter_insert(sk_waiters *w, waiter *wt, const char *id)
{
    id_entry *e;

    if (w->is_stopping) {
        return SK_FAIL(SK_ESTATE, "sk_waiters_add: shutting down");
    }
    if (w->n_heap >= SK_WAITERS_MAX) {
        return SK_FAIL(SK_ELIMIT, "sk_waiters_add: %d waiters already pending", SK_WAITERS_MAX);
    }
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap == 0 ? 64 : w->cap_heap * 2;
        waiter **heap = sk_realloc(w->heap, cap * sizeof(*heap));
        if (heap == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_waiters_add: growing the deadline heap");
        }
        w->heap = heap;
        w->cap_heap = cap;
    }
    e = map_find(w, id);
    if (e == NULL) {
        e = sk_calloc(1, sizeof(*e));
        if (e == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_waiters_add: allocating the id entry");
        }
        e->id = sk_strdup(id);
        if (e->id == NULL) {
            sk_free(e);
            return SK_FAIL(SK_ENOMEM, "sk_waiters_add: copying the id");
        }
        {
            size_t at = (size_t)sk_hash_text(id) & (w->n_buckets - 1);
            e->next = w->buckets[at];
            w->buckets[at] = e;
        }
        w->n_ids++;
        map_maybe_grow(w);
    }
    wt->entry = e;
    wt->prev = NULL;
    wt->next = e->head;
    if (e->head != NULL) {
        e->head->prev = wt;
    }
    e->head = wt;
    wt->heap_idx = w->n_heap;
    w->heap[w->n_heap++] = wt;
    heap_up(w, wt->heap_idx);
    if (wt->heap_idx == 0) {
        /* New earliest deadline: the timer must re-arm. */
        sk__cqrs_pthread_check(pthread_cond_signal(&w->cond), "pthread_cond_signal");
    }
    return SK_OK;
}

sk_status sk_waiters_add(sk_waiters *w,
                         const char *id,
                         int64_t version,
                         int64_t timeout_ms,
                         sk_version_fn current,
                         void *current_ctx,
                         sk_waiter_fn fn,
                         void *ctx)
{
    sk_status st;
    waiter *wt;
    /*
     * Once registered, the waiter may be completed by another thread, and
     * the caller's @p id (typically borrowed from the query that fn answers
     * and frees) with it: what follows uses this copy only.
     */
    char id_copy[SK__CTOKEN_ID_MAX + 1];

    if (w == NULL || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_add: w and fn must not be NULL");
    }
    if (id == NULL || !sk__ctoken_id_is_valid(id, strnlen(id, SK__CTOKEN_ID_MAX + 1))) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_add: id must be 1..%d bytes of [A-Za-z0-9._:-]",
                       SK__CTOKEN_ID_MAX);
    }
    if (version < 1) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_add: version must be >= 1, got %lld",
                       (long long)version);
    }
    if (timeout_ms < 0 || timeout_ms > SK_WAITERS_MAX_TIMEOUT_MS) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_add: timeout_ms must be 0..%d, got %lld",
                       SK_WAITERS_MAX_TIMEOUT_MS, (long long)timeout_ms);
    }
    snprintf(id_copy, sizeof(id_copy), "%s", id);
    id = id_copy;
    wt = sk_calloc(1, sizeof(*wt));
    if (wt == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_waiters_add: allocating the waiter");
    }
    wt->version = version;
    wt->deadline_ns = mono_ns() + timeout_ms * 1000000LL;
    wt->fn = fn;
    wt->ctx = ctx;
    wt->current = current;
    wt->current_ctx = current_ctx;
    wt->state = WAITER_PENDING;
    atomic_init(&wt->refs, 2);

    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    st = waiter_insert(w, wt, id);
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    if (st != SK_OK) {
        sk_free(wt);
        return st;
    }

    /* Registered first, checked after: a notify between the two finds the waiter. */
    if (current != NULL && current(id, current_ctx) >= version) {
        complete_if_pending(w, wt);
    }
    waiter_unref(wt); /* the adder's reference */
    return SK_OK;
}

/* Complete this process's waiters of @p id (checked by the caller) up to @p version. */
static void notify_here(sk_waiters *w, const char *id, int64_t version)
{
    waiter *ready = NULL;
    id_entry *e;

    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    e = map_find(w, id);
    if (e != NULL) {
        waiter *wt = e->head;
        /* The last detach frees the entry; only the saved next pointers are read after it. */
        while (wt != NULL) {
            waiter *next = wt->next;

            if (wt->version <= version) {
                waiter_detach(w, wt);
                wt->next = ready;
                ready = wt;
            }
            wt = next;
        }
    }
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    run_detached(ready, SK_OK);
}

/*
 * A notification from a peer process. Anything on the machine can send one,
 * so it only says where to look: a waiter completes once its own version
 * function confirms the version (without one, the notification is taken
 * at its word).
 */
static void notify_from_peer(void *ctx, const char *id, int64_t version)
{
    sk_waiters *w = ctx;
    candidate found[PEER_CHECKS_MAX];
    size_t n = 0;
    id_entry *e;

    /* @p id comes out of sk_ctoken_decode, which checked it. */
    sk__cqrs_pthread_check(pthread_mutex_lock(&w->mu), "pthread_mutex_lock");
    e = map_find(w, id);
    for (waiter *wt = e != NULL ? e->head : NULL; wt != NULL && n < PEER_CHECKS_MAX;
         wt = wt->next) {
        if (wt->version <= version) {
            candidate_take(&found[n++], wt);
        }
    }
    sk__cqrs_pthread_check(pthread_mutex_unlock(&w->mu), "pthread_mutex_unlock");
    candidates_confirm(w, found, n);
}

void sk_waiters_notify(sk_waiters *w, const char *id, int64_t version)
{
    if (w == NULL || id == NULL ||
        !sk__ctoken_id_is_valid(id, strnlen(id, SK__CTOKEN_ID_MAX + 1))) {
        return;
    }
    notify_here(w, id, version);
    sk__waiters_share_send(atomic_load(&w->share), id, version);
}

sk_status sk_waiters_share(sk_waiters *w, const sk_store *store, const char *name)
{
    sk__waiters_share *share = NULL;
    char purpose[16 + SK__WAITERS_SHARE_NAME_MAX];
    char *key = NULL;
    sk_status st;

    if (w == NULL || store == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_share: %s must not be NULL",
                       w == NULL ? "w" : "store");
    }
    if (!sk_name_is_valid(name, SK__WAITERS_SHARE_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL, "sk_waiters_share: name must be 1..%d bytes of [A-Za-z0-9_-]",
                       SK__WAITERS_SHARE_NAME_MAX);
    }
    if (atomic_load(&w->share) != NULL) {
        return SK_FAIL(SK_ESTATE, "sk_waiters_share: already shared");
    }
    /* The database's identity (its real path) and the name: what the peers have in common. */
    snprintf(purpose, sizeof(purpose), "waiters-%s", name);
    st = sk_store_lock_path(store, purpose, &key);
    if (st != SK_OK || key == NULL) {
        return st; /* SK_OK without a key: in memory, nobody else can read it */
    }
    st = sk__waiters_share_start(&share, key, notify_from_peer, w);
    sk_free(key);
    if (st != SK_OK) {
        return st;
    }
    atomic_store(&w->share, share);
    return SK_OK;
}
