/* SPDX-License-Identifier: MIT */
/*
 * Command and query buses: a sorted table of handlers by type, middlewares,
 * and calls that own a deep copy of their request so a handler may complete
 * them later from any thread. Invariant: a call is completed (its result
 * built, middlewares' afters run, metrics recorded, done called, the call
 * freed) exactly once; every live call is in a process-wide set, so a second
 * completion is recognised without touching freed memory.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cqrs/cqrs_int.h"

/* HTTP statuses 100..599 index the per-handler cache of counter series. */
#define STATUS_MIN   100
#define STATUS_SLOTS 500
#define DETAIL_MAX   1024
#define UNKNOWN_TYPE "_unknown"

typedef struct handler_entry {
    char *type;
    sk_validate_fn validate;
    sk_handler_fn handler;
    void *ctx;
    sk_histogram *latency; /* NULL without metrics */
    /*
     * Counter series by HTTP status, filled on first use. sk_metrics_counter is
     * get-or-create, so two threads racing to fill a slot store the same pointer.
     */
    _Atomic(sk_counter *) by_status[STATUS_SLOTS];
} handler_entry;

struct sk_cqrs_bus {
    sk_cqrs_kind kind;
    sk_metrics *metrics;     /* borrowed, may be NULL */
    handler_entry **entries; /* sorted by type; immutable once frozen */
    size_t n_entries;
    size_t cap_entries;
    handler_entry *unknown; /* metrics of calls to unknown types */
    sk_middleware *mws;     /* immutable once frozen */
    size_t n_mws;
    atomic_bool is_frozen;   /* set by the first dispatch; setup calls then fail */
    atomic_size_t n_pending; /* calls dispatched and not yet completed */
};

struct sk_call {
    sk_cqrs_bus *bus;
    handler_entry *entry; /* NULL for an unknown type */
    sk_request req;       /* points at the owned copies below */
    json_t *payload;
    char *type;
    char *idempotency_key;
    char *consistency_token;
    char *traceparent;
    char *request_id;
    sk_result_fn done;
    void *done_ctx;
    void *user;
    int64_t start_ns;
};

/* ---------------------------------------------------------------- live calls */

/*
 * Process-wide set of live calls (open addressing, linear probing, backward
 * shift deletion). It is global rather than per bus because a completion of
 * an already freed call must be detected without reading the call.
 */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static sk_call **live_slots; /* protected by live_mu */
static size_t live_cap;      /* protected by live_mu; 0 or a power of two */
static size_t live_n;        /* protected by live_mu */

static size_t live_hash(const sk_call *c, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)c;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static void live_put(sk_call **slots, size_t cap, sk_call *c)
{
    size_t i = live_hash(c, cap);

    while (slots[i] != NULL) {
        i = (i + 1) & (cap - 1);
    }
    slots[i] = c;
}

/* Caller holds live_mu. */
static sk_status live_insert(sk_call *c)
{
    if ((live_n + 1) * 2 > live_cap) {
        size_t cap = live_cap == 0 ? 64 : live_cap * 2;
        sk_call **slots = sk_calloc(cap, sizeof(*slots));

        if (slots == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_dispatch: growing the set of live calls");
        }
        for (size_t i = 0; i < live_cap; i++) {
            if (live_slots[i] != NULL) {
                live_put(slots, cap, live_slots[i]);
            }
        }
        sk_free(live_slots);
        live_slots = slots;
        live_cap = cap;
    }
    live_put(live_slots, live_cap, c);
    live_n++;
    return SK_OK;
}

