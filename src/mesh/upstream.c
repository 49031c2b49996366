/* SPDX-License-Identifier: MIT */
/*
 * Upstream: one named service reached through the HTTP client, its endpoint
 * set (replaced wholesale by discovery; per-host state survives for hosts
 * that stay) and its traffic policy with Istio semantics. A request (a
 * "call") goes: fault decision -> pool admission (go, queue, or 503 overflow)
 * -> endpoint pick (load balancer over hosts not ejected, unless panic) ->
 * attempt with per-try timeout = min(perTryTimeout, time left) -> outcome fed
 * to outlier detection -> maybe a retry (another host preferred, jittered
 * back-off or Retry-After, only when idempotent once the request may have
 * reached the upstream) -> exactly one completion. The overall timeout bounds
 * all of it. Every call state lives under u->mu; callbacks to the caller run
 * without it, on the client thread or the upstream's timer thread, and
 * inside sk_upstream_send only when the call could not be started at all
 * (out of memory, a client being destroyed). The upstream is
 * reference-counted by its calls so a completion arriving after
 * sk_upstream_destroy is safe. Thread-safe.
 */
#include "mesh/mesh_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_ENDPOINTS             1024u
#define MAX_ENDPOINT_LEN          255u
#define CLIENT_DEFAULT_TIMEOUT_MS 10000
#define MAX_TRIES                 (SK__RETRY_MAX_ATTEMPTS + 1)
#define ERRMSG_BYTES              512

typedef struct ep {
    char *addr;
    int refs;        /* the endpoint set + attempts in flight on it */
    bool is_member;  /* still in the endpoint set */
    uint32_t active; /* requests in flight (LEAST_REQUEST) */
    uint64_t n_sent; /* requests started (maxRequestsPerConnection) */
    sk__outlier_host oh;
} ep;

typedef enum call_state {
    CALL_NEW,       /* being set up in sk_upstream_send */
    CALL_DELAYING,  /* fault delay or asynchronous completion pending on a timer */
    CALL_QUEUED,    /* waiting for a pool slot */
    CALL_IN_FLIGHT, /* an attempt is with the HTTP client */
    CALL_BACKOFF,   /* waiting before a retry */
    CALL_DONE       /* completed (the completing thread delivers) */
} call_state;

typedef struct call {
    struct call *next, *prev; /* pending queue, or the delivery list */
    sk_upstream *u;
    sk_http_done_fn done;
    void *ctx;
    int refs; /* under u->mu: sk_upstream_send, client, step timer, deadline timer, queue */
    call_state state;
    char *method;
    char *path;
    char **headers; /* NULL-terminated copy */
    size_t n_headers;
    char *body;
    size_t body_len;
    bool is_idempotent;
    int64_t deadline_ms; /* monotonic; 0 = none */
    int n_tries;
    ep *cur;              /* endpoint of the attempt in flight */
    ep *tried[MAX_TRIES]; /* endpoints tried (referenced) */
    size_t n_tried;
    uint64_t step_timer;     /* delay / back-off / async completion timer id, 0 = none */
    uint64_t deadline_timer; /* 0 = none */
    int abort_status;        /* fault abort pending after a delay */
    bool is_overflow;        /* deliver a 503 pool overflow */
    /* Result to deliver (set when state becomes DONE, or kept from the last attempt). */
    sk_status res_st;
    int res_status;
    sk_buf res_body;
    char *res_content_type;
    char *res_location;
    char *res_retry_after;
    bool res_is_request_sent;
    bool has_res;
    char errmsg[ERRMSG_BYTES];
} call;

struct sk_upstream {
    sk_http_client *client; /* borrowed; outlives the upstream's calls */
    char *service;
    sk__upstream_policy policy;
    sk__timers *timers;
    sk__clock_fn clock;
    void *clock_ctx;
    sk__rand_fn rnd;
    void *rnd_ctx;
    bool is_tls;
    /* Metrics (NULL handles when no registry); the by-status cache is filled lazily. */
    sk_metrics *metrics;
    sk_counter *n_retries;
    sk_counter *n_ejections;
    sk_counter *n_overflows;
    sk_gauge *g_ejected;
    _Atomic(sk_counter *) by_status[600];
    _Atomic(sk_counter *) by_error[SK_STATUS_COUNT_];
    pthread_mutex_t mu; /* protects everything below, and every call's fields */
    int refs;           /* the owner + one per call alive */
    bool is_closing;
    ep **eps;
    size_t n_eps;
    uint64_t rr_cursor;
    sk__outlier outlier;
    sk__pool pool;
    call *q_head, *q_tail; /* pending requests, FIFO */
};

static void lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) != 0) {
        abort();
    }
}

static void unlock(pthread_mutex_t *mu)
{
    if (pthread_mutex_unlock(mu) != 0) {
        abort();
    }
}

/* ---------------------------------------------------------------- endpoints */

/* "host:port" with an IPv4 address or name, or "[v6]:port"; port 1..65535. */
static bool endpoint_is_valid(const char *s)
{
    size_t n = strlen(s);
    const char *colon = strrchr(s, ':');
    long port = 0;

    if (n == 0 || n > MAX_ENDPOINT_LEN || colon == NULL || colon == s || colon[1] == '\0') {
        return false;
    }
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || port > 65535) {
            return false;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        return false;
    }
    if (s[0] == '[') {
        if (colon[-1] != ']') {
            return false;
        }
        for (const char *p = s + 1; p < colon - 1; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.')) {
                return false;
            }
        }
        return colon - s > 2;
    }
    for (const char *p = s; p < colon; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '.' || *p == '-')) {
            return false;
        }
    }
    return true;
}

