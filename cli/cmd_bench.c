/* SPDX-License-Identifier: MIT */
/*
 * `skald bench`: drives POST /api/v1/orders of a running system and follows
 * every order to its terminal status. One thread, one libcurl multi handle
 * (keep-alive connections to the gateway, driven by epoll: bench_loop.c); open loop (sends on schedule,
 * latency from the due time) or closed loop (a fixed number of orders in
 * flight). An order's end-to-end time is when a GET /api/v1/orders/{id}
 * first answers APPROVED/REJECTED/CANCELLED: the bench issues that GET when
 * the order's terminal event appears on NATS (a plain subscription with the
 * CLI identity), and polls only orders whose event never came.
 */
#include <curl/curl.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define CTX "bench"
/* Most transfers queued in libcurl at once; further due sends wait (their latency still counts). */
#define MAX_PENDING 20000
/*
 * Event messages held, then destroyed together: nats.c frees every message
 * on its collector thread and wakes it for each one that finds it asleep,
 * ~0.75 wake-ups per order at 1,000 orders/s when each was destroyed at once
 * (src/msg/reaper.c does the same for the services).
 */
#define SPENT_BATCH 256
/* No terminal event this long after the POST's answer: follow the order by polling. */
#define EVENT_GRACE_US   3000000
#define POLL_INTERVAL_US 10000
/*
 * The GET after an order's terminal event carries a consistency token for
 * the order's version in that event, so the read model answers it once the
 * view has caught up (CONTRACT: it waits at most 2 s). Should the view still
 * not be terminal, retry after 1, 2, 4 .. 16 ms.
 */
#define GET_RETRY_FIRST_US 1000
#define GET_RETRY_MAX_US   16000
#define BODY_MAX_BYTES     (64 * 1024)
/* Easy handles kept for reuse: creating one per request was ~10 % of the client's CPU. */
#define MAX_IDLE_HANDLES 256
#define SEED_WAIT_MS       20000
#define DISCOVERY_WAIT_MS  2000
#define MAX_KINDS          32
/* After a run, JetStream is counted once its streams have not grown for 500 ms, within 5 s. */
#define BROKER_SETTLE_POLL_MS 100
#define BROKER_SETTLE_POLLS   5
#define BROKER_SETTLE_US      5000000

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------- tallies */

typedef struct tally {
    char kind[MAX_KINDS][96];
    uint64_t count[MAX_KINDS];
    size_t n;
    uint64_t total;
} tally;

/* Count one @p kind; past MAX_KINDS - 1 distinct kinds the rest are counted as "other". */
static void tally_add(tally *t, const char *kind)
{
    t->total++;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->kind[i], kind) == 0) {
            t->count[i]++;
            return;
        }
    }
    if (t->n < MAX_KINDS - 1) {
        snprintf(t->kind[t->n], sizeof(t->kind[0]), "%s", kind);
        t->count[t->n++] = 1;
        return;
    }
    if (t->n == MAX_KINDS - 1) {
        snprintf(t->kind[t->n], sizeof(t->kind[0]), "other");
        t->count[t->n++] = 0;
    }
    t->count[MAX_KINDS - 1]++;
}

/* ---------------------------------------------------------------- state */

enum { ORD_POSTING, ORD_FOLLOWING, ORD_GETTING, ORD_DONE };

typedef struct border {
    char id[64];         /* order_id from the POST's answer; "" until then */
    int64_t due_us;      /* scheduled send (open loop) or actual send (closed loop) */
    int64_t answered_us; /* the POST's answer */
    int64_t event_us;    /* terminal event seen on NATS; 0 = not yet */
    int64_t version;     /* the order's version in that event; 0 = unknown */
    int64_t next_get_us; /* when following needs a GET; 0 = none planned */
    int64_t retry_us;    /* the next GET retry delay */
    uint8_t state;
    bool is_measured; /* due inside the measured window */
    bool is_polled;   /* no event came: followed by polling */
} border;

/* id → order index, for events (which may arrive before the POST's answer). */
typedef struct id_entry {
    char id[64];
    size_t order;     /* SIZE_MAX: not (yet) one of ours */
    int64_t event_us; /* 0 = no event seen */
    int64_t version;  /* the order's version in the event; 0 = unknown */
} id_entry;

typedef struct id_map {
    id_entry *e;
    size_t cap, n; /* cap a power of two */
} id_map;

typedef struct event {
    char id[64];
    int64_t t_us;
    int64_t version; /* "version" of the event's data; 0 when it has none */
} event;

/* One measurement (a whole run, or one --find-max step). */
typedef struct run_result {
    double offered; /* 0 in closed loop */
    int concurrency;
    double duration_s, warmup_s;
    uint64_t n_sent, n_accepted, n_completed, n_approved, n_polled;
    uint64_t accepted_in_window, completed_in_window;
    double achieved, completed_rate;
    tally errors, rejected;
    cli_lat post, e2e, event;
    cli_sys_report sys; /* what the system cost during the window (when it runs here) */
    bool has_broker;    /* the JetStream counts below were taken */
    double published_per_order, delivered_per_order; /* over the whole run, per order accepted */
} run_result;

typedef struct bench {
    cli_bench_opts o;
    cli_bench_plan plan;
    char *gateway; /* owned: "http://127.0.0.1:PORT" */
    char *context; /* owned: the bounded context of the order service */
    char run_id[24];
    char **skus;      /* owned, plan.n_products */
    char **customers; /* owned, plan.n_customers */
    CURLM *multi;
    cli_curl_loop loop; /* drives multi (has_loop) */
    bool has_loop;
    CURL *idle[MAX_IDLE_HANDLES]; /* finished transfers' handles, reset, for the next ones */
    size_t n_idle;
    CURL *sync; /* seeding */
    /* Orders of the current measurement. */
    border *orders;
    size_t n_orders, cap_orders, n_active;
    size_t *follow; /* indices of ORD_FOLLOWING orders */
    size_t n_follow, cap_follow;
    size_t n_pending; /* transfers in libcurl */
    unsigned n_runs;  /* measurements so far (part of the idempotency keys) */
    cli_lat tick;     /* end-to-end of the orders completed since the last progress line */
    id_map ids;
    bool is_tty;
    /* Events from the NATS thread. */
    natsConnection *nc;
    natsSubscription *subs[3];
    pthread_mutex_t mu; /* protects queue, n_queue, spent and n_spent */
    event *queue;
    size_t n_queue, cap_queue;
    natsMsg *spent[SPENT_BATCH]; /* handled event messages, destroyed a batch at a time */
    size_t n_spent;
    atomic_bool is_denied; /* the server refused the subscription */
    bool is_started;       /* under mu: the callback may wake the multi handle */
    bool is_polling;       /* follow every order by polling */
    bool has_mu;
    cli_sys sys;       /* the local skald up's processes (sys.root 0: none) */
    cli_broker broker; /* the system's streams (broker.js NULL: not counted) */
} bench;

typedef struct xfer {
    bench *b;
    CURL *h;
    size_t order;
    bool is_get;
    sk_buf body;
    struct curl_slist *hdrs;
    char *post_body;
    char url[256];
} xfer;

static void run_result_init(run_result *r)
{
    memset(r, 0, sizeof(*r));
    cli_lat_init(&r->post);
    cli_lat_init(&r->e2e);
    cli_lat_init(&r->event);
}

static void run_result_fini(run_result *r)
{
    cli_lat_fini(&r->post);
    cli_lat_fini(&r->e2e);
    cli_lat_fini(&r->event);
}

/* ---------------------------------------------------------------- id map */