/* Caller holds live_mu. @return true when @p c was live (and is now removed). */
static bool live_remove(const sk_call *c)
{
    size_t i;

    if (live_cap == 0) {
        return false;
    }
    i = live_hash(c, live_cap);
    while (live_slots[i] != c) {
        if (live_slots[i] == NULL) {
            return false;
        }
        i = (i + 1) & (live_cap - 1);
    }
    live_slots[i] = NULL;
    live_n--;
    /* Backward shift: move later members of the probe run into the hole. */
    for (size_t j = (i + 1) & (live_cap - 1); live_slots[j] != NULL; j = (j + 1) & (live_cap - 1)) {
        size_t home = live_hash(live_slots[j], live_cap);
        /* The entry at j may move to the hole at i unless its home lies in (i, j]. */
        bool home_between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);

        if (!home_between) {
            live_slots[i] = live_slots[j];
            live_slots[j] = NULL;
            i = j;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- helpers */

void sk__cqrs_pthread_check(int rc, const char *what)
{
    if (rc != 0) {
        SK_LOG_ERROR("%s failed: %s", what, strerror(rc));
        abort();
    }
}

bool sk__cqrs_type_is_valid(const char *s)
{
    size_t n = 0;

    if (s == NULL || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) {
        return false;
    }
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

        if (!ok || n >= SK__CQRS_TYPE_MAX) {
            return false;
        }
    }
    return true;
}

int sk_cqrs_http_status(sk_status st)
{
    switch (st) {
    case SK_OK:
        return 200;
    case SK_EINVAL:
    case SK_EPROTO:
        return 400;
    case SK_EDENIED:
        return 403;
    case SK_ENOTFOUND:
        return 404;
    case SK_EEXIST:
    case SK_ECONFLICT:
        return 409;
    case SK_ELIMIT:
        return 422;
    case SK_EUNAVAILABLE:
        return 503;
    case SK_ETIMEDOUT:
        return 504;
    default:
        return 500;
    }
}

static const char *kind_name(sk_cqrs_kind kind)
{
    return kind == SK_CQRS_QUERY ? "query" : "command";
}

/*
 * Copy untrusted text for a log line or an answer: at most buf_len - 1 bytes;
 * control bytes, non-ASCII, quotes and backslashes (and spaces unless
 * @p is_space_ok) become '?', so one event stays one line.
 */
static const char *text_safe(const char *s, char *buf, size_t buf_len, bool is_space_ok)
{
    size_t i = 0;

    if (s == NULL) {
        return "-";
    }
    for (; s[i] != '\0' && i + 1 < buf_len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = c > 0x20 && c < 0x7f && c != '"' && c != '\\';
        buf[i] = (ok || (is_space_ok && c == ' ')) ? (char)c : '?';
    }
    buf[i] = '\0';
    return buf;
}

static const char *log_safe(const char *s, char *buf, size_t buf_len)
{
    return text_safe(s, buf, buf_len, false);
}

static void entry_destroy(handler_entry *e)
{
    if (e != NULL) {
        sk_free(e->type);
        sk_free(e);
    }
}

static sk_status entry_create(sk_cqrs_bus *bus, const char *type, handler_entry **out)
{
    sk_status st = SK_OK;
    handler_entry *e = sk_calloc(1, sizeof(*e));
    char *labels = NULL;

    *out = NULL;
    if (e == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_register: allocating the handler entry");
        goto out;
    }
    e->type = sk_strdup(type);
    if (e->type == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_register: copying the type");
        goto out;
    }
    for (size_t i = 0; i < STATUS_SLOTS; i++) {
        atomic_init(&e->by_status[i], NULL);
    }
    if (bus->metrics != NULL) {
        labels = sk_asprintf("kind=\"%s\",type=\"%s\"", kind_name(bus->kind), type);
        if (labels == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_register: formatting metric labels");
            goto out;
        }
        e->latency = sk_metrics_histogram(
            bus->metrics, "sk_cqrs_request_duration_seconds",
            "Time from dispatch to completion of commands and queries", labels);
        if (e->latency == NULL) {
            st = SK_WRAP(sk_error_status() == SK_OK ? SK_ENOMEM : sk_error_status(),
                         "sk_cqrs_bus_register: latency histogram");
            goto out;
        }
    }
    *out = e;
    e = NULL;
out:
    sk_free(labels);
    entry_destroy(e);
    return st;
}

/* Counter series of (entry, status); NULL without metrics or when it cannot be created. */
static sk_counter *entry_counter(sk_cqrs_bus *bus, handler_entry *e, int http_status)
{
    sk_counter *c;
    char labels[160];

    if (bus->metrics == NULL || http_status < STATUS_MIN ||
        http_status >= STATUS_MIN + STATUS_SLOTS) {
        return NULL;
    }
    c = atomic_load_explicit(&e->by_status[http_status - STATUS_MIN], memory_order_acquire);
    if (c != NULL) {
        return c;
    }
    snprintf(labels, sizeof(labels), "kind=\"%s\",type=\"%s\",status=\"%d\"", kind_name(bus->kind),
             e->type, http_status);
    c = sk_metrics_counter(bus->metrics, "sk_cqrs_requests_total",
                           "Commands and queries answered, by type and HTTP status", labels);
    if (c != NULL) {
        atomic_store_explicit(&e->by_status[http_status - STATUS_MIN], c, memory_order_release);
    }
    return c;
}

/* ---------------------------------------------------------------- bus */

sk_status sk_cqrs_bus_create(sk_cqrs_bus **out, sk_cqrs_kind kind, sk_metrics *metrics)
{
    sk_status st = SK_OK;
    sk_cqrs_bus *bus = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_create: out must not be NULL");
    }
    *out = NULL;
    if (kind != SK_CQRS_COMMAND && kind != SK_CQRS_QUERY) {
        return SK_FAIL(SK_EINVAL,
                       "sk_cqrs_bus_create: kind must be SK_CQRS_COMMAND or SK_CQRS_QUERY");
    }
    bus = sk_calloc(1, sizeof(*bus));
    if (bus == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_create: allocating the bus");
        goto out;
    }
    bus->kind = kind;
    bus->metrics = metrics;
    atomic_init(&bus->is_frozen, false);
    atomic_init(&bus->n_pending, 0);
    st = entry_create(bus, UNKNOWN_TYPE, &bus->unknown);
    if (st != SK_OK) {
        goto out;
    }
    *out = bus;
    bus = NULL;
out:
    sk_cqrs_bus_destroy(bus);
    return st;
}