/* Drop one reference (under u->mu, or when no other thread can see it). */
static void ep_unref(ep *e)
{
    if (e != NULL && --e->refs == 0) {
        sk_free(e->addr);
        sk_free(e);
    }
}

static void eps_release(ep **eps, size_t n)
{
    for (size_t i = 0; eps != NULL && i < n; i++) {
        eps[i]->is_member = false;
        ep_unref(eps[i]);
    }
    sk_free(eps);
}

static size_t ep_index(const sk_upstream *u, const ep *e)
{
    for (size_t i = 0; i < u->n_eps; i++) {
        if (u->eps[i] == e) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Host views for the outlier detector (u->mu held); NULL when there are none. */
static sk__outlier_host **hosts_view(sk_upstream *u, sk__outlier_host **stack, size_t cap)
{
    sk__outlier_host **v = u->n_eps <= cap ? stack : sk_calloc(u->n_eps, sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < u->n_eps; i++) {
        v[i] = &u->eps[i]->oh;
    }
    return v;
}

static void hosts_view_free(sk__outlier_host **v, sk__outlier_host **stack)
{
    if (v != stack) {
        sk_free(v);
    }
}

/* Run the interval sweep when due and update the ejected-hosts gauge (u->mu held). */
static void outlier_sweep_locked(sk_upstream *u, int64_t now)
{
    sk__outlier_host *stack[64] = { NULL };
    sk__outlier_host **v;

    if (!u->policy.outlier.is_enabled || now < u->outlier.next_sweep_ms) {
        return;
    }
    v = hosts_view(u, stack, 64);
    if (v == NULL && u->n_eps > 0) {
        return; /* out of memory: sweep on the next request */
    }
    SK_IGNORE(sk__outlier_sweep(&u->outlier, v, u->n_eps, now)); /* count not needed */
    sk_gauge_set(u->g_ejected, (int64_t)sk__outlier_n_ejected(v, u->n_eps));
    hosts_view_free(v, stack);
}

/*
 * Choose an endpoint (u->mu held): hosts not ejected (all of them in panic
 * mode), preferring ones this call has not tried. NULL when none.
 */
static ep *pick_locked(sk_upstream *u, const call *c)
{
    bool ustack[64];
    uint32_t astack[64];
    sk__outlier_host *hstack[64];
    bool *usable = u->n_eps <= 64 ? ustack : sk_calloc(u->n_eps, sizeof(bool));
    uint32_t *active = u->n_eps <= 64 ? astack : sk_calloc(u->n_eps, sizeof(uint32_t));
    sk__outlier_host **v = hosts_view(u, hstack, 64);
    bool is_panic;
    size_t n_usable = 0;
    size_t k = SIZE_MAX;
    ep *chosen = NULL;

    if (u->n_eps == 0 || usable == NULL || active == NULL || v == NULL) {
        goto out;
    }
    is_panic = sk__outlier_is_panic(&u->outlier, v, u->n_eps);
    for (size_t i = 0; i < u->n_eps; i++) {
        usable[i] = is_panic || !u->eps[i]->oh.is_ejected;
        active[i] = u->eps[i]->active;
    }
    /* Istio's previous-hosts retry predicate: avoid hosts already tried while others remain. */
    for (size_t i = 0; i < u->n_eps; i++) {
        bool was_tried = false;
        for (size_t t = 0; c != NULL && t < c->n_tried; t++) {
            was_tried = was_tried || c->tried[t] == u->eps[i];
        }
        if (usable[i] && !was_tried) {
            n_usable++;
        }
    }
    if (n_usable > 0 && c != NULL && c->n_tried > 0) {
        for (size_t i = 0; i < u->n_eps; i++) {
            for (size_t t = 0; t < c->n_tried; t++) {
                if (c->tried[t] == u->eps[i]) {
                    usable[i] = false;
                }
            }
        }
    }
    k = sk__lb_pick(u->policy.lb, &u->rr_cursor, usable, active, u->n_eps, u->rnd, u->rnd_ctx);
    if (k != SIZE_MAX) {
        chosen = u->eps[k];
    }
out:
    if (usable != ustack) {
        sk_free(usable);
    }
    if (active != astack) {
        sk_free(active);
    }
    if (v != NULL) {
        hosts_view_free(v, hstack);
    }
    return chosen;
}

/* ---------------------------------------------------------------- metrics */

static sk_counter *status_counter(sk_upstream *u, sk_status st, int http_status)
{
    _Atomic(sk_counter *) *slot;
    sk_counter *c;
    char labels[96];

    if (u->metrics == NULL) {
        return NULL;
    }
    if (st == SK_OK && http_status >= 100 && http_status < 600) {
        slot = &u->by_status[http_status];
        snprintf(labels, sizeof(labels), "upstream=\"%s\",status=\"%d\"", u->service, http_status);
    } else {
        if (st == SK_OK || (int)st < 0 || st >= SK_STATUS_COUNT_) {
            st = SK_EIO;
        }
        slot = &u->by_error[st];
        snprintf(labels, sizeof(labels), "upstream=\"%s\",status=\"%s\"", u->service,
                 sk_status_name(st));
    }
    c = atomic_load(slot);
    if (c == NULL) {
        /* Registration is idempotent (same labels, same series), so a race is harmless. */
        c = sk_metrics_counter(u->metrics, "sk_upstream_requests_total",
                               "Upstream requests by final status (HTTP code or Skald status)",
                               labels);
        if (c == NULL) {
            sk_error_clear(); /* a metric we cannot register must not fail the request */
            return NULL;
        }
        atomic_store(slot, c);
    }
    return c;
}

/* ---------------------------------------------------------------- calls */

static void call_res_clear(call *c)
{
    sk_buf_fini(&c->res_body);
    sk_buf_init(&c->res_body, SK_MAX_HTTP_BODY);
    sk_free(c->res_content_type);
    sk_free(c->res_location);
    sk_free(c->res_retry_after);
    c->res_content_type = c->res_location = c->res_retry_after = NULL;
    c->res_st = SK_OK;
    c->res_status = 0;
    c->res_is_request_sent = false;
    c->has_res = false;
    c->errmsg[0] = '\0';
}

static void call_free(call *c)
{
    for (size_t i = 0; c->headers != NULL && i < c->n_headers; i++) {
        sk_free(c->headers[i]);
    }
    sk_free(c->headers);
    sk_free(c->method);
    sk_free(c->path);
    sk_free(c->body);
    sk_buf_fini(&c->res_body);
    sk_free(c->res_content_type);
    sk_free(c->res_location);
    sk_free(c->res_retry_after);
    sk_free(c);
}

static void upstream_free(sk_upstream *u);

/* Drop a call reference (u->mu held). @return true when the upstream must be freed. */
static bool call_unref_locked(call *c)
{
    sk_upstream *u = c->u;

    if (--c->refs > 0) {
        return false;
    }
    for (size_t i = 0; i < c->n_tried; i++) {
        ep_unref(c->tried[i]);
    }
    call_free(c);
    return --u->refs == 0;
}

static void call_unref(call *c)
{
    sk_upstream *u = c->u;
    bool is_last;

    lock(&u->mu);
    is_last = call_unref_locked(c);
    unlock(&u->mu);
    if (is_last) {
        upstream_free(u);
    }
}

/* Record the result to deliver from a client response (borrowed) or a failure. */
static void call_res_set(call *c, sk_status st, const sk_http_response *resp, const char *errmsg)
{
    call_res_clear(c);
    c->has_res = true;
    c->res_st = st;
    if (st == SK_OK && resp != NULL) {
        c->res_status = resp->status;
        if (resp->body.len > 0 &&
            sk_buf_append(&c->res_body, resp->body.ptr, resp->body.len) != SK_OK) {
            /* Cannot keep the body: deliver a bodiless answer rather than nothing. */
            sk_error_clear();
        }
        c->res_content_type = resp->content_type != NULL ? sk_strdup(resp->content_type) : NULL;
        c->res_location = resp->location != NULL ? sk_strdup(resp->location) : NULL;
        c->res_retry_after = resp->retry_after != NULL ? sk_strdup(resp->retry_after) : NULL;
    }
    c->res_is_request_sent = resp != NULL && resp->is_request_sent;
    if (errmsg != NULL) {
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", errmsg);
    }
}

/* A local answer (pool overflow, fault abort) as problem+json. */
static void call_res_local(call *c, int status, const char *detail)
{
    call_res_clear(c);
    c->has_res = true;
    c->res_st = SK_OK;
    c->res_status = status;
    c->res_is_request_sent = false;
    if (sk__http_problem_format(&c->res_body, status, NULL, detail, NULL) == SK_OK) {
        c->res_content_type = sk_strdup("application/problem+json");
    } else {
        sk_error_clear();
    }
}

/* Cancel a timer this call holds a reference for (u->mu held). */
static void call_cancel_timer(call *c, uint64_t *id)
{
    if (*id != 0 && sk__timers_cancel(c->u->timers, *id)) {
        c->refs--; /* the timer's reference; never the last (the caller holds one) */
    }
    *id = 0;
}

static void queue_remove(sk_upstream *u, call *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        u->q_head = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        u->q_tail = c->prev;
    }
    c->next = c->prev = NULL;
}

/*
 * Mark @p c done (u->mu held) and put it on @p deliver; the caller calls
 * deliver_all after unlocking. The delivery list holds a reference.
 */
static void call_finish_locked(call *c, call **deliver)
{
    if (c->state == CALL_DONE) {
        return;
    }
    if (c->state == CALL_QUEUED) {
        queue_remove(c->u, c);
        sk__pool_unqueue(&c->u->pool);
        c->refs--; /* the queue's reference; the caller holds another */
    }
    c->state = CALL_DONE;
    call_cancel_timer(c, &c->step_timer);
    call_cancel_timer(c, &c->deadline_timer);
    c->refs++;
    c->next = *deliver;
    c->prev = NULL;
    *deliver = c;
}

static void deliver_all(call *list)
{
    while (list != NULL) {
        call *c = list;
        sk_http_response resp = { 0 };
        sk_upstream *u = c->u;

        list = c->next;
        c->next = NULL;
        if (c->res_st == SK_OK) {
            resp.status = c->res_status;
            resp.body =
                (sk_slice){ (const uint8_t *)(c->res_body.data != NULL ? c->res_body.data : ""),
                            c->res_body.len };
            resp.content_type = c->res_content_type;
            resp.location = c->res_location;
            resp.retry_after = c->res_retry_after;
            sk_error_clear();
        } else {
            SK_FAIL(c->res_st, "upstream %s: %s", u->service,
                    c->errmsg[0] != '\0' ? c->errmsg : sk_status_text(c->res_st));
        }
        resp.is_request_sent = c->res_is_request_sent;
        sk_counter_add(status_counter(u, c->res_st, c->res_status), 1);
        c->done(c->res_st, &resp, c->ctx);
        call_unref(c);
    }
}

static void on_attempt_done(sk_status st, const sk_http_response *resp, void *ctx);
static void on_step_timer(void *ctx, bool is_canceled);

static int64_t now_ms(const sk_upstream *u)
{
    return u->clock(u->clock_ctx);
}

/*
 * Start an attempt of @p c, which holds a pool slot (u->mu held). On
 * failure the slot is released and the call finished with the error.
 */
static void start_attempt_locked(call *c, call **deliver);

/* Give a freed slot to the next queued call, or free it (u->mu held). */
static void slot_release_locked(sk_upstream *u, call **deliver)
{
    call *next;

    if (!sk__pool_release(&u->pool)) {
        return;
    }
    next = u->q_head;
    if (next == NULL) {
        /* Counting drifted (cannot happen): give the slot back. */
        u->pool.n_active = u->pool.n_active > 0 ? u->pool.n_active - 1 : 0;
        return;
    }
    queue_remove(u, next);
    next->state = CALL_NEW;
    /* On failure it finishes and releases the slot again, which serves the next one. */
    start_attempt_locked(next, deliver);
    /* The queue's reference; another call keeps the upstream alive, so this never frees it. */
    SK_IGNORE(call_unref_locked(next));
}

static void start_attempt_locked(call *c, call **deliver)
{
    sk_upstream *u = c->u;
    int64_t now = now_ms(u);
    int64_t timeout_ms = 0;
    sk_http_request r = { 0 };
    char *url = NULL;
    ep *e;
    sk_status st;

    if (u->is_closing) {
        call_res_set(c, SK_ECANCELED, NULL, "the upstream is being destroyed");
        goto fail;
    }
    if (c->deadline_ms > 0) {
        timeout_ms = c->deadline_ms - now;
        if (timeout_ms <= 0) {
            call_res_set(c, SK_ETIMEDOUT, NULL, "timeout exceeded before an attempt could start");
            goto fail;
        }
    }
    if (u->policy.retry.per_try_timeout_ms > 0 &&
        (timeout_ms == 0 || u->policy.retry.per_try_timeout_ms < timeout_ms)) {
        timeout_ms = u->policy.retry.per_try_timeout_ms;
    }
    if (timeout_ms == 0) {
        timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    }
    outlier_sweep_locked(u, now);
    e = pick_locked(u, c);
    if (e == NULL) {
        if (!c->has_res || c->n_tries == 0) {
            call_res_set(c, SK_EUNAVAILABLE, NULL,
                         u->n_eps == 0 ? "no endpoint" : "no healthy endpoint (all ejected)");
        }
        goto fail;
    }
    url = sk_asprintf("%s://%s%s", u->is_tls ? "https" : "http", e->addr, c->path);
    if (url == NULL) {
        call_res_set(c, SK_ENOMEM, NULL, "building the URL");
        goto fail;
    }
    r.method = c->method;
    r.url = url;
    r.headers = (const char *const *)c->headers;
    r.body = c->body;
    r.body_len = c->body_len;
    r.timeout_ms = timeout_ms;
    r.connect_timeout_ms = u->policy.pool.connect_timeout_ms < timeout_ms
                               ? u->policy.pool.connect_timeout_ms
                               : timeout_ms;
    r.expect_service = u->is_tls ? u->service : NULL;
    e->n_sent++;
    /* HTTP/1.1: one request per connection at a time, so closing the connection every N-th
     * request to a host bounds the requests any connection to it carries on average; with
     * maxRequestsPerConnection 1 (keep-alive off) it is exact. */
    r.is_reuse_forbidden = u->policy.pool.max_requests_per_connection > 0 &&
                           e->n_sent % u->policy.pool.max_requests_per_connection == 0;
    c->refs++; /* the client's reference */
    st = sk_http_client_send(u->client, &r, on_attempt_done, c);
    sk_free(url);
    if (st != SK_OK) {
        c->refs--;
        call_res_set(c, st, NULL, sk_error_message());
        goto fail;
    }
    e->refs++;
    e->active++;
    c->cur = e;
    if (c->n_tried < MAX_TRIES) {
        e->refs++;
        c->tried[c->n_tried++] = e;
    }
    c->n_tries++;
    c->state = CALL_IN_FLIGHT;
    return;
fail:
    c->state = CALL_NEW;
    call_finish_locked(c, deliver);
    slot_release_locked(u, deliver);
}

static bool step_schedule_locked(call *c, int64_t due);

/* Admit @p c to the pool and start, queue or overflow it (u->mu held). */
static void admit_locked(call *c, call **deliver)
{
    sk_upstream *u = c->u;

    switch (sk__pool_admit(&u->pool)) {
    case SK__POOL_GO:
        start_attempt_locked(c, deliver);
        break;
    case SK__POOL_QUEUE:
        c->state = CALL_QUEUED;
        c->refs++; /* the queue's reference */
        c->prev = u->q_tail;
        c->next = NULL;
        if (u->q_tail != NULL) {
            u->q_tail->next = c;
        } else {
            u->q_head = c;
        }
        u->q_tail = c;
        break;
    case SK__POOL_OVERFLOW:
    default:
        sk_counter_add(u->n_overflows, 1);
        if (c->n_tries > 0 && c->has_res) {
            call_finish_locked(c, deliver); /* a retry that cannot get in: the last answer */
            break;
        }
        call_res_local(c, 503, "pool overflow: maxConnections and http1MaxPendingRequests reached");
        /* Answer from the timer thread: never inside sk_upstream_send, and fast. */
        c->state = CALL_DELAYING;
        c->is_overflow = true;
        if (!step_schedule_locked(c, now_ms(u))) {
            c->state = CALL_NEW;
            call_finish_locked(c, deliver);
        }
        break;
    }
}

/* Schedule the step timer of @p c at @p due (u->mu held); false on failure. */
static bool step_schedule_locked(call *c, int64_t due)
{
    uint64_t id = 0;

    c->refs++;
    /* The timer thread reads the monotonic clock; translate from the injected one. */
    int64_t real_due = sk_time_mono_ms() + (due - now_ms(c->u));
    if (sk__timers_add(c->u->timers, real_due, on_step_timer, c, &id) != SK_OK) {
        c->refs--;
        return false;
    }
    c->step_timer = id;
    return true;
}

static sk__attempt attempt_kind(sk_status st, const sk_http_response *resp)
{
    switch (st) {
    case SK_OK:
        return SK__ATTEMPT_RESPONSE;
    case SK_EUNAVAILABLE:
    case SK_ETLS:
        return SK__ATTEMPT_CONNECT_FAILURE;
    case SK_ETIMEDOUT:
        return resp != NULL && !resp->is_request_sent ? SK__ATTEMPT_CONNECT_FAILURE
                                                      : SK__ATTEMPT_TIMEOUT;
    case SK_EIO:
        return resp != NULL && !resp->is_request_sent ? SK__ATTEMPT_CONNECT_FAILURE
                                                      : SK__ATTEMPT_RESET;
    default:
        return SK__ATTEMPT_OTHER;
    }
}

/* Client thread: one attempt ended. */
static void on_attempt_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    call *c = ctx;
    sk_upstream *u = c->u;
    call *deliver = NULL;
    char errmsg[ERRMSG_BYTES];
    int64_t now;
    ep *e;
    bool is_last;

    snprintf(errmsg, sizeof(errmsg), "%s", st != SK_OK ? sk_error_message() : "");
    lock(&u->mu);
    now = now_ms(u);
    e = c->cur;
    c->cur = NULL;
    if (e != NULL) {
        e->active--;
        if (e->is_member && !u->is_closing) {
            size_t i = ep_index(u, e);
            sk__outlier_host *stack[64] = { NULL };
            sk__outlier_host **v = i != SIZE_MAX ? hosts_view(u, stack, 64) : NULL;
            if (v != NULL) {
                if (sk__outlier_record(&u->outlier, v, u->n_eps, i,
                                       sk__outcome_of(st, resp != NULL ? resp->status : 0), now)) {
                    sk_counter_add(u->n_ejections, 1);
                    sk_gauge_set(u->g_ejected, (int64_t)sk__outlier_n_ejected(v, u->n_eps));
                    /* Rare and what an operator looks for first: say it in the log. */
                    SK_LOG_WARN("upstream %s: endpoint %s ejected for %lld ms (ejection #%u)", u->service, e->addr,
                                (long long)(e->oh.ejected_until_ms - now), (unsigned)e->oh.n_ejections);
                }
                hosts_view_free(v, stack);
            }
        }
        ep_unref(e);
    }
    call_res_set(c, st, resp, st != SK_OK ? errmsg : NULL);
    slot_release_locked(u, &deliver);

    bool is_retry = false;
    int64_t delay = 0;
    if (c->state == CALL_IN_FLIGHT && !u->is_closing && c->n_tries <= u->policy.retry.attempts &&
        sk__retry_is_retriable(&u->policy.retry, attempt_kind(st, resp),
                               resp != NULL ? resp->status : 0, c->is_idempotent)) {
        int64_t ra = 0;
        delay = sk__retry_backoff_ms(c->n_tries, u->rnd(u->rnd_ctx));
        /* Retry-After (429, 503) is honoured: never retry sooner than the upstream asked. */
        if (st == SK_OK && resp != NULL && resp->retry_after != NULL &&
            sk__retry_after_parse(resp->retry_after, sk_time_now_ms(), &ra) && ra > delay) {
            delay = ra;
        }
        is_retry = c->deadline_ms == 0 || now + delay < c->deadline_ms;
    }
    if (c->state == CALL_IN_FLIGHT) {
        if (is_retry) {
            c->state = CALL_BACKOFF;
            sk_counter_add(u->n_retries, 1);
            if (delay == 0) {
                c->state = CALL_NEW;
                admit_locked(c, &deliver);
            } else if (!step_schedule_locked(c, now + delay)) {
                call_finish_locked(c, &deliver);
            }
        } else {
            call_finish_locked(c, &deliver);
        }
    }
    is_last = call_unref_locked(c); /* the client's reference */
    unlock(&u->mu);
    deliver_all(deliver);
    if (is_last) {
        upstream_free(u);
    }
}