static id_entry *id_map_find(id_map *m, const char *id, bool is_insert)
{
    if (is_insert && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap == 0 ? 4096 : m->cap * 2;
        id_entry *e = sk_calloc(cap, sizeof(*e));
        if (e == NULL) {
            return NULL;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].id[0] != '\0') {
                size_t j = sk_hash_text(m->e[i].id) & (cap - 1);
                while (e[j].id[0] != '\0') {
                    j = (j + 1) & (cap - 1);
                }
                e[j] = m->e[i];
            }
        }
        sk_free(m->e);
        m->e = e;
        m->cap = cap;
    }
    if (m->cap == 0) {
        return NULL;
    }
    size_t j = sk_hash_text(id) & (m->cap - 1);
    while (m->e[j].id[0] != '\0') {
        if (strcmp(m->e[j].id, id) == 0) {
            return &m->e[j];
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (!is_insert) {
        return NULL;
    }
    snprintf(m->e[j].id, sizeof(m->e[j].id), "%s", id);
    m->e[j].order = SIZE_MAX;
    m->e[j].event_us = 0;
    m->e[j].version = 0;
    m->n++;
    return &m->e[j];
}

static void id_map_clear(id_map *m)
{
    if (m->e != NULL) {
        memset(m->e, 0, m->cap * sizeof(*m->e));
    }
    m->n = 0;
}

/* ---------------------------------------------------------------- HTTP */

/* An answer's JSON body, or NULL when it is none (the caller says what was expected). */
static json_t *body_json(const sk_buf *body)
{
    json_t *j = NULL;

    if (sk_json_parse((sk_slice){ (const uint8_t *)body->data, body->len }, &j) != SK_OK) {
        sk_error_clear();
    }
    return j;
}

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    sk_buf *body = ctx;
    return sk_buf_append(body, p, size * n) == SK_OK ? size * n : 0;
}

/* A synchronous request for seeding: @return the HTTP status (0 when none), the parsed body in
 * *out. */
static int http_sync(bench *b, const char *method, const char *path, const char *body, json_t **out)
{
    char url[512];
    sk_buf resp;
    long status = 0;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");

    if (out != NULL) {
        *out = NULL;
    }
    sk_buf_init(&resp, BODY_MAX_BYTES);
    snprintf(url, sizeof(url), "%s%s", b->gateway, path);
    curl_easy_reset(b->sync);
    curl_easy_setopt(b->sync, CURLOPT_URL, url);
    curl_easy_setopt(b->sync, CURLOPT_NOPROXY, "*"); /* the local gateway, never via a proxy */
    curl_easy_setopt(b->sync, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(b->sync, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(b->sync, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(b->sync, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(b->sync, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(b->sync, CURLOPT_TIMEOUT_MS, 10000L);
    if (body != NULL) {
        curl_easy_setopt(b->sync, CURLOPT_POSTFIELDS, body);
    }
    if (h != NULL && curl_easy_perform(b->sync) == CURLE_OK) {
        curl_easy_getinfo(b->sync, CURLINFO_RESPONSE_CODE, &status);
    }
    if (out != NULL && resp.len > 0) {
        *out = body_json(&resp);
    }
    curl_slist_free_all(h);
    sk_buf_fini(&resp);
    return (int)status;
}

static void xfer_free(xfer *x)
{
    if (x == NULL) {
        return;
    }
    if (x->h != NULL && x->b->n_idle < MAX_IDLE_HANDLES) {
        curl_easy_reset(x->h); /* the connections stay in the multi handle's cache */
        x->b->idle[x->b->n_idle++] = x->h;
    } else if (x->h != NULL) {
        curl_easy_cleanup(x->h);
    }
    curl_slist_free_all(x->hdrs);
    sk_buf_fini(&x->body);
    sk_free(x->post_body);
    sk_free(x);
}

/* Queue a POST /api/v1/orders (body set) or GET /api/v1/orders/{id}. */
static sk_status xfer_start(bench *b, size_t order, bool is_get)
{
    border *o = &b->orders[order];
    xfer *x = sk_calloc(1, sizeof(*x));
    sk_status st = SK_OK;

    if (x == NULL) {
        return SK_FAIL(SK_ENOMEM, "allocating a transfer");
    }
    x->b = b;
    x->order = order;
    x->is_get = is_get;
    sk_buf_init(&x->body, BODY_MAX_BYTES);
    x->h = b->n_idle > 0 ? b->idle[--b->n_idle] : curl_easy_init();
    if (x->h == NULL) {
        st = SK_FAIL(SK_ENOMEM, "curl_easy_init");
        goto out;
    }
    if (is_get) {
        snprintf(x->url, sizeof(x->url), "%s/api/v1/orders/%s", b->gateway, o->id);
        char token[SK_CTOKEN_MAX], header[SK_CTOKEN_MAX + 32];
        if (o->version > 0 && !o->is_polled && sk_ctoken_encode(o->id, o->version, token) == SK_OK) {
            snprintf(header, sizeof(header), "X-Consistency-Token: %s", token);
            if ((x->hdrs = curl_slist_append(NULL, header)) == NULL) {
                st = SK_FAIL(SK_ENOMEM, "building a GET");
                goto out;
            }
            curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
        }
    } else {
        char key[96];
        snprintf(x->url, sizeof(x->url), "%s/api/v1/orders", b->gateway);
        /* Spread over every product and customer; the two counts differ by design of the walk. */
        size_t p = order % (size_t)b->plan.n_products;
        size_t c = (order / (size_t)b->plan.n_products + order) % (size_t)b->plan.n_customers;
        x->post_body =
            sk_asprintf("{\"customer_id\":\"%s\",\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
                        b->customers[c], b->skus[p]);
        snprintf(key, sizeof(key), "Idempotency-Key: bench-%s-%u-%zu", b->run_id, b->n_runs, order);
        struct curl_slist *h1 = curl_slist_append(NULL, "Content-Type: application/json");
        struct curl_slist *h2 = h1 != NULL ? curl_slist_append(h1, key) : NULL;
        x->hdrs = h2 != NULL ? h2 : h1;
        if (x->post_body == NULL || h2 == NULL) {
            st = SK_FAIL(SK_ENOMEM, "building a POST");
            goto out;
        }
        curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->post_body);
    }
    curl_easy_setopt(x->h, CURLOPT_URL, x->url);
    curl_easy_setopt(x->h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, &x->body);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, (long)(b->o.timeout_s * 1000));
    if (curl_multi_add_handle(b->multi, x->h) != CURLM_OK) {
        st = SK_FAIL(SK_EIO, "curl_multi_add_handle failed");
        goto out;
    }
    b->n_pending++;
    o->state = is_get ? ORD_GETTING : ORD_POSTING;
    x = NULL;
out:
    xfer_free(x);
    return st;
}

/* ---------------------------------------------------------------- events (NATS thread) */

/* The order's version in a terminal event's data; 0 when it has none. */
static int64_t event_version(natsMsg *msg)
{
    json_t *data = NULL;
    int64_t version = 0;
    sk_slice text = { (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg) };

    if (sk_json_parse_object(text, &data) == SK_OK) {
        json_t *v = json_object_get(data, "version");
        version = json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
    }
    json_decref(data);
    sk_error_clear();
    return version;
}

/* Under mu: move the held event messages to @p out; @return how many. */
static size_t spent_take(bench *b, natsMsg **out)
{
    size_t n = b->n_spent;
    memcpy(out, b->spent, n * sizeof(out[0]));
    b->n_spent = 0;
    return n;
}

/* Destroy @p n messages of @p msgs. */
static void msgs_destroy(natsMsg **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        natsMsg_Destroy(msgs[i]);
    }
}

static void on_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    bench *b = closure;
    const char *id = NULL;
    natsMsg *spent[SPENT_BATCH];
    size_t n_spent = 0;
    (void)nc;
    (void)sub;
    int64_t version = 0;
    bool has_id =
        natsMsgHeader_Get(msg, "ce-subject", &id) == NATS_OK && id != NULL && strlen(id) < 64;
    if (has_id) {
        version = event_version(msg);
    }
    pthread_mutex_lock(&b->mu);
    if (has_id) {
        if (b->n_queue == b->cap_queue) {
            size_t cap = b->cap_queue == 0 ? 1024 : b->cap_queue * 2;
            event *q = cap <= 4000000 ? sk_realloc(b->queue, cap * sizeof(*q)) : NULL;
            if (q != NULL) {
                b->queue = q;
                b->cap_queue = cap;
            }
        }
        if (b->n_queue < b->cap_queue) {
            snprintf(b->queue[b->n_queue].id, sizeof(b->queue[0].id), "%s", id);
            b->queue[b->n_queue].t_us = now_us();
            b->queue[b->n_queue].version = version;
            b->n_queue++;
        }
        if (b->is_started) {
            cli_curl_loop_wake(&b->loop);
        }
    }
    b->spent[b->n_spent++] = msg;
    if (b->n_spent == SPENT_BATCH) {
        n_spent = spent_take(b, spent);
    }
    pthread_mutex_unlock(&b->mu);
    msgs_destroy(spent, n_spent);
}

static void on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    bench *b = closure;
    (void)nc;
    (void)sub;
    if (err == NATS_NOT_PERMITTED) {
        atomic_store(&b->is_denied, true);
    }
}