void sk_cqrs_bus_destroy(sk_cqrs_bus *bus)
{
    size_t pending;

    if (bus == NULL) {
        return;
    }
    pending = atomic_load(&bus->n_pending);
    if (pending > 0) {
        /* Their handlers still hold the calls, which point at the bus: leaking beats a crash. */
        SK_LOG_ERROR("sk_cqrs_bus_destroy: %zu %s call(s) still pending; the bus is leaked",
                     pending, kind_name(bus->kind));
        return;
    }
    for (size_t i = 0; i < bus->n_entries; i++) {
        entry_destroy(bus->entries[i]);
    }
    sk_free(bus->entries);
    entry_destroy(bus->unknown);
    for (size_t i = 0; i < bus->n_mws; i++) {
        sk_free((char *)bus->mws[i].name);
    }
    sk_free(bus->mws);
    sk_free(bus);
}

size_t sk__cqrs_bus_pending(sk_cqrs_bus *bus)
{
    return bus == NULL ? 0 : atomic_load(&bus->n_pending);
}

/* Index where @p type is or would be inserted; *found tells which. */
static size_t entry_find(const sk_cqrs_bus *bus, const char *type, bool *found)
{
    size_t lo = 0;
    size_t hi = bus->n_entries;

    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(bus->entries[mid]->type, type);

        if (cmp == 0) {
            *found = true;
            return mid;
        }
        if (cmp < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

sk_status sk_cqrs_bus_register(
    sk_cqrs_bus *bus, const char *type, sk_validate_fn validate, sk_handler_fn handler, void *ctx)
{
    sk_status st = SK_OK;
    handler_entry *e = NULL;
    bool found = false;
    size_t at;

    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_register: bus must not be NULL");
    }
    if (!sk__cqrs_type_is_valid(type)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_cqrs_bus_register: type must match [A-Za-z][A-Za-z0-9]{0,63}");
    }
    if (handler == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_register: handler must not be NULL (type %s)", type);
    }
    if (atomic_load(&bus->is_frozen)) {
        return SK_FAIL(SK_ESTATE, "sk_cqrs_bus_register: %s: the bus is already dispatching", type);
    }
    at = entry_find(bus, type, &found);
    if (found) {
        return SK_FAIL(SK_EEXIST, "sk_cqrs_bus_register: %s type %s already has a handler",
                       kind_name(bus->kind), type);
    }
    if (bus->n_entries == bus->cap_entries) {
        size_t cap = bus->cap_entries == 0 ? 8 : bus->cap_entries * 2;
        handler_entry **grown = sk_realloc(bus->entries, cap * sizeof(*grown));

        if (grown == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_register: growing the handler table");
            goto out;
        }
        bus->entries = grown;
        bus->cap_entries = cap;
    }
    st = entry_create(bus, type, &e);
    if (st != SK_OK) {
        goto out;
    }
    e->validate = validate;
    e->handler = handler;
    e->ctx = ctx;
    memmove(&bus->entries[at + 1], &bus->entries[at],
            (bus->n_entries - at) * sizeof(*bus->entries));
    bus->entries[at] = e;
    bus->n_entries++;
out:
    return st;
}

sk_status sk_cqrs_bus_use(sk_cqrs_bus *bus, const sk_middleware *mw)
{
    sk_middleware *grown;
    char *name;

    if (bus == NULL || mw == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_use: bus and mw must not be NULL");
    }
    if (mw->before == NULL && mw->after == NULL) {
        return SK_FAIL(SK_EINVAL,
                       "sk_cqrs_bus_use: middleware needs a before or an after function");
    }
    if (atomic_load(&bus->is_frozen)) {
        return SK_FAIL(SK_ESTATE, "sk_cqrs_bus_use: the bus is already dispatching");
    }
    name = sk_strdup(mw->name != NULL ? mw->name : "middleware");
    if (name == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_use: copying the name");
    }
    grown = sk_realloc(bus->mws, (bus->n_mws + 1) * sizeof(*grown));
    if (grown == NULL) {
        sk_free(name);
        return SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_use: growing the middleware list");
    }
    bus->mws = grown;
    bus->mws[bus->n_mws] = *mw;
    bus->mws[bus->n_mws].name = name;
    bus->n_mws++;
    return SK_OK;
}

/* ---------------------------------------------------------------- calls */

static void call_free(sk_call *call)
{
    if (call == NULL) {
        return;
    }
    json_decref(call->payload);
    sk_free(call->type);
    sk_free(call->idempotency_key);
    sk_free(call->consistency_token);
    sk_free(call->traceparent);
    sk_free(call->request_id);
    sk_free(call);
}

/* Copy an optional string; false on out of memory. */
static bool dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL) {
        return true;
    }
    *out = sk_strdup(s);
    return *out != NULL;
}