/* Timer thread: a fault delay ended, a back-off ended, or an asynchronous completion is due. */
static void on_step_timer(void *ctx, bool is_canceled)
{
    call *c = ctx;
    sk_upstream *u = c->u;
    call *deliver = NULL;
    bool is_last;

    lock(&u->mu);
    c->step_timer = 0;
    if (c->state == CALL_DELAYING || c->state == CALL_BACKOFF) {
        if (is_canceled || u->is_closing) {
            call_res_set(c, SK_ECANCELED, NULL, "the upstream is being destroyed");
            call_finish_locked(c, &deliver);
        } else if (c->state == CALL_DELAYING && (c->is_overflow || c->abort_status != 0)) {
            if (c->abort_status != 0) {
                call_res_local(c, c->abort_status, "fault injected (abort)");
            }
            call_finish_locked(c, &deliver);
        } else {
            c->state = CALL_NEW;
            admit_locked(c, &deliver);
        }
    }
    is_last = call_unref_locked(c);
    unlock(&u->mu);
    deliver_all(deliver);
    if (is_last) {
        upstream_free(u);
    }
}

/* Timer thread: the overall timeout passed. An attempt in flight ends by itself at the deadline. */
static void on_deadline_timer(void *ctx, bool is_canceled)
{
    call *c = ctx;
    sk_upstream *u = c->u;
    call *deliver = NULL;
    bool is_last;

    lock(&u->mu);
    c->deadline_timer = 0;
    if (c->state == CALL_QUEUED || c->state == CALL_BACKOFF || c->state == CALL_DELAYING) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s while %s", is_canceled ? "canceled" : "timeout exceeded",
                 c->state == CALL_QUEUED    ? "waiting for a pool slot"
                 : c->state == CALL_BACKOFF ? "waiting to retry"
                                            : "delayed by a fault");
        call_res_set(c, is_canceled ? SK_ECANCELED : SK_ETIMEDOUT, NULL, msg);
        call_finish_locked(c, &deliver);
    }
    is_last = call_unref_locked(c);
    unlock(&u->mu);
    deliver_all(deliver);
    if (is_last) {
        upstream_free(u);
    }
}