/* Connect b->nc to the system's NATS with the CLI identity. */
static sk_status nats_open(bench *b, const cli_conn *conn)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);

    if (s == NATS_OK) {
        s = natsOptions_SetURL(opts, conn->url);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(opts, CLI_IDENTITY " bench");
    }
    if (s == NATS_OK) {
        s = natsOptions_SetCustomInboxPrefix(opts, CLI_NATS_INBOX);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(opts, -1);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(opts, on_nats_error, b);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetSecure(opts, true);
    }
    if (s == NATS_OK) {
        s = natsOptions_LoadCATrustedCertificates(opts, conn->tls.ca_file);
    }
    if (s == NATS_OK) {
        s = natsOptions_LoadCertificatesChain(opts, conn->tls.cert_file, conn->tls.key_file);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(&b->nc, opts);
    }
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        b->nc = NULL;
        return SK_FAIL(SK_EBUS, "connecting to NATS: %s%s%s", natsStatus_GetText(s),
                       last != NULL ? ": " : "", last != NULL ? last : "");
    }
    return SK_OK;
}

/*
 * Subscribe to the order context's terminal events with the CLI identity.
 * @return SK_OK, or an error (the caller falls back to polling).
 */
static sk_status events_open(bench *b, const cli_conn *conn)
{
    static const char *const types[] = { "OrderApproved", "OrderRejected", "OrderCancelled" };
    natsStatus s = NATS_OK;
    sk_status st = nats_open(b, conn);

    if (st != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < 3 && s == NATS_OK; i++) {
        char subject[160];
        snprintf(subject, sizeof(subject), "%s.events.%s", b->context, types[i]);
        s = natsConnection_Subscribe(&b->subs[i], b->nc, subject, on_event, b);
        if (s == NATS_OK) {
            s = natsSubscription_SetPendingLimits(b->subs[i], -1, -1);
        }
    }
    if (s == NATS_OK) {
        s = natsConnection_FlushTimeout(b->nc, 2000);
    }
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        st = SK_FAIL(SK_EBUS, "subscribing to %s.events: %s%s%s", b->context, natsStatus_GetText(s),
                     last != NULL ? ": " : "", last != NULL ? last : "");
    }
    return st;
}

static void events_close(bench *b)
{
    for (size_t i = 0; i < 3; i++) {
        /* Drained, no callback of it runs any more (the bench is freed right after). */
        if (b->subs[i] != NULL && natsSubscription_Drain(b->subs[i]) == NATS_OK) {
            SK_IGNORE(natsSubscription_WaitForDrainCompletion(b->subs[i], 2000));
        }
        natsSubscription_Destroy(b->subs[i]);
        b->subs[i] = NULL;
    }
    if (b->nc != NULL) {
        natsConnection_Close(b->nc);
        natsConnection_Destroy(b->nc);
        b->nc = NULL;
    }
    /* Under mu: should a drain have timed out, a callback may still be running. */
    natsMsg *spent[SPENT_BATCH];
    size_t n_spent = 0;
    if (b->has_mu) {
        pthread_mutex_lock(&b->mu);
        n_spent = spent_take(b, spent);
        pthread_mutex_unlock(&b->mu);
    }
    msgs_destroy(spent, n_spent);
}

/* ---------------------------------------------------------------- finding the system */

/* The gateway's address from discovery: "http://127.0.0.1:PORT". */
static sk_status gateway_find(bench *b, const cli_conn *conn, const sk_system *sys)
{
    const char *name = "gateway";
    sk_registry *reg = NULL;
    sk_status st;
    int64_t deadline = sk_time_mono_ms() + DISCOVERY_WAIT_MS;

    for (size_t i = 0; sys != NULL && i < sys->n_services; i++) {
        if (sys->services[i].is_gateway) {
            name = sys->services[i].name;
        }
    }
    st = sk_registry_open(&reg, conn->bus, 0);
    while (st == SK_OK && b->gateway == NULL) {
        sk_instance *list = NULL;
        size_t n = 0;
        st = sk_registry_list(reg, &list, &n);
        for (size_t i = 0; st == SK_OK && i < n && b->gateway == NULL; i++) {
            if (strcmp(list[i].service, name) == 0 && list[i].is_ready) {
                b->gateway = sk_asprintf("http://%s", list[i].address);
                if (b->gateway == NULL) {
                    st = SK_FAIL(SK_ENOMEM, "gateway URL");
                }
            }
        }
        sk_registry_list_free(list, n);
        if (st == SK_OK && b->gateway == NULL) {
            if (sk_time_mono_ms() > deadline) {
                st = SK_FAIL(SK_ENOTFOUND,
                             "no ready %s instance in discovery within %d ms "
                             "(give the gateway with --url)",
                             name, DISCOVERY_WAIT_MS);
            } else {
                cli_sleep_ms(25);
            }
        }
    }
    sk_registry_close(reg);
    return st;
}

/* The order service's context: the service behind POST /api/v1/orders in the system file. */
static char *order_context(const sk_system *sys)
{
    for (size_t i = 0; sys != NULL && i < sys->n_routes; i++) {
        const sk_sys_route *r = &sys->routes[i];
        if (strcmp(r->method, "POST") == 0 && strcmp(r->path, "/api/v1/orders") == 0) {
            const sk_sys_service *svc = sk_system_service_find(sys, r->service);
            if (svc != NULL && svc->context != NULL) {
                return sk_strdup(svc->context);
            }
        }
    }
    return sk_strdup("order");
}

static sk_system *system_load(const char *data)
{
    sk_system *sys = NULL;
    char *recorded = NULL;
    char *path_file = sk_asprintf("%s/run/config.path", data);
    if (path_file != NULL && cli_file_read_line(path_file, 8192, &recorded) == SK_OK &&
        recorded[0] != '\0' && sk_system_load(recorded, &sys) != SK_OK) {
        sys = NULL;
    }
    sk_error_clear();
    sk_free(recorded);
    sk_free(path_file);
    return sys;
}

/* ---------------------------------------------------------------- seeding */

static sk_status seed(bench *b)
{
    const cli_bench_plan *p = &b->plan;
    char body[512], path[256];
    json_t *resp = NULL;
    int64_t deadline;
    sk_status st = SK_OK;

    b->skus = sk_calloc((size_t)p->n_products, sizeof(char *));
    b->customers = sk_calloc((size_t)p->n_customers, sizeof(char *));
    if (b->skus == NULL || b->customers == NULL) {
        return SK_FAIL(SK_ENOMEM, "seeding");
    }
    for (int i = 0; i < p->n_products && st == SK_OK; i++) {
        b->skus[i] = sk_asprintf("BENCH-%s-%d", b->run_id, i);
        if (b->skus[i] == NULL) {
            return SK_FAIL(SK_ENOMEM, "seeding");
        }
        snprintf(body, sizeof(body),
                 "{\"sku\":\"%s\",\"name\":\"Bench %d\",\"price_cents\":%lld,\"stock\":%lld}",
                 b->skus[i], i, (long long)p->price_cents, (long long)p->stock);
        int code = http_sync(b, "POST", "/api/v1/products", body, NULL);
        if (code != 201) {
            st = SK_FAIL(SK_EIO, "POST /api/v1/products answered %d (is the gateway at %s?)", code,
                         b->gateway);
        }
    }
    for (int i = 0; i < p->n_customers && st == SK_OK; i++) {
        snprintf(body, sizeof(body), "{\"name\":\"Bench %s %d\",\"credit_limit_cents\":%lld}",
                 b->run_id, i, (long long)p->credit_cents);
        int code = http_sync(b, "POST", "/api/v1/customers", body, &resp);
        const char *id = json_string_value(json_object_get(resp, "customer_id"));
        if (code != 201 || id == NULL) {
            st = SK_FAIL(SK_EIO, "POST /api/v1/customers answered %d", code);
        } else if ((b->customers[i] = sk_strdup(id)) == NULL) {
            st = SK_FAIL(SK_ENOMEM, "seeding");
        }
        json_decref(resp);
        resp = NULL;
    }
    /*
     * Accounts open and read models fill asynchronously: wait until every
     * customer shows its whole credit and every product its stock, so the
     * first orders are not rejected for a customer the payment service does
     * not know yet.
     */
    deadline = sk_time_mono_ms() + SEED_WAIT_MS;
    for (int i = 0; i < p->n_customers + p->n_products && st == SK_OK;) {
        bool is_customer = i < p->n_customers;
        if (is_customer) {
            snprintf(path, sizeof(path), "/api/v1/customers/%s", b->customers[i]);
        } else {
            snprintf(path, sizeof(path), "/api/v1/products/%s", b->skus[i - p->n_customers]);
        }
        int code = http_sync(b, "GET", path, NULL, &resp);
        json_int_t v = json_integer_value(
            json_object_get(resp, is_customer ? "available_credit_cents" : "available"));
        json_decref(resp);
        resp = NULL;
        if (code == 200 && v == (is_customer ? p->credit_cents : p->stock)) {
            i++;
        } else if (sk_time_mono_ms() > deadline) {
            st = SK_FAIL(SK_ETIMEDOUT, "GET %s still not showing the seed after %d ms (HTTP %d)",
                         path, SEED_WAIT_MS, code);
        } else {
            cli_sleep_ms(5);
        }
    }
    return st;
}