/*
 * The one completion path. Takes @p body. @p detail is the text the log gets;
 * a 500 answers "internal error" instead.
 */
static void call_finish(sk_call *call,
                        int http_status,
                        json_t *body,
                        const char *title,
                        const char *detail,
                        const char *location)
{
    sk_cqrs_bus *bus;
    handler_entry *e;
    sk_result res;
    int64_t elapsed_ns;
    bool was_live;
    char rid[72];
    char dbuf[256];

    if (call == NULL) {
        SK_LOG_ERROR("sk_call completion with a NULL call; ignored");
        json_decref(body);
        return;
    }
    sk__cqrs_pthread_check(pthread_mutex_lock(&live_mu), "pthread_mutex_lock");
    was_live = live_remove(call);
    sk__cqrs_pthread_check(pthread_mutex_unlock(&live_mu), "pthread_mutex_unlock");
    if (!was_live) {
        /* Do not read *call: it is freed (or was never a call). */
        SK_LOG_ERROR("sk_call %p completed twice (or never dispatched): second completion "
                     "(status %d) ignored",
                     (void *)call, http_status);
        json_decref(body);
        return;
    }
    bus = call->bus;
    e = call->entry != NULL ? call->entry : bus->unknown;
    if (http_status < 100 || http_status > 599) {
        SK_LOG_ERROR("%s %s: completed with invalid HTTP status %d; answering 500",
                     kind_name(bus->kind), e->type, http_status);
        http_status = 500;
        json_decref(body);
        body = NULL;
        title = NULL;
        detail = "handler completed with an invalid HTTP status";
        location = NULL;
    }

    memset(&res, 0, sizeof(res));
    res.http_status = http_status;
    res.body = body;
    res.location = location;
    if (http_status >= 400) {
        res.title = title != NULL ? title : sk_http_reason(http_status);
        res.detail = detail != NULL ? detail : res.title;
        if (http_status == 500) {
            res.detail = "internal error";
        }
    }
    elapsed_ns = sk_time_mono_ns() - call->start_ns;
    if (elapsed_ns < 0) {
        elapsed_ns = 0;
    }

    for (size_t i = bus->n_mws; i > 0; i--) {
        const sk_middleware *mw = &bus->mws[i - 1];
        if (mw->after != NULL) {
            mw->after(&call->req, &res, elapsed_ns, mw->ctx);
        }
    }

    if (bus->metrics != NULL) {
        sk_counter *c = entry_counter(bus, e, http_status);
        if (c != NULL) {
            sk_counter_add(c, 1);
        }
        if (e->latency != NULL) {
            sk_histogram_observe(e->latency, (double)elapsed_ns / 1e9);
        }
    }

    if (http_status >= 500) {
        SK_LOG_WARN("%s %s status=%d elapsed_us=%lld request_id=%s detail=\"%s\"",
                    kind_name(bus->kind), e->type, http_status, (long long)(elapsed_ns / 1000),
                    log_safe(call->request_id, rid, sizeof(rid)),
                    text_safe(detail != NULL ? detail : res.title, dbuf, sizeof(dbuf), true));
    } else {
        SK_LOG_DEBUG("%s %s status=%d elapsed_us=%lld request_id=%s", kind_name(bus->kind), e->type,
                     http_status, (long long)(elapsed_ns / 1000),
                     log_safe(call->request_id, rid, sizeof(rid)));
    }

    call->done(&res, call->done_ctx);
    json_decref(body);
    atomic_fetch_sub(&bus->n_pending, 1);
    call_free(call);
}