/* ---------------------------------------------------------------- public API */

static void upstream_free(sk_upstream *u)
{
    if (u == NULL) {
        return;
    }
    eps_release(u->eps, u->n_eps);
    sk__upstream_policy_fini(&u->policy);
    pthread_mutex_destroy(&u->mu);
    sk_free(u->service);
    sk_free(u);
}

sk_status sk_upstream_create(sk_upstream **out,
                             sk_http_client *client,
                             const char *service,
                             const json_t *policy,
                             sk_metrics *metrics)
{
    sk_status st = SK_OK;
    sk_upstream *u = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: out must not be NULL");
    }
    *out = NULL;
    if (client == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: client must not be NULL");
    }
    if (service == NULL || service[0] == '\0' || strlen(service) > SK_MESH_MAX_SERVICE ||
        strspn(service, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(service)) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: service must be 1..%d of [a-z0-9-]",
                       SK_MESH_MAX_SERVICE);
    }
    u = sk_calloc(1, sizeof(*u));
    if (u == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_upstream_create: allocating the upstream");
    }
    if (pthread_mutex_init(&u->mu, NULL) != 0) {
        abort();
    }
    u->refs = 1;
    u->client = client;
    u->is_tls = sk__http_client_is_tls(client);
    u->clock = sk__mesh_clock_default;
    u->rnd = sk__mesh_rand_default;
    u->service = sk_strdup(service);
    if (u->service == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_upstream_create: copying the service name");
        goto out;
    }
    st = sk__upstream_policy_parse(policy, &u->policy);
    if (st != SK_OK) {
        st = SK_WRAP(st, "upstream %s", service);
        goto out;
    }
    sk__pool_init(&u->pool, &u->policy.pool);
    sk__outlier_init(&u->outlier, &u->policy.outlier, now_ms(u));
    if (metrics != NULL) {
        char labels[80];
        u->metrics = metrics;
        snprintf(labels, sizeof(labels), "upstream=\"%s\"", service);
        u->n_retries = sk_metrics_counter(metrics, "sk_upstream_retries_total",
                                          "Retries sent to an upstream", labels);
        u->n_ejections = sk_metrics_counter(metrics, "sk_upstream_ejections_total",
                                            "Hosts ejected by outlier detection", labels);
        u->n_overflows =
            sk_metrics_counter(metrics, "sk_upstream_pending_overflows_total",
                               "Requests refused 503 by the connection-pool limits", labels);
        u->g_ejected = sk_metrics_gauge(metrics, "sk_upstream_ejected_hosts",
                                        "Hosts currently ejected by outlier detection", labels);
        if (u->n_retries == NULL || u->n_ejections == NULL || u->n_overflows == NULL ||
            u->g_ejected == NULL) {
            st = SK_WRAP(SK_ENOMEM, "sk_upstream_create: registering metrics");
            goto out;
        }
    }
    st = sk__timers_create(&u->timers);
    if (st != SK_OK) {
        st = SK_WRAP(st, "upstream %s", service);
        goto out;
    }
    *out = u;
    u = NULL;