/* ---------------------------------------------------------------- the run */

static sk_status follow_add(bench *b, size_t order)
{
    if (b->n_follow == b->cap_follow) {
        size_t cap = b->cap_follow == 0 ? 1024 : b->cap_follow * 2;
        size_t *f = sk_realloc(b->follow, cap * sizeof(*f));
        if (f == NULL) {
            return SK_FAIL(SK_ENOMEM, "follow list");
        }
        b->follow = f;
        b->cap_follow = cap;
    }
    b->follow[b->n_follow++] = order;
    b->orders[order].state = ORD_FOLLOWING;
    return SK_OK;
}

static sk_status order_new(bench *b, int64_t due_us, bool is_measured, size_t *out)
{
    if (b->n_orders == b->cap_orders) {
        size_t cap = b->cap_orders == 0 ? 4096 : b->cap_orders * 2;
        border *o = sk_realloc(b->orders, cap * sizeof(*o));
        if (o == NULL) {
            return SK_FAIL(SK_ENOMEM, "%zu orders", cap);
        }
        b->orders = o;
        b->cap_orders = cap;
    }
    *out = b->n_orders++;
    b->orders[*out] = (border){ .due_us = due_us, .is_measured = is_measured };
    b->n_active++;
    return SK_OK;
}

typedef struct window {
    int64_t start_us, begin_us, end_us; /* run start, measured window [begin, end) */
} window;

static bool in_window(const window *w, int64_t t)
{
    return t >= w->begin_us && t < w->end_us;
}

/* The order is over: count it. */
static void order_done(bench *b,
                       run_result *r,
                       size_t i,
                       const window *w,
                       const char *error,
                       const char *status,
                       const char *reason)
{
    border *o = &b->orders[i];
    int64_t t = now_us();
    o->state = ORD_DONE;
    b->n_active--;
    if (error == NULL && in_window(w, t)) {
        r->completed_in_window++;
    }
    if (error == NULL) {
        SK_IGNORE(cli_lat_add(&b->tick, t - o->due_us)); /* only the progress line's p99 */
    }
    if (!o->is_measured) {
        return;
    }
    if (error != NULL) {
        tally_add(&r->errors, error);
        return;
    }
    r->n_completed++;
    if (strcmp(status, "APPROVED") == 0) {
        r->n_approved++;
    } else {
        char kind[96];
        snprintf(kind, sizeof(kind), "%s%s%.60s", status, reason != NULL ? " " : "",
                 reason != NULL ? reason : "");
        tally_add(&r->rejected, kind);
    }
    r->n_polled += o->is_polled;
    SK_IGNORE(cli_lat_add(&r->e2e, t - o->due_us)); /* ENOMEM only loses a sample */
    if (o->event_us > 0) {
        SK_IGNORE(cli_lat_add(&r->event, o->event_us - o->due_us));
    }
}

static void handle_post(bench *b, run_result *r, xfer *x, CURLcode cc, const window *w)
{
    border *o = &b->orders[x->order];
    int64_t t = now_us();
    long code = 0;
    char kind[96];
    json_t *j = NULL;

    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    o->answered_us = t;
    if (cc != CURLE_OK) {
        snprintf(kind, sizeof(kind), "POST: %s", curl_easy_strerror(cc));
        order_done(b, r, x->order, w, kind, NULL, NULL);
        return;
    }
    if (code != 202) {
        snprintf(kind, sizeof(kind), "POST: HTTP %ld", code);
        order_done(b, r, x->order, w, kind, NULL, NULL);
        return;
    }
    j = body_json(&x->body);
    const char *id = json_string_value(json_object_get(j, "order_id"));
    if (id == NULL || strlen(id) >= sizeof(o->id)) {
        json_decref(j);
        order_done(b, r, x->order, w, "POST: 202 without an order_id", NULL, NULL);
        return;
    }
    snprintf(o->id, sizeof(o->id), "%s", id);
    json_decref(j);
    if (in_window(w, t)) {
        r->accepted_in_window++;
    }
    if (o->is_measured) {
        r->n_accepted++;
        SK_IGNORE(cli_lat_add(&r->post, t - o->due_us)); /* ENOMEM only loses a sample */
    }
    id_entry *e = id_map_find(&b->ids, o->id, true);
    if (e != NULL) {
        e->order = x->order;
        o->event_us = e->event_us;
        o->version = e->version;
    }
    o->is_polled = b->is_polling;
    o->next_get_us = o->event_us > 0 ? t : (b->is_polling ? t + POLL_INTERVAL_US : 0);
    o->retry_us = GET_RETRY_FIRST_US;
    if (follow_add(b, x->order) != SK_OK) {
        order_done(b, r, x->order, w, "bench: out of memory", NULL, NULL);
    }
}

static void handle_get(bench *b, run_result *r, xfer *x, CURLcode cc, const window *w)
{
    border *o = &b->orders[x->order];
    int64_t t = now_us();
    long code = 0;
    char kind[96];
    json_t *j = NULL;

    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (cc == CURLE_OK && code == 200) {
        j = body_json(&x->body);
        const char *status = json_string_value(json_object_get(j, "status"));
        const char *reason = json_string_value(json_object_get(j, "reject_reason"));
        if (status != NULL && strcmp(status, "PENDING") != 0) {
            order_done(b, r, x->order, w, NULL, status, reason);
            json_decref(j);
            return;
        }
        json_decref(j);
    } else if (cc != CURLE_OK || code != 404) {
        /* A failed read is an error a client sees; the order is still followed. */
        if (o->is_measured) {
            if (cc != CURLE_OK) {
                snprintf(kind, sizeof(kind), "GET: %s", curl_easy_strerror(cc));
            } else {
                snprintf(kind, sizeof(kind), "GET: HTTP %ld", code);
            }
            tally_add(&r->errors, kind);
        }
    }
    /* Not terminal in the read model yet (or 404 just after creation): try again shortly. */
    if (o->is_polled || b->is_polling) {
        o->next_get_us = t + POLL_INTERVAL_US;
    } else {
        o->next_get_us = t + o->retry_us;
        o->retry_us = o->retry_us * 2 > GET_RETRY_MAX_US ? GET_RETRY_MAX_US : o->retry_us * 2;
    }
    if (follow_add(b, x->order) != SK_OK) {
        order_done(b, r, x->order, w, "bench: out of memory", NULL, NULL);
    }
}

static void drain_events(bench *b)
{
    event *batch = NULL;
    size_t n = 0;

    pthread_mutex_lock(&b->mu);
    if (b->n_queue > 0) {
        batch = sk_malloc(b->n_queue * sizeof(*batch));
        if (batch != NULL) {
            memcpy(batch, b->queue, b->n_queue * sizeof(*batch));
            n = b->n_queue;
        }
        b->n_queue = 0;
    }
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < n; i++) {
        /* Keep events of orders whose POST is not answered yet; others' orders are bounded. */
        bool is_room = b->ids.n < 4 * b->cap_orders + 100000;
        id_entry *e = id_map_find(&b->ids, batch[i].id, is_room);
        if (e == NULL) {
            continue;
        }
        if (e->event_us == 0) {
            e->event_us = batch[i].t_us;
            e->version = batch[i].version;
        }
        if (e->order != SIZE_MAX) {
            border *o = &b->orders[e->order];
            if (o->event_us == 0) {
                o->event_us = e->event_us;
                o->version = e->version;
            }
            if (o->state == ORD_FOLLOWING && !o->is_polled) {
                o->next_get_us = batch[i].t_us;
            }
        }
    }
    sk_free(batch);
}