/* Answer an error from a status and the calling thread's message (copied first). */
static void call_fail_with_message(sk_call *call, sk_status st, int http_status, const char *prefix)
{
    char detail[DETAIL_MAX];
    const char *msg = sk_error_message();

    if (msg[0] == '\0') {
        msg = sk_status_text(st);
    }
    snprintf(detail, sizeof(detail), "%s%s", prefix, msg);
    call_finish(call, http_status, NULL, NULL, detail, NULL);
}

sk_status
sk_cqrs_bus_dispatch(sk_cqrs_bus *bus, const sk_request *req, sk_result_fn done, void *ctx)
{
    sk_status st = SK_OK;
    sk_call *call = NULL;
    bool found = false;
    size_t at;

    if (bus == NULL || req == NULL || done == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_dispatch: bus, req and done must not be NULL");
    }
    if (req->type == NULL || req->type[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_dispatch: req->type must be a non-empty string");
    }
    if (req->payload != NULL && !json_is_object(req->payload)) {
        return SK_FAIL(SK_EINVAL, "sk_cqrs_bus_dispatch: req->payload must be a JSON object");
    }
    atomic_store(&bus->is_frozen, true);

    call = sk_calloc(1, sizeof(*call));
    if (call == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_dispatch: allocating the call");
        goto out;
    }
    call->bus = bus;
    call->done = done;
    call->done_ctx = ctx;
    call->start_ns = sk_time_mono_ns();
    call->payload = req->payload != NULL ? json_deep_copy(req->payload) : json_object();
    if (call->payload == NULL || !dup_opt(req->type, &call->type) ||
        !dup_opt(req->idempotency_key, &call->idempotency_key) ||
        !dup_opt(req->consistency_token, &call->consistency_token) ||
        !dup_opt(req->traceparent, &call->traceparent) ||
        !dup_opt(req->request_id, &call->request_id)) {
        st = SK_FAIL(SK_ENOMEM, "sk_cqrs_bus_dispatch: copying the request");
        goto out;
    }
    call->req.type = call->type;
    call->req.payload = call->payload;
    call->req.idempotency_key = call->idempotency_key;
    call->req.consistency_token = call->consistency_token;
    call->req.traceparent = call->traceparent;
    call->req.request_id = call->request_id;
    if (sk__cqrs_type_is_valid(call->type)) {
        at = entry_find(bus, call->type, &found);
        call->entry = found ? bus->entries[at] : NULL;
    }

    sk__cqrs_pthread_check(pthread_mutex_lock(&live_mu), "pthread_mutex_lock");
    st = live_insert(call);
    sk__cqrs_pthread_check(pthread_mutex_unlock(&live_mu), "pthread_mutex_unlock");
    if (st != SK_OK) {
        goto out;
    }
    atomic_fetch_add(&bus->n_pending, 1);
    /* From here on the call is always answered: this returns SK_OK. */

    for (size_t i = 0; i < bus->n_mws; i++) {
        const sk_middleware *mw = &bus->mws[i];
        sk_status mst;
        char prefix[96];

        if (mw->before == NULL) {
            continue;
        }
        sk_error_clear();
        mst = mw->before(&call->req, mw->ctx);
        if (mst != SK_OK) {
            snprintf(prefix, sizeof(prefix), "refused by %s: ", mw->name);
            call_fail_with_message(call, mst, sk_cqrs_http_status(mst), prefix);
            return SK_OK;
        }
    }
    if (call->entry == NULL) {
        char detail[DETAIL_MAX];
        char tbuf[72];

        snprintf(detail, sizeof(detail), "unknown %s type \"%s\"", kind_name(bus->kind),
                 log_safe(call->type, tbuf, sizeof(tbuf)));
        call_finish(call, 404, NULL, NULL, detail, NULL);
        return SK_OK;
    }
    if (call->entry->validate != NULL) {
        sk_status vst;

        sk_error_clear();
        vst = call->entry->validate(call->payload, call->entry->ctx);
        if (vst != SK_OK) {
            int http = sk_cqrs_http_status(vst);
            if (vst == SK_EPROTO || vst == SK_EINVAL) {
                http = 400;
            } else if (vst == SK_ELIMIT) {
                http = 422;
            }
            call_fail_with_message(call, vst, http, "");
            return SK_OK;
        }
    }
    call->entry->handler(call, call->entry->ctx);
    return SK_OK;
out:
    call_free(call);
    return st;
}

const sk_request *sk_call_request(const sk_call *call)
{
    return call == NULL ? NULL : &call->req;
}

void sk_call_set_user(sk_call *call, void *user)
{
    if (call != NULL) {
        call->user = user;
    }
}

void *sk_call_user(const sk_call *call)
{
    return call == NULL ? NULL : call->user;
}

void sk_call_complete(sk_call *call, int http_status, json_t *body, const char *location)
{
    /* @p location is only read until done returns, so it needs no copy of ours. */
    call_finish(call, http_status, body, NULL, NULL, location);
}

void sk_call_fail(sk_call *call, sk_status st, const char *detail_fmt, ...)
{
    char detail[DETAIL_MAX];
    int http = sk_cqrs_http_status(st);

    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
    } else {
        snprintf(detail, sizeof(detail), "%s", sk_status_text(st));
    }
    if (st == SK_OK) {
        /* Failing with success is a bug in the handler; answer it as one. */
        SK_LOG_ERROR("sk_call_fail called with SK_OK (%s); answering 500", detail);
        http = 500;
    }
    call_finish(call, http, NULL, NULL, detail, NULL);
}

void sk_call_fail_http(
    sk_call *call, int http_status, const char *title, const char *detail_fmt, ...)
{
    char detail[DETAIL_MAX];
    const char *d = NULL;

    if (detail_fmt != NULL) {
        va_list ap;
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
        d = detail;
    }
    if (http_status < 400 || http_status > 599) {
        SK_LOG_ERROR("sk_call_fail_http called with non-error status %d; answering 500",
                     http_status);
        http_status = 500;
        title = NULL;
    }
    call_finish(call, http_status, NULL, title, d, NULL);
}