out:
    if (u != NULL) {
        sk__timers_destroy(u->timers);
        upstream_free(u);
    }
    return st;
}

void sk_upstream_destroy(sk_upstream *u)
{
    call *deliver = NULL;
    bool is_last;

    if (u == NULL) {
        return;
    }
    lock(&u->mu);
    u->is_closing = true;
    while (u->q_head != NULL) {
        call *c = u->q_head;
        call_res_set(c, SK_ECANCELED, NULL, "the upstream is being destroyed");
        call_finish_locked(c, &deliver); /* the queue's reference becomes the delivery's */
    }
    unlock(&u->mu);
    deliver_all(deliver);
    /* Pending timers run now with is_canceled: delayed and backing-off calls complete
     * ECANCELED. Attempts in flight complete when the client answers or is destroyed. */
    sk__timers_destroy(u->timers);
    lock(&u->mu);
    u->timers = NULL;
    is_last = --u->refs == 0;
    unlock(&u->mu);
    if (is_last) {
        upstream_free(u);
    }
}

sk_status sk_upstream_set_endpoints(sk_upstream *u, const char *const *addrs, size_t n)
{
    ep **eps = NULL;
    ep **old;
    size_t n_old;
    sk_status st = SK_OK;

    if (u == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_set_endpoints: u must not be NULL");
    }
    if (addrs == NULL && n > 0) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_set_endpoints: addrs is NULL but n is %zu", n);
    }
    if (n > MAX_ENDPOINTS) {
        return SK_FAIL(SK_ELIMIT, "sk_upstream_set_endpoints: %zu endpoints, at most %u", n,
                       MAX_ENDPOINTS);
    }
    for (size_t i = 0; i < n; i++) {
        if (addrs[i] == NULL || !endpoint_is_valid(addrs[i])) {
            return SK_FAIL(SK_EINVAL,
                           "sk_upstream_set_endpoints: addrs[%zu] must be \"host:port\", got "
                           "\"%.64s\"",
                           i, addrs[i] != NULL ? addrs[i] : "(null)");
        }
    }
    if (n > 0) {
        eps = sk_calloc(n, sizeof(ep *));
        if (eps == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_upstream_set_endpoints: copying endpoints");
        }
    }
    lock(&u->mu);
    /* Hosts that stay keep their outlier state and in-flight counts. */
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        ep *found = NULL;
        for (size_t j = 0; j < u->n_eps && found == NULL; j++) {
            if (strcmp(u->eps[j]->addr, addrs[i]) == 0) {
                found = u->eps[j];
            }
        }
        for (size_t j = 0; j < i && found != NULL; j++) {
            if (eps[j] == found) {
                found = NULL; /* listed twice: the second is a host of its own */
            }
        }
        if (found != NULL) {
            found->refs++;
            eps[i] = found;
            continue;
        }
        eps[i] = sk_calloc(1, sizeof(ep));
        if (eps[i] == NULL || (eps[i]->addr = sk_strdup(addrs[i])) == NULL) {
            sk_free(eps[i]);
            eps[i] = NULL;
            st = SK_FAIL(SK_ENOMEM, "sk_upstream_set_endpoints: copying endpoints");
            break;
        }
        eps[i]->refs = 1;
        eps[i]->is_member = true;
    }
    if (st != SK_OK) {
        for (size_t i = 0; i < n; i++) {
            if (eps[i] != NULL && --eps[i]->refs == 0) {
                sk_free(eps[i]->addr);
                sk_free(eps[i]);
            }
        }
        unlock(&u->mu);
        sk_free(eps);
        return st;
    }
    old = u->eps;
    n_old = u->n_eps;
    u->eps = eps;
    u->n_eps = n;
    for (size_t i = 0; i < n; i++) {
        eps[i]->is_member = true;
    }
    for (size_t j = 0; j < n_old; j++) {
        bool is_kept = false;
        for (size_t i = 0; i < n && !is_kept; i++) {
            is_kept = eps[i] == old[j];
        }
        if (!is_kept) {
            old[j]->is_member = false;
        }
        ep_unref(old[j]);
    }
    sk_free(old);
    {
        sk__outlier_host *stack[64] = { NULL };
        sk__outlier_host **v = hosts_view(u, stack, 64);
        if (v != NULL) {
            sk_gauge_set(u->g_ejected, (int64_t)sk__outlier_n_ejected(v, u->n_eps));
            hosts_view_free(v, stack);
        }
    }
    unlock(&u->mu);
    return SK_OK;
}