/* Collect finished transfers. */
static void reap(bench *b, run_result *r, const window *w)
{
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(b->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        char *priv = NULL;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        xfer *x = (xfer *)(void *)priv;
        curl_multi_remove_handle(b->multi, m->easy_handle);
        b->n_pending--;
        if (x->is_get) {
            handle_get(b, r, x, cc, w);
        } else {
            handle_post(b, r, x, cc, w);
        }
        xfer_free(x);
    }
}

/*
 * Walk the orders being followed: time out the stale, start the GETs that
 * are due, switch to polling those whose event never came. @return the
 * earliest time something here is due.
 */
static int64_t follow_scan(bench *b, run_result *r, const window *w, int64_t now)
{
    int64_t next = now + 100000;
    int64_t timeout_us = (int64_t)(b->o.timeout_s * 1e6);
    size_t k = 0;

    while (k < b->n_follow) {
        size_t i = b->follow[k];
        border *o = &b->orders[i];
        bool is_removed = false;
        if (now - o->due_us >= timeout_us) {
            b->follow[k] = b->follow[--b->n_follow];
            order_done(b, r, i, w, "timeout: no terminal status within --timeout", NULL, NULL);
            continue;
        }
        if (o->next_get_us == 0 && now - o->answered_us >= EVENT_GRACE_US) {
            o->is_polled = true;
            o->next_get_us = now;
        }
        if (o->next_get_us != 0 && o->next_get_us <= now && b->n_pending < MAX_PENDING) {
            b->follow[k] = b->follow[--b->n_follow];
            is_removed = true;
            if (xfer_start(b, i, true) != SK_OK) {
                order_done(b, r, i, w, "bench: cannot start a GET", NULL, NULL);
            }
        }
        if (!is_removed) {
            int64_t due = o->next_get_us != 0 ? o->next_get_us : o->answered_us + EVENT_GRACE_US;
            next = due < next ? due : next;
            next = o->due_us + timeout_us < next ? o->due_us + timeout_us : next;
            k++;
        }
    }
    return next;
}

static void progress(bench *b,
                     const window *w,
                     int64_t now,
                     uint64_t sent,
                     uint64_t completed,
                     int64_t p99_us,
                     bool is_final)
{
    double el = (double)(now - w->start_us) / 1e6;
    const char *phase = now < w->begin_us ? "warm-up" : now < w->end_us ? "measuring" : "draining";
    if (b->is_tty) {
        fprintf(stderr,
                "\r\033[K%6.1fs %-9s sent %llu  completed %llu  in flight %zu  p99 %.1f ms%s", el,
                phase, (unsigned long long)sent, (unsigned long long)completed, b->n_active,
                (double)p99_us / 1000.0, is_final ? "\n" : "");
    } else if (!is_final) {
        fprintf(stderr, "%6.1fs %-9s sent %llu  completed %llu  in flight %zu  p99 %.1f ms\n", el,
                phase, (unsigned long long)sent, (unsigned long long)completed, b->n_active,
                (double)p99_us / 1000.0);
    }
}

/* Say once why JetStream is not counted (for this run, or from now on when @p is_for_good). */
static void broker_skip(bench *b, bool is_for_good)
{
    fprintf(stderr, "skald: " CTX ": JetStream messages per order not counted%s: %s\n",
            is_for_good ? "" : " for this run", sk_error_message());
    sk_error_clear();
    if (is_for_good) {
        cli_broker_close(&b->broker);
    }
}

/* Mark the streams before a run's first order; false when JetStream is not counted. */
static bool broker_begin(bench *b)
{
    if (b->broker.js == NULL) {
        return false;
    }
    if (cli_broker_mark(&b->broker) != SK_OK) {
        broker_skip(b, true);
        return false;
    }
    return true;
}

/*
 * End of a run's JetStream count: once the streams have not grown for
 * BROKER_SETTLE_POLLS polls (an order's last messages, CommitReservation and
 * what answers it, come after its terminal event), per order accepted. Not
 * reported when they still grow BROKER_SETTLE_US after the run.
 */
static void broker_end(bench *b, run_result *r)
{
    uint64_t published = 0, delivered = 0, last = UINT64_MAX;
    int64_t deadline = now_us() + BROKER_SETTLE_US;
    size_t n_accepted = 0;

    for (int n_same = 0;;) {
        if (cli_broker_since(&b->broker, &published, &delivered) != SK_OK) {
            broker_skip(b, sk_error_status() != SK_ECONFLICT); /* a consumer added: this run only */
            return;
        }
        n_same = published == last ? n_same + 1 : 0;
        last = published;
        if (n_same == BROKER_SETTLE_POLLS) {
            break;
        }
        if (now_us() >= deadline) {
            fprintf(stderr,
                    "skald: " CTX ": JetStream messages per order not counted for this run: the "
                    "streams still grew %d s after its last order\n",
                    BROKER_SETTLE_US / 1000000);
            return;
        }
        cli_sleep_ms(BROKER_SETTLE_POLL_MS);
    }
    for (size_t i = 0; i < b->n_orders; i++) {
        n_accepted += b->orders[i].id[0] != '\0'; /* the POST's 202 carried its id */
    }
    if (n_accepted > 0) {
        r->has_broker = true;
        r->published_per_order = (double)published / (double)n_accepted;
        r->delivered_per_order = (double)delivered / (double)n_accepted;
    }
}

/* One measurement: warm-up, then duration_s measured, then wait for every order. */
static sk_status run_once(bench *b, double rate, int concurrency, run_result *r)
{
    window w;
    cli_sched sched;
    uint64_t sent = 0, completed = 0;
    sk_status st = SK_OK;
    int64_t next_tick;

    b->n_runs++;
    cli_lat_reset(&b->tick);
    b->n_orders = 0;
    b->n_active = 0;
    b->n_follow = 0;
    id_map_clear(&b->ids);
    pthread_mutex_lock(&b->mu);
    b->n_queue = 0;
    pthread_mutex_unlock(&b->mu);
    bool has_broker = broker_begin(b);
    r->offered = rate;
    r->concurrency = concurrency;
    r->duration_s = b->o.duration_s;
    r->warmup_s = b->o.warmup_s;
    w.start_us = now_us();
    w.begin_us = w.start_us + (int64_t)(b->o.warmup_s * 1e6);
    w.end_us = w.begin_us + (int64_t)(b->o.duration_s * 1e6);
    cli_sched_init(&sched, w.start_us, rate,
                   rate > 0 ? (uint64_t)(rate * (b->o.warmup_s + b->o.duration_s) + 0.999999) : 0);
    next_tick = w.start_us + 1000000;
    int sys_phase = 0; /* the system's window: 0 before, 1 in it, 2 after */
    for (;;) {
        int64_t now = now_us();
        if (sys_phase == 0 && now >= w.begin_us) {
            cli_sys_start(&b->sys);
            sys_phase = 1;
        } else if (sys_phase == 1 && now >= w.end_us) {
            cli_sys_sample(&b->sys); /* the window's end */
            sys_phase = 2;
        }
        int64_t wake = now + 100000;
        uint64_t idx;
        int64_t due;

        /* Send what is due. */
        if (rate > 0) {
            while (st == SK_OK && b->n_pending < MAX_PENDING &&
                   cli_sched_next(&sched, now, &idx, &due)) {
                size_t i;
                st = order_new(b, due, in_window(&w, due), &i);
                st = st == SK_OK ? xfer_start(b, i, false) : st;
                sent++;
            }
            int64_t wait = cli_sched_wait_us(&sched, now);
            wake = wait >= 0 && now + wait < wake ? now + wait : wake;
        } else {
            while (st == SK_OK && now < w.end_us && b->n_active < (size_t)concurrency) {
                size_t i;
                st = order_new(b, now, in_window(&w, now), &i);
                st = st == SK_OK ? xfer_start(b, i, false) : st;
                sent++;
            }
            wake = now < w.end_us && w.end_us < wake ? w.end_us : wake;
        }
        if (st != SK_OK) {
            break;
        }
        size_t active_before = b->n_active;
        reap(b, r, &w);
        drain_events(b);
        now = now_us();
        int64_t due_follow = follow_scan(b, r, &w, now);
        wake = due_follow < wake ? due_follow : wake;
        completed += active_before - b->n_active;
        if (now >= next_tick) {
            /* p99 of the orders completed since the last line. */
            progress(b, &w, now, sent, completed, cli_lat_percentile(&b->tick, 99), false);
            cli_lat_reset(&b->tick);
            next_tick += 1000000;
            if (sys_phase == 1) {
                cli_sys_sample(&b->sys); /* memory peaks, once a second */
            }
        }
        wake = next_tick < wake ? next_tick : wake;
        bool is_sending = rate > 0 ? sched.n_taken < sched.n_total : now < w.end_us;
        if (!is_sending && b->n_active == 0) {
            break;
        }
        now = now_us();
        int wait_ms = wake > now ? (int)((wake - now + 999) / 1000) : 0;
        cli_curl_loop_run(&b->loop, wait_ms);
        if (atomic_load(&b->is_denied) && !b->is_polling) {
            b->is_polling = true;
            fprintf(stderr,
                    "skald: " CTX ": the NATS server refused the subscription to %s.events "
                    "(permissions of %s; restart the system with this version of skald): "
                    "following orders by polling every %d ms\n",
                    b->context, CLI_IDENTITY, POLL_INTERVAL_US / 1000);
        }
    }
    progress(b, &w, now_us(), sent, completed, cli_lat_percentile(&b->tick, 99), true);
    r->n_sent = 0;
    for (size_t i = 0; i < b->n_orders; i++) {
        r->n_sent += b->orders[i].is_measured;
    }
    r->achieved = (double)r->accepted_in_window / b->o.duration_s;
    r->completed_rate = (double)r->completed_in_window / b->o.duration_s;
    if (sys_phase == 1) {
        cli_sys_sample(&b->sys); /* the run stopped inside its window: end it now */
    }
    if (sys_phase > 0) {
        double window_s = (double)(b->sys.t1_us - b->sys.t0_us) / 1e6;
        cli_sys_report_make(&b->sys, r->completed_rate * window_s, &r->sys);
    }
    if (st == SK_OK && has_broker) {
        broker_end(b, r);
    }
    return st;
}

/* ---------------------------------------------------------------- output */

static json_t *lat_json(cli_lat *l)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "p50", cli_lat_percentile(l, 50) / 1000.0,
                     "p90", cli_lat_percentile(l, 90) / 1000.0, "p99",
                     cli_lat_percentile(l, 99) / 1000.0, "p99_9",
                     cli_lat_percentile(l, 99.9) / 1000.0, "max",
                     cli_lat_percentile(l, 100) / 1000.0, "count", (json_int_t)l->n);
}

static json_t *tally_json(const tally *t)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < t->n; i++) {
        json_object_set_new(o, t->kind[i], json_integer((json_int_t)t->count[i]));
    }
    return o;
}

static uint64_t n_failed(const run_result *r)
{
    return r->errors.total + r->rejected.total;
}

static json_t *sys_json(const cli_sys_report *s)
{
    if (!s->is_available) {
        return json_null();
    }
    return json_pack("{s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:s, s:I, s:I, s:I, s:I, s:I}",
                     "skald_up_pid", s->root, "processes", (json_int_t)s->n_procs,
                     "cpu_ms_per_order", s->cpu_ms_per_order, "services_cpu_ms_per_order",
                     s->services_cpu_ms_per_order, "broker_cpu_ms_per_order",
                     s->broker_cpu_ms_per_order, "client_cpu_ms_per_order",
                     s->client_cpu_ms_per_order, "cpu_share", s->cpu_share, "largest_service",
                     s->largest, "largest_rss_kb", (json_int_t)s->largest_rss_kb, "largest_pss_kb",
                     (json_int_t)s->largest_pss_kb, "services_rss_kb",
                     (json_int_t)s->services_rss_kb, "services_pss_kb",
                     (json_int_t)s->services_pss_kb, "broker_rss_kb",
                     (json_int_t)s->broker_rss_kb);
}

static json_t *result_json(run_result *r)
{
    json_t *o = json_pack(
        "{s:s, s:f, s:f, s:I, s:I, s:f, s:I, s:I, s:f, s:I}", "mode",
        r->offered > 0 ? "open" : "closed", "duration_s", r->duration_s, "warmup_s", r->warmup_s,
        "sent", (json_int_t)r->n_sent, "accepted", (json_int_t)r->n_accepted, "achieved_rate",
        r->achieved, "completed", (json_int_t)r->n_completed, "approved", (json_int_t)r->n_approved,
        "completed_rate", r->completed_rate, "followed_by_polling", (json_int_t)r->n_polled);
    if (o == NULL) {
        return NULL;
    }
    json_object_set_new(o, "offered_rate", r->offered > 0 ? json_real(r->offered) : json_null());
    json_object_set_new(o, "concurrency",
                        r->concurrency > 0 ? json_integer(r->concurrency) : json_null());
    json_object_set_new(o, "rejected", tally_json(&r->rejected));
    json_object_set_new(o, "errors", tally_json(&r->errors));
    json_object_set_new(o, "post_ms", lat_json(&r->post));
    json_object_set_new(o, "end_to_end_ms", lat_json(&r->e2e));
    json_object_set_new(o, "terminal_event_ms", lat_json(&r->event));
    json_object_set_new(o, "system", sys_json(&r->sys));
    json_object_set_new(o, "jetstream",
                        r->has_broker
                            ? json_pack("{s:f, s:f}", "published_per_order",
                                        r->published_per_order, "delivered_per_order",
                                        r->delivered_per_order)
                            : json_null());
    return o;
}

static void print_lat(const char *label, cli_lat *l)
{
    printf("  %-16s %8.2f %8.2f %8.2f %8.2f %8.2f %8zu\n", label,
           cli_lat_percentile(l, 50) / 1000.0, cli_lat_percentile(l, 90) / 1000.0,
           cli_lat_percentile(l, 99) / 1000.0, cli_lat_percentile(l, 99.9) / 1000.0,
           cli_lat_percentile(l, 100) / 1000.0, l->n);
}

static void print_tally(const char *label, const tally *t)
{
    printf("%-18s", label);
    if (t->n == 0) {
        printf("none");
    }
    for (size_t i = 0; i < t->n; i++) {
        printf("%s%s: %llu", i > 0 ? ", " : "", t->kind[i], (unsigned long long)t->count[i]);
    }
    printf("\n");
}

static void print_result(run_result *r)
{
    if (r->offered > 0) {
        printf("%-18sopen loop, offered %.1f orders/s for %g s (after a %g s warm-up, excluded)\n",
               "mode", r->offered, r->duration_s, r->warmup_s);
    } else {
        printf("%-18sclosed loop, %d orders in flight for %g s (after a %g s warm-up, excluded)\n",
               "mode", r->concurrency, r->duration_s, r->warmup_s);
    }
    printf("%-18ssent %llu, accepted %llu (202); achieved %.1f requests/s\n", "requests",
           (unsigned long long)r->n_sent, (unsigned long long)r->n_accepted, r->achieved);
    printf("%-18scompleted %llu (approved %llu), %.1f orders/s; %llu followed by polling\n",
           "orders", (unsigned long long)r->n_completed, (unsigned long long)r->n_approved,
           r->completed_rate, (unsigned long long)r->n_polled);
    print_tally("not approved", &r->rejected);
    print_tally("errors", &r->errors);
    printf("%-18s %8s %8s %8s %8s %8s %8s\n", "latency (ms)", "p50", "p90", "p99", "p99.9", "max",
           "count");
    print_lat("POST", &r->post);
    if (r->event.n > 0) {
        print_lat("terminal event", &r->event); /* none when following by polling */
    }
    print_lat("end-to-end", &r->e2e);
    if (r->sys.is_available) {
        const cli_sys_report *s = &r->sys;
        printf("%-18sskald up (pid %d) and its %zu processes, during the measured window:\n",
               "system", s->root, s->n_procs);
        printf("  %-16s %.2f ms: services %.2f, nats-server %.2f (this client %.2f); %.0f %% of "
               "the machine's cores\n",
               "CPU per order", s->cpu_ms_per_order, s->services_cpu_ms_per_order,
               s->broker_cpu_ms_per_order, s->client_cpu_ms_per_order, s->cpu_share * 100.0);
        printf("  %-16s largest service %s: RSS %.1f MiB, PSS %.1f MiB; all services: RSS %.1f "
               "MiB, PSS %.1f MiB; nats-server: RSS %.1f MiB\n",
               "peak memory", s->largest, (double)s->largest_rss_kb / 1024.0,
               (double)s->largest_pss_kb / 1024.0, (double)s->services_rss_kb / 1024.0,
               (double)s->services_pss_kb / 1024.0, (double)s->broker_rss_kb / 1024.0);
    }
    if (r->has_broker) {
        printf("%-18s%.1f messages published and %.1f delivered per order (the whole run, warm-up "
               "included)\n",
               "JetStream", r->published_per_order, r->delivered_per_order);
    }
}