size_t sk_upstream_max_active(const sk_upstream *u)
{
    return u != NULL ? u->pool.max_active : 0; /* set at creation, never changed */
}

size_t sk_upstream_endpoint_count(sk_upstream *u)
{
    size_t n;

    if (u == NULL) {
        return 0;
    }
    lock(&u->mu);
    n = u->n_eps;
    unlock(&u->mu);
    return n;
}

sk_status
sk_upstream_send(sk_upstream *u, const sk_http_request *req, sk_http_done_fn done, void *ctx)
{
    sk_status st = SK_OK;
    call *c = NULL;
    call *deliver = NULL;
    int64_t now;
    int64_t timeout_ms = 0;
    int64_t delay_ms = 0;
    int abort_status = 0;
    size_t n_headers = 0;

    if (u == NULL || req == NULL || done == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_send: %s must not be NULL",
                       u == NULL     ? "u"
                       : req == NULL ? "req"
                                     : "done");
    }
    if (req->url == NULL || req->url[0] != '/') {
        return SK_FAIL(SK_EINVAL, "sk_upstream_send: req->url must be a path starting with '/'");
    }
    if (req->method == NULL || req->method[0] == '\0' || strlen(req->method) > 16 ||
        strspn(req->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(req->method)) {
        return SK_FAIL(SK_EINVAL, "upstream %s: req->method must be 1..16 of [A-Z]", u->service);
    }
    if (req->body == NULL && req->body_len > 0) {
        return SK_FAIL(SK_EINVAL, "upstream %s: req->body is NULL but body_len is %zu", u->service,
                       req->body_len);
    }
    if (req->body_len > SK_MAX_HTTP_BODY) {
        return SK_FAIL(SK_ELIMIT, "upstream %s: body of %zu bytes exceeds %u", u->service,
                       req->body_len, SK_MAX_HTTP_BODY);
    }
    if (req->timeout_ms < 0) {
        return SK_FAIL(SK_EINVAL, "upstream %s: req->timeout_ms must be >= 0", u->service);
    }
    for (; req->headers != NULL && req->headers[n_headers] != NULL; n_headers++) {
        if (n_headers >= 64) {
            return SK_FAIL(SK_EINVAL, "upstream %s: at most 64 headers", u->service);
        }
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SK_FAIL(SK_ENOMEM, "upstream %s: allocating the call", u->service);
    }
    sk_buf_init(&c->res_body, SK_MAX_HTTP_BODY);
    c->u = u;
    c->done = done;
    c->ctx = ctx;
    c->refs = 1; /* this function's */
    c->state = CALL_NEW;
    c->method = sk_strdup(req->method);
    c->path = sk_strdup(req->url);
    c->headers = sk_calloc(n_headers + 1, sizeof(char *));
    if (c->method == NULL || c->path == NULL || c->headers == NULL) {
        st = SK_FAIL(SK_ENOMEM, "upstream %s: copying the request", u->service);
        goto out;
    }
    for (size_t i = 0; i < n_headers; i++) {
        c->headers[i] = sk_strdup(req->headers[i]);
        if (c->headers[i] == NULL) {
            st = SK_FAIL(SK_ENOMEM, "upstream %s: copying the headers", u->service);
            goto out;
        }
        c->n_headers = i + 1;
    }
    if (req->body != NULL) {
        c->body = sk_malloc(req->body_len + 1);
        if (c->body == NULL) {
            st = SK_FAIL(SK_ENOMEM, "upstream %s: copying the body", u->service);
            goto out;
        }
        if (req->body_len > 0) {
            memcpy(c->body, req->body, req->body_len);
        }
        c->body[req->body_len] = '\0';
        c->body_len = req->body_len;
    }
    {
        /* The query string does not take part in route matching. */
        char *q = strchr(c->path, '?');
        if (q != NULL) {
            *q = '\0';
        }
        c->is_idempotent =
            sk__http_is_idempotent(c->method, c->path, (const char *const *)c->headers,
                                   u->policy.idempotent_routes, u->policy.n_idempotent_routes);
        if (q != NULL) {
            *q = '?';
        }
    }

    lock(&u->mu);
    if (u->is_closing) {
        unlock(&u->mu);
        st = SK_FAIL(SK_ESTATE, "upstream %s: being destroyed", u->service);
        goto out;
    }
    if (u->n_eps == 0) {
        unlock(&u->mu);
        sk_counter_add(status_counter(u, SK_EUNAVAILABLE, 0), 1);
        st = SK_FAIL(SK_EUNAVAILABLE, "upstream %s: no endpoint", u->service);
        goto out;
    }
    u->refs++; /* the call's */
    now = now_ms(u);
    timeout_ms = u->policy.timeout_ms;
    if (req->timeout_ms > 0 && (timeout_ms == 0 || req->timeout_ms < timeout_ms)) {
        timeout_ms = req->timeout_ms;
    }
    if (timeout_ms > 0) {
        uint64_t id = 0;
        c->deadline_ms = now + timeout_ms;
        c->refs++;
        if (sk__timers_add(u->timers, sk_time_mono_ms() + timeout_ms, on_deadline_timer, c, &id) !=
            SK_OK) {
            c->refs--;
            u->refs--;
            unlock(&u->mu);
            st = SK_WRAP(SK_ENOMEM, "upstream %s: arming the timeout", u->service);
            goto out;
        }
        c->deadline_timer = id;
    }
    sk__fault_decide(&u->policy.fault, u->rnd, u->rnd_ctx, &delay_ms, &abort_status);
    if (delay_ms > 0 || abort_status != 0) {
        /* Faults act before the pool (Envoy's fault filter runs before the router). */
        c->abort_status = abort_status;
        c->state = CALL_DELAYING;
        if (!step_schedule_locked(c, now + delay_ms)) {
            c->state = CALL_NEW;
            call_res_set(c, SK_ENOMEM, NULL, "scheduling a fault");
            call_finish_locked(c, &deliver);
        }
    } else {
        admit_locked(c, &deliver);
    }
    unlock(&u->mu);
    /* Only a call that could not be started (scheduling or handing it to the client failed)
     * lands here synchronously; it is delivered like any result. */
    deliver_all(deliver);
    call_unref(c);
    return SK_OK;
out:
    call_free(c);
    return st;
}

sk_status sk_upstream_endpoints_describe(sk_upstream *u, json_t **out)
{
    json_t *arr = NULL;
    sk_status st = SK_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (u == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_endpoints_describe: %s must not be NULL",
                       u == NULL ? "u" : "out");
    }
    arr = json_array();
    if (arr == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_upstream_endpoints_describe: allocating");
    }
    lock(&u->mu);
    int64_t now = now_ms(u);
    int64_t wall = sk_time_now_ms();
    outlier_sweep_locked(u, now);
    for (size_t i = 0; i < u->n_eps && st == SK_OK; i++) {
        const ep *e = u->eps[i];
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:I}", "address", e->addr, "state",
            e->oh.is_ejected ? "ejected" : "healthy", "ejected_until_ms",
            (json_int_t)(e->oh.is_ejected ? wall + (e->oh.ejected_until_ms - now) : 0),
            "active_requests", (json_int_t)e->active, "consecutive_5xx", (json_int_t)e->oh.n_5xx);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            st = SK_FAIL(SK_ENOMEM, "sk_upstream_endpoints_describe: allocating");
        }
    }
    unlock(&u->mu);
    if (st != SK_OK) {
        json_decref(arr);
        return st;
    }
    *out = arr;
    return SK_OK;
}

void sk__upstream_set_seams(
    sk_upstream *u, sk__clock_fn clock, void *clock_ctx, sk__rand_fn rnd, void *rnd_ctx)
{
    if (u == NULL) {
        return;
    }
    lock(&u->mu);
    if (clock != NULL) {
        u->clock = clock;
        u->clock_ctx = clock_ctx;
        sk__outlier_init(&u->outlier, &u->policy.outlier, clock(clock_ctx));
    }
    if (rnd != NULL) {
        u->rnd = rnd;
        u->rnd_ctx = rnd_ctx;
    }
    unlock(&u->mu);
}

void sk__upstream_pool_get(sk_upstream *u, uint32_t *n_active, uint32_t *n_pending)
{
    lock(&u->mu);
    *n_active = u->pool.n_active;
    *n_pending = u->pool.n_pending;
    unlock(&u->mu);
}