static const char measures[] =
    "POST: from the scheduled send (open loop) or the send (closed loop) to the 202; "
    "terminal event: to the order's OrderApproved/OrderRejected event arriving on NATS; "
    "end-to-end: to the answer of the first GET /api/v1/orders/{id} showing a terminal status "
    "(one GET issued when the event arrives, with a consistency token for the order's version "
    "in the event so that the read model answers once it shows it; retried should it not; "
    "orders whose event never came are polled every 10 ms); system: the children of the local "
    "skald up, "
    "from /proc during the measured window (CPU per completed order; peak RSS and PSS); "
    "jetstream: messages stored in the system's streams during the whole run and their "
    "deliveries (times each stream's consumers, redeliveries not counted), per order accepted";

/* ---------------------------------------------------------------- command */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: skald bench [--rate R | --concurrency C] [--duration S] [--warmup S] [--json]\n"
            "                   [--find-max [--max-rate R]] [--data DIR] [--url URL]\n"
            "                   [--connections N] [--timeout S] [--follow events|poll]\n"
            "  --rate R         open loop: R orders/s sent on schedule (default %g; with\n"
            "                   --find-max the first step, default %g)\n"
            "  --concurrency C  closed loop: C orders in flight, each POST → terminal\n"
            "  --duration S     measured seconds (default %g; per step with --find-max)\n"
            "  --warmup S       seconds before measuring, excluded from the figures (default %g)\n"
            "  --find-max       step the rate ×%g until p99 end-to-end passes 1 s or errors\n"
            "                   appear, then %d steps in between to narrow the bracket;\n"
            "                   report the highest sustained rate\n"
            "  --max-rate R     stop --find-max below R orders/s (default %g)\n"
            "  --json           print one JSON object on stdout\n"
            "  --data DIR       data dir of the running system (default $SKALD_DATA, else ./var)\n"
            "  --url URL        the gateway (default: found in discovery; then no system\n"
            "                   CPU and memory figures, which need the local skald up)\n"
            "  --connections N  most HTTP connections to the gateway (default %d)\n"
            "  --timeout S      an order not terminal after S seconds is an error (default %g)\n"
            "  --follow MODE    events (default): GET each order when its terminal event\n"
            "                   appears on NATS; poll: GET every 10 ms\n",
            CLI_BENCH_DEFAULT_RATE, CLI_BENCH_FIND_START_RATE, CLI_BENCH_DEFAULT_DURATION_S,
            CLI_BENCH_DEFAULT_WARMUP_S, CLI_BENCH_FIND_FACTOR, CLI_BENCH_FIND_REFINE,
            CLI_BENCH_FIND_MAX_RATE, CLI_BENCH_DEFAULT_CONNS, CLI_BENCH_DEFAULT_TIMEOUT_S);
}

static void bench_fini(bench *b)
{
    if (b->has_mu) {
        pthread_mutex_lock(&b->mu);
        b->is_started = false;
        pthread_mutex_unlock(&b->mu);
    }
    cli_broker_close(&b->broker);
    events_close(b);
    cli_lat_fini(&b->tick);
    if (b->has_loop) {
        cli_curl_loop_fini(&b->loop);
    }
    for (size_t i = 0; i < b->n_idle; i++) {
        curl_easy_cleanup(b->idle[i]);
    }
    if (b->multi != NULL) {
        curl_multi_cleanup(b->multi);
    }
    if (b->sync != NULL) {
        curl_easy_cleanup(b->sync);
    }
    for (int i = 0; b->skus != NULL && i < b->plan.n_products; i++) {
        sk_free(b->skus[i]);
    }
    for (int i = 0; b->customers != NULL && i < b->plan.n_customers; i++) {
        sk_free(b->customers[i]);
    }
    sk_free(b->skus);
    sk_free(b->customers);
    sk_free(b->orders);
    sk_free(b->follow);
    sk_free(b->ids.e);
    sk_free(b->queue);
    sk_free(b->gateway);
    sk_free(b->context);
    if (b->has_mu) {
        pthread_mutex_destroy(&b->mu);
    }
}

/* Everything before the first order: find the gateway, subscribe, set up libcurl, seed. */
static int bench_prepare(bench *b, cli_conn *conn)
{
    const char *data = cli_data_dir_choose(b->o.data);
    sk_system *sys = NULL;
    char uuid[SK_UUID_LEN];
    int rc = CLI_EXIT_FAILURE;
    bool has_conn = false;

    sk_uuid7(uuid);
    /* The random tail of a UUIDv7: unique enough for SKUs and idempotency keys of this run. */
    snprintf(b->run_id, sizeof(b->run_id), "%.8s%.4s", uuid + 28, uuid + 24);
    cli_lat_init(&b->tick);
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        cli_errorf(CTX, "creating a mutex");
        return CLI_EXIT_FAILURE;
    }
    b->has_mu = true;
    b->is_tty = isatty(STDERR_FILENO) == 1;
    /* With --url and no running system here, the orders are followed by polling. */
    if (b->o.url == NULL || access(data, F_OK) == 0) {
        if (cli_conn_open(conn, data, CTX) != CLI_EXIT_OK) {
            if (b->o.url == NULL) {
                return CLI_EXIT_FAILURE;
            }
        } else {
            has_conn = true;
        }
    }
    sys = has_conn ? system_load(data) : NULL;
    if (has_conn && b->o.url == NULL) {
        /* The system's own CPU and memory, when its skald up runs on this machine. */
        (void)cli_sys_open(&b->sys, data); /* none: no system figures */
    }
    b->context = order_context(sys);
    if (b->o.url != NULL) {
        b->gateway = sk_strdup(b->o.url);
        size_t n = b->gateway != NULL ? strlen(b->gateway) : 0;
        if (n > 0 && b->gateway[n - 1] == '/') {
            b->gateway[n - 1] = '\0';
        }
    } else if (gateway_find(b, conn, sys) != SK_OK) {
        cli_errorf(CTX, "%s", sk_error_message());
        goto out;
    }
    if (b->gateway == NULL || b->context == NULL) {
        cli_errorf(CTX, "out of memory");
        goto out;
    }
    b->is_polling = b->o.is_poll || !has_conn;
    if (!b->is_polling && (events_open(b, conn) != SK_OK || atomic_load(&b->is_denied))) {
        if (atomic_load(&b->is_denied)) {
            SK_IGNORE(SK_FAIL(SK_EBUS,
                              "the NATS server refused %s a subscription to %s.events "
                              "(a system started by an older skald)",
                              CLI_IDENTITY, b->context));
        }
        fprintf(stderr, "skald: " CTX ": %s: following orders by polling every %d ms\n",
                sk_error_message(), POLL_INTERVAL_US / 1000);
        events_close(b);
        b->is_polling = true;
    }
    /* JetStream is counted on the same connection; following by polling opens one for it. */
    if (b->nc == NULL && has_conn && sys != NULL && nats_open(b, conn) != SK_OK) {
        broker_skip(b, true);
    }
    if (b->nc != NULL && sys != NULL && cli_broker_open(&b->broker, b->nc, sys) != SK_OK) {
        broker_skip(b, true); /* the rest of the bench is unaffected */
    }
    b->multi = curl_multi_init();
    b->sync = curl_easy_init();
    if (b->multi == NULL || b->sync == NULL) {
        cli_errorf(CTX, "libcurl: cannot create handles");
        goto out;
    }
    curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->o.connections);
    curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)b->o.connections);
    curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->o.connections);
    if (cli_curl_loop_init(&b->loop, b->multi) != SK_OK) {
        cli_errorf(CTX, "%s", sk_error_message());
        goto out;
    }
    b->has_loop = true;
    pthread_mutex_lock(&b->mu);
    b->is_started = true;
    pthread_mutex_unlock(&b->mu);
    if (seed(b) != SK_OK) {
        cli_errorf(CTX, "seeding: %s", sk_error_message());
        goto out;
    }
    fprintf(
        stderr,
        "skald: " CTX ": gateway %s; seeded %d products (stock %lld each, %lld cents) and "
        "%d customers (credit %lld cents each), enough for %llu orders; following orders by %s\n",
        b->gateway, b->plan.n_products, (long long)b->plan.stock, (long long)b->plan.price_cents,
        b->plan.n_customers, (long long)b->plan.credit_cents,
        (unsigned long long)b->plan.max_orders,
        b->is_polling ? "polling GET every 10 ms" : "their terminal events on NATS + one GET");
    rc = CLI_EXIT_OK;
out:
    sk_system_destroy(sys);
    return rc;
}

static json_t *seed_json(const bench *b)
{
    return json_pack("{s:i, s:i, s:I, s:I, s:I}", "products", b->plan.n_products, "customers",
                     b->plan.n_customers, "stock_per_product", (json_int_t)b->plan.stock,
                     "price_cents", (json_int_t)b->plan.price_cents, "credit_per_customer_cents",
                     (json_int_t)b->plan.credit_cents);
}

static void json_print(json_t *o)
{
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (text != NULL) {
        printf("%s\n", text);
    }
    sk_free(text);
}

/*
 * One --find-max measurement at @p rate: step @p n of the climb, or (@p
 * is_refine) refining step @p n between the last sustained rate and the
 * first that was not. Reported as it ends (an element of @p steps with
 * --json, a line otherwise). @return false when the run failed (said on
 * stderr); else *is_ok tells whether the rate was sustained.
 */
static bool find_step(bench *b, bool is_refine, int n, double rate, json_t *steps, bool *is_ok)
{
    run_result r;
    const char *label = is_refine ? "refine" : "step";

    run_result_init(&r);
    fprintf(stderr, "skald: " CTX ": %s %d: %.1f orders/s\n", label, n, rate);
    if (run_once(b, rate, 0, &r) != SK_OK) {
        cli_errorf(CTX, "%s", sk_error_message());
        run_result_fini(&r);
        return false;
    }
    int64_t p99 = cli_lat_percentile(&r.e2e, 99);
    *is_ok = cli_bench_is_sustained(rate, r.achieved, r.completed_rate, p99, n_failed(&r));
    if (steps != NULL) {
        json_t *o = result_json(&r);
        if (o != NULL) {
            json_object_set_new(o, "sustained", json_boolean(*is_ok));
            json_object_set_new(o, "refining", json_boolean(is_refine));
        }
        json_array_append_new(steps, o);
    } else {
        printf("%s %d: offered %.1f/s, achieved %.1f/s, completed %.1f/s, p99 end-to-end "
               "%.1f ms, failed %llu: %s",
               label, n, rate, r.achieved, r.completed_rate, (double)p99 / 1000.0,
               (unsigned long long)n_failed(&r), *is_ok ? "sustained" : "not sustained");
        if (r.sys.is_available) {
            /* How the cost of an order falls as batching grows with the load. */
            printf(" (system: %.2f ms CPU per order, %.0f %% of the cores)", r.sys.cpu_ms_per_order,
                   r.sys.cpu_share * 100.0);
        }
        printf("\n");
        if (!*is_ok && !is_refine) {
            print_result(&r);
        }
    }
    run_result_fini(&r);
    return true;
}

/*
 * --find-max: steps ×CLI_BENCH_FIND_FACTOR until one is not sustained or the
 * next would pass --max-rate; then CLI_BENCH_FIND_REFINE steps between the
 * last sustained rate and the first that was not, each keeping the half of
 * the bracket the answer lies in.
 */
static int find_max(bench *b)
{
    json_t *steps = b->o.is_json ? json_array() : NULL;
    double best = 0, failed = 0;
    int rc = CLI_EXIT_OK;

    for (int k = 0; rc == CLI_EXIT_OK && k < CLI_BENCH_FIND_MAX_STEPS; k++) {
        double rate = cli_bench_step_rate(b->o.rate, CLI_BENCH_FIND_FACTOR, k);
        bool is_ok = false;
        if (rate > b->o.max_rate) {
            break;
        }
        if (!find_step(b, false, k + 1, rate, steps, &is_ok)) {
            rc = CLI_EXIT_FAILURE;
        } else if (!is_ok) {
            failed = rate;
            break;
        } else {
            best = rate;
        }
    }
    for (int i = 0; rc == CLI_EXIT_OK && best > 0 && failed > 0 && i < CLI_BENCH_FIND_REFINE; i++) {
        double rate = cli_bench_refine_rate(best, failed);
        bool is_ok = false;
        if (!find_step(b, true, i + 1, rate, steps, &is_ok)) {
            rc = CLI_EXIT_FAILURE;
        } else if (is_ok) {
            best = rate;
        } else {
            failed = rate;
        }
    }
    if (rc == CLI_EXIT_OK) {
        if (steps != NULL) {
            json_t *o = json_pack("{s:s, s:O, s:o, s:s}", "mode", "find-max", "steps", steps,
                                  "seed", seed_json(b), "measures", measures);
            if (o != NULL) {
                json_object_set_new(o, "max_sustained_rate",
                                    best > 0 ? json_real(best) : json_null());
                json_object_set_new(o, "min_unsustained_rate",
                                    failed > 0 ? json_real(failed) : json_null());
            }
            json_print(o);
            json_decref(o);
        } else if (best > 0) {
            printf("highest sustained rate: %.1f orders/s (achieved ≥ %.0f %% of offered, p99 "
                   "end-to-end ≤ 1 s, no errors)",
                   best, CLI_BENCH_SUSTAINED_SHARE * 100);
            if (failed > 0) {
                printf("; not sustained at %.1f orders/s", failed);
            }
            printf("\n");
        } else {
            printf("no rate was sustained, not even the first step (%.1f orders/s)\n", b->o.rate);
        }
    }
    json_decref(steps);
    return rc;
}

int cli_cmd_bench(int argc, char **argv)
{
    bench b = { 0 };
    cli_conn conn = { 0 };
    int rc;

    if (cli_bench_args_parse(argc, argv, &b.o) != SK_OK) {
        cli_errorf(CTX, "%s", sk_error_message());
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (b.o.is_help) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (cli_bench_plan_make(&b.o, &b.plan) != SK_OK) {
        cli_errorf(CTX, "%s", sk_error_message());
        return CLI_EXIT_USAGE;
    }
    /* The bus logs reconnect warnings; here the outcome is reported once. */
    if (getenv("SK_LOG_LEVEL") == NULL) {
        sk_log_set_level(SK_LOG_LEVEL_ERROR);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_errorf(CTX, "libcurl initialisation failed");
        return CLI_EXIT_FAILURE;
    }
    rc = bench_prepare(&b, &conn);
    if (rc == CLI_EXIT_OK && b.o.is_find_max) {
        rc = find_max(&b);
    } else if (rc == CLI_EXIT_OK) {
        run_result r;
        run_result_init(&r);
        if (run_once(&b, b.o.rate, b.o.concurrency, &r) != SK_OK) {
            cli_errorf(CTX, "%s", sk_error_message());
            rc = CLI_EXIT_FAILURE;
        } else if (b.o.is_json) {
            json_t *o = result_json(&r);
            if (o != NULL) {
                json_object_set_new(o, "seed", seed_json(&b));
                json_object_set_new(o, "measures", json_string(measures));
            }
            json_print(o);
            json_decref(o);
        } else {
            print_result(&r);
            printf("(%s)\n", measures);
        }
        run_result_fini(&r);
    }
    bench_fini(&b);
    cli_conn_close(&conn);
    curl_global_cleanup();
    return rc;
}
