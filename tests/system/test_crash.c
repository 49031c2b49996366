/* SPDX-License-Identifier: MIT */
/*
 * Crash test of the reference shop: a saga resumes after its process is
 * killed mid-step, and no acknowledged order is lost.
 *
 * For each victim service (order, inventory, payment, orderview) the test
 * seeds fresh products and customers, submits a burst of orders from several
 * client threads (each POST carries an Idempotency-Key and is retried with the
 * same key on a transport error, 429 or 5xx until a 202 arrives), SIGKILLs the
 * victim's process while the sagas are in flight, waits for `skald up` to
 * restart it and then checks the business rules of CONTRACT.md:
 *   - every accepted order reaches APPROVED or REJECTED (with a known reason);
 *   - per product: stock + restocked == available + reserved + sold,
 *     reserved == 0 and sold == the quantities of the APPROVED orders;
 *   - per customer: credit_limit - available_credit == the total of its
 *     APPROVED orders, and its order list holds exactly the accepted orders;
 *   - replaying an Idempotency-Key returns the order it first created.
 * Every violation is printed with the invariant and the id before the test
 * fails. Read models are eventually consistent, so every check polls with a
 * deadline; nothing sleeps a fixed time to let things settle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_system.h"

#define N_SKUS      3
#define N_CUSTOMERS 4
#define N_ORDERS    30
#define N_CLIENTS   4
#define STOCK       50
/* The victim dies once this many orders of the burst have been accepted. */
#define KILL_AFTER 8
/* Deadlines (ms). */
#define SUBMIT_MS   45000 /* one order's retries until a 202 */
#define RESTART_MS  20000 /* skald up restarts the victim and /readyz is 200 again */
#define TERMINAL_MS 60000 /* every accepted order terminal */
#define SETTLE_MS   20000 /* read models agree with the terminal orders */

static sk_test_system g_sys;
static bool g_failed; /* keep the data dir for a post-mortem */

static const int64_t g_prices[N_SKUS] = { 700, 1300, 2100 };
/*
 * Orders cost 2,000..6,800 cents: customer 0 affords every order, 1 and 2
 * only some, 3 none (so INSUFFICIENT_CREDIT rejections run the compensation
 * ReleaseReservation in every scenario).
 */
static const int64_t g_limits[N_CUSTOMERS] = { 10000000, 20000, 9000, 1500 };

typedef struct order_req {
    int customer;    /* index into scenario.customers */
    int qty[N_SKUS]; /* 0: sku not in the order */
    int64_t total;   /* at the seeded prices */
    char key[96];    /* Idempotency-Key */
    char body[1024];
    char order_id[64]; /* set by the client once a 202 arrived */
    int n_attempts;
    char last_error[256]; /* why no 202 arrived (when order_id stays empty) */
    json_t *view;         /* terminal order view (owned) */
} order_req;

typedef struct scenario {
    const char *victim;
    char skus[N_SKUS][64];
    char customers[N_CUSTOMERS][64];
    order_req orders[N_ORDERS];
    atomic_int n_accepted;
    int n_violations;
} scenario;

typedef struct client {
    scenario *sc;
    int index;
} client;

/* ---------------------------------------------------------------- helpers */

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void http(const char *method,
                 const char *path,
                 const char *body,
                 const char *const *headers,
                 sk_test_http *r)
{
    sk_status st =
        sk_test_http_send(&g_sys, method, path, body, body != NULL ? strlen(body) : 0, headers, r);
    if (st != SK_OK) {
        fail_msg("%s %s: %s", method, path, sk_error_message());
    }
}

/* Like http() but a transport error (the victim may be down) is an answer with status 0. */
static void http_soft(const char *method, const char *path, sk_test_http *r)
{
    if (sk_test_http_send(&g_sys, method, path, NULL, 0, NULL, r) != SK_OK) {
        memset(r, 0, sizeof(*r));
    }
}

static const char *jstr_or(const json_t *o, const char *k, const char *fallback)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : fallback;
}

static int64_t jint_or(const json_t *o, const char *k, int64_t fallback)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/* Print one broken invariant; the scenario fails once all checks ran. */
static void violation(scenario *sc, const char *fmt, ...) SK_PRINTF(2, 3);

static void violation(scenario *sc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[victim %s] INVARIANT BROKEN: ", sc->victim);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    sc->n_violations++;
}

static void unique(char *out, size_t len, const char *prefix)
{
    static atomic_int counter;
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    snprintf(out, len, "%s-%d-%.8s", prefix, atomic_fetch_add(&counter, 1) + 1, id + 28);
}

/* ---------------------------------------------------------------- seeding */

static void seed(scenario *sc)
{
    sk_test_http r;
    char body[512], path[160];
    for (int j = 0; j < N_SKUS; j++) {
        unique(sc->skus[j], sizeof(sc->skus[j]), "CRASH");
        snprintf(body, sizeof(body),
                 "{\"sku\":\"%s\",\"name\":\"Crash %d\",\"price_cents\":%lld,\"stock\":%d}",
                 sc->skus[j], j, (long long)g_prices[j], STOCK);
        http("POST", "/api/v1/products", body, NULL, &r);
        if (r.status != 201) {
            fail_msg("seeding product %s: HTTP %d: %s", sc->skus[j], r.status, r.body);
        }
        sk_test_http_fini(&r);
    }
    for (int c = 0; c < N_CUSTOMERS; c++) {
        snprintf(body, sizeof(body), "{\"name\":\"Crash %s %d\",\"credit_limit_cents\":%lld}",
                 sc->victim, c, (long long)g_limits[c]);
        http("POST", "/api/v1/customers", body, NULL, &r);
        if (r.status != 201) {
            fail_msg("seeding customer %d: HTTP %d: %s", c, r.status, r.body);
        }
        snprintf(sc->customers[c], sizeof(sc->customers[c]), "%s",
                 jstr_or(r.json, "customer_id", ""));
        sk_test_http_fini(&r);
    }
    /* Visible means the payment account is open too: available credit == limit. */
    int64_t deadline = sk_time_mono_ms() + 15000;
    for (int c = 0; c < N_CUSTOMERS; c++) {
        snprintf(path, sizeof(path), "/api/v1/customers/%s", sc->customers[c]);
        for (;;) {
            http_soft("GET", path, &r);
            bool is_ready =
                r.status == 200 && jint_or(r.json, "available_credit_cents", -1) == g_limits[c];
            sk_test_http_fini(&r);
            if (is_ready) {
                break;
            }
            if (sk_time_mono_ms() > deadline) {
                fail_msg("customer %s not visible with available credit %lld within 15 s",
                         sc->customers[c], (long long)g_limits[c]);
            }
            pause_ms(20);
        }
    }
    for (int j = 0; j < N_SKUS; j++) {
        snprintf(path, sizeof(path), "/api/v1/products/%s", sc->skus[j]);
        for (;;) {
            http_soft("GET", path, &r);
            bool is_ready = r.status == 200 && jint_or(r.json, "available", -1) == STOCK;
            sk_test_http_fini(&r);
            if (is_ready) {
                break;
            }
            if (sk_time_mono_ms() > deadline) {
                fail_msg("product %s not visible with stock %d within 15 s", sc->skus[j], STOCK);
            }
            pause_ms(20);
        }
    }

    /* The orders: two skus each, quantity 1 or 2; at most ~30 units of a sku, so never out of
     * stock. */
    for (int i = 0; i < N_ORDERS; i++) {
        order_req *o = &sc->orders[i];
        char items[512] = "[";
        size_t len = 1;
        o->customer = i % N_CUSTOMERS;
        o->total = 0;
        for (int j = 0; j < N_SKUS; j++) {
            o->qty[j] = (i + j) % 3 == 0 ? 0 : 1 + (i + j) % 2;
            if (o->qty[j] > 0) {
                len += (size_t)snprintf(items + len, sizeof(items) - len,
                                        "%s{\"sku\":\"%s\",\"quantity\":%d}", len > 1 ? "," : "",
                                        sc->skus[j], o->qty[j]);
                o->total += o->qty[j] * g_prices[j];
            }
        }
        snprintf(items + len, sizeof(items) - len, "]");
        snprintf(o->body, sizeof(o->body), "{\"customer_id\":\"%s\",\"items\":%s}",
                 sc->customers[o->customer], items);
        unique(o->key, sizeof(o->key), "crash-key");
        o->order_id[0] = '\0';
        o->last_error[0] = '\0';
        o->n_attempts = 0;
        o->view = NULL;
    }
}

/* ---------------------------------------------------------------- clients */

/* POST one order until a 202, retrying with the same key; runs on a client thread, so no cmocka
 * calls. */
static void submit(scenario *sc, order_req *o)
{
    char header[160];
    const char *headers[] = { header, NULL };
    snprintf(header, sizeof(header), "Idempotency-Key: %s", o->key);
    int64_t deadline = sk_time_mono_ms() + SUBMIT_MS;
    while (sk_time_mono_ms() < deadline) {
        sk_test_http r;
        o->n_attempts++;
        if (sk_test_http_send(&g_sys, "POST", "/api/v1/orders", o->body, strlen(o->body), headers,
                              &r) != SK_OK) {
            snprintf(o->last_error, sizeof(o->last_error), "transport: %s", sk_error_message());
            pause_ms(50);
            continue;
        }
        int status = r.status;
        if (status == 202) {
            const char *id = json_string_value(json_object_get(r.json, "order_id"));
            const char *st = json_string_value(json_object_get(r.json, "status"));
            if (id != NULL && st != NULL && strcmp(st, "PENDING") == 0) {
                snprintf(o->order_id, sizeof(o->order_id), "%s", id);
                atomic_fetch_add(&sc->n_accepted, 1);
            } else {
                snprintf(o->last_error, sizeof(o->last_error),
                         "202 without order_id/PENDING: %.200s", r.body);
            }
            sk_test_http_fini(&r);
            return;
        }
        snprintf(o->last_error, sizeof(o->last_error), "HTTP %d: %.200s", status, r.body);
        sk_test_http_fini(&r);
        if (status != 429 && status < 500) {
            return; /* a client error is final: the test reports it */
        }
        pause_ms(50);
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    for (int i = c->index; i < N_ORDERS; i += N_CLIENTS) {
        submit(c->sc, &c->sc->orders[i]);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the crash */

/* Runs while the client threads do: reports through violation(), never fails the test directly. */
static void kill_and_await_restart(scenario *sc)
{
    pid_t pid = sk_test_system_service_pid(&g_sys, sc->victim);
    if (pid <= 0 || pid == g_sys.pid) {
        violation(sc, "no running process of %s under skald up (pid %d)", sc->victim,
                  (int)g_sys.pid);
        return;
    }
    if (kill(pid, SIGKILL) != 0) {
        violation(sc, "kill(%d, SIGKILL) of %s failed", (int)pid, sc->victim);
        return;
    }
    fprintf(stderr, "[victim %s] SIGKILL pid %d after %d accepted orders\n", sc->victim, (int)pid,
            atomic_load(&sc->n_accepted));
    pid_t new_pid = 0;
    if (sk_test_system_await_service(&g_sys, sc->victim, pid, RESTART_MS, &new_pid) != SK_OK) {
        violation(sc, "%s was not restarted: %s", sc->victim, sk_error_message());
        return;
    }
    if (sk_test_system_await_ready(&g_sys, RESTART_MS) != SK_OK) {
        violation(sc, "after restarting %s (pid %d): %s", sc->victim, (int)new_pid,
                  sk_error_message());
        return;
    }
    fprintf(stderr, "[victim %s] restarted as pid %d, gateway ready\n", sc->victim, (int)new_pid);
}

/* ---------------------------------------------------------------- checks */

static bool is_known_reason(const char *r)
{
    static const char *const known[] = { "OUT_OF_STOCK",        "INSUFFICIENT_CREDIT",
                                         "UNKNOWN_CUSTOMER",    "UNKNOWN_PRODUCT",
                                         "PAYMENT_UNAVAILABLE", "TIMEOUT" };
    for (size_t i = 0; r != NULL && i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(r, known[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool is_approved(const order_req *o)
{
    return o->view != NULL && strcmp(jstr_or(o->view, "status", ""), "APPROVED") == 0;
}

/* Every accepted order terminal, as it was submitted. */
static void check_orders_terminal(scenario *sc)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + TERMINAL_MS;
    for (int i = 0; i < N_ORDERS; i++) {
        order_req *o = &sc->orders[i];
        char last[256] = "no answer";
        snprintf(path, sizeof(path), "/api/v1/orders/%s", o->order_id);
        while (o->view == NULL) {
            sk_test_http r;
            http_soft("GET", path, &r);
            if (r.status == 200 && r.json != NULL &&
                strcmp(jstr_or(r.json, "status", "PENDING"), "PENDING") != 0) {
                o->view = json_incref(r.json);
            } else {
                snprintf(last, sizeof(last), "HTTP %d: %.200s", r.status,
                         r.body != NULL ? r.body : "");
            }
            sk_test_http_fini(&r);
            if (o->view == NULL) {
                if (sk_time_mono_ms() > deadline) {
                    break;
                }
                pause_ms(50);
            }
        }
        if (o->view == NULL) {
            violation(sc, "order %s (key %s) not terminal within %d s; last answer %s", o->order_id,
                      o->key, TERMINAL_MS / 1000, last);
            continue;
        }
        const char *status = jstr_or(o->view, "status", "");
        const char *reason = json_string_value(json_object_get(o->view, "reject_reason"));
        if (strcmp(status, "APPROVED") == 0) {
            if (!json_is_null(json_object_get(o->view, "reject_reason"))) {
                violation(sc, "order %s is APPROVED with reject_reason %s", o->order_id, reason);
            }
        } else if (strcmp(status, "REJECTED") == 0) {
            if (!is_known_reason(reason)) {
                violation(sc, "order %s is REJECTED with reason %s", o->order_id,
                          reason != NULL ? reason : "null");
            }
        } else {
            violation(sc, "order %s ended %s (expected APPROVED or REJECTED)", o->order_id, status);
        }
        if (strcmp(jstr_or(o->view, "customer_id", ""), sc->customers[o->customer]) != 0) {
            violation(sc, "order %s: customer_id %s, submitted for %s", o->order_id,
                      jstr_or(o->view, "customer_id", "?"), sc->customers[o->customer]);
        }
        if (jint_or(o->view, "total_cents", -1) != o->total) {
            violation(sc, "order %s: total_cents %lld, expected %lld at the seeded prices",
                      o->order_id, (long long)jint_or(o->view, "total_cents", -1),
                      (long long)o->total);
        }
    }
}

/* stock + restocked == available + reserved + sold, reserved == 0, sold == approved quantities. */
static void check_products(scenario *sc)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + SETTLE_MS;
    for (int j = 0; j < N_SKUS; j++) {
        int64_t want_sold = 0;
        for (int i = 0; i < N_ORDERS; i++) {
            want_sold += is_approved(&sc->orders[i]) ? sc->orders[i].qty[j] : 0;
        }
        int64_t available = -1, reserved = -1, sold = -1;
        int status = 0;
        snprintf(path, sizeof(path), "/api/v1/products/%s", sc->skus[j]);
        for (;;) {
            sk_test_http r;
            http_soft("GET", path, &r);
            status = r.status;
            if (r.status == 200) {
                available = jint_or(r.json, "available", -1);
                reserved = jint_or(r.json, "reserved", -1);
                sold = jint_or(r.json, "sold", -1);
            }
            sk_test_http_fini(&r);
            if ((available + reserved + sold == STOCK && reserved == 0 && sold == want_sold) ||
                sk_time_mono_ms() > deadline) {
                break;
            }
            pause_ms(50);
        }
        if (status != 200) {
            violation(sc, "product %s: GET answered HTTP %d", sc->skus[j], status);
        }
        if (available + reserved + sold != STOCK) {
            violation(sc,
                      "product %s: stock + restocked (%d) != available (%lld) + reserved (%lld) + "
                      "sold (%lld)",
                      sc->skus[j], STOCK, (long long)available, (long long)reserved,
                      (long long)sold);
        }
        if (reserved != 0) {
            violation(
                sc,
                "product %s: reserved == %lld with no order PENDING (a reservation was left open)",
                sc->skus[j], (long long)reserved);
        }
        if (sold != want_sold) {
            violation(sc, "product %s: sold == %lld but the APPROVED orders hold %lld units",
                      sc->skus[j], (long long)sold, (long long)want_sold);
        }
    }
}

/*
 * All orders of a customer through cursor pagination (limit 100). Returns
 * false on a non-200 answer (the caller polls again). *out gets the ids, each
 * with its listed status and total.
 */
static bool list_orders(const char *customer_id, json_t *out)
{
    char path[512], cursor[256] = "";
    json_object_clear(out);
    for (int page = 0; page < 100; page++) {
        sk_test_http r;
        if (cursor[0] == '\0') {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=100", customer_id);
        } else {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=100&cursor=%s",
                     customer_id, cursor);
        }
        http_soft("GET", path, &r);
        if (r.status != 200 || !json_is_array(json_object_get(r.json, "items"))) {
            sk_test_http_fini(&r);
            return false;
        }
        size_t i;
        const json_t *item;
        json_array_foreach (json_object_get(r.json, "items"), i, item) {
            const char *id = jstr_or(item, "order_id", "");
            if (json_object_get(out, id) != NULL) {
                /* Listed twice: count it, the caller reports the mismatch. */
                json_object_set_new(out, id,
                                    json_pack("{s:s, s:I}", "status", "DUPLICATE-IN-LIST",
                                              "total_cents", (json_int_t)0));
            } else {
                json_object_set_new(out, id,
                                    json_pack("{s:s, s:I}", "status", jstr_or(item, "status", "?"),
                                              "total_cents",
                                              (json_int_t)jint_or(item, "total_cents", -1)));
            }
        }
        const char *next = json_string_value(json_object_get(r.json, "next_cursor"));
        bool is_last = next == NULL;
        if (!is_last) {
            snprintf(cursor, sizeof(cursor), "%s", next);
        }
        sk_test_http_fini(&r);
        if (is_last) {
            return true;
        }
    }
    return false;
}

/* Does the listing hold exactly this customer's accepted orders, each as terminal as its own view?
 */
static bool listing_matches(const scenario *sc, int c, const json_t *listed)
{
    size_t n_mine = 0;
    for (int i = 0; i < N_ORDERS; i++) {
        const order_req *o = &sc->orders[i];
        if (o->customer != c) {
            continue;
        }
        n_mine++;
        const json_t *e = json_object_get(listed, o->order_id);
        if (e == NULL || o->view == NULL ||
            strcmp(jstr_or(e, "status", ""), jstr_or(o->view, "status", "")) != 0) {
            return false;
        }
    }
    return json_object_size(listed) == n_mine;
}

/* credit_limit - available_credit == sum of the APPROVED totals; the list holds exactly the
 * accepted orders. */
static void check_customers(scenario *sc)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + SETTLE_MS;
    json_t *listed = json_object();
    assert_non_null(listed);
    for (int c = 0; c < N_CUSTOMERS; c++) {
        const char *cid = sc->customers[c];
        bool is_listed = false;
        for (;;) {
            is_listed = list_orders(cid, listed) && listing_matches(sc, c, listed);
            if (is_listed || sk_time_mono_ms() > deadline) {
                break;
            }
            pause_ms(50);
        }
        if (!is_listed) {
            for (int i = 0; i < N_ORDERS; i++) {
                const order_req *o = &sc->orders[i];
                if (o->customer == c && json_object_get(listed, o->order_id) == NULL) {
                    violation(sc,
                              "customer %s: accepted order %s (key %s) missing from GET "
                              "/orders?customer_id",
                              cid, o->order_id, o->key);
                }
            }
            const char *id;
            json_t *e;
            json_object_foreach (listed, id, e) {
                bool is_mine = false;
                for (int i = 0; i < N_ORDERS; i++) {
                    if (sc->orders[i].customer == c && strcmp(sc->orders[i].order_id, id) == 0) {
                        is_mine = true;
                        if (sc->orders[i].view != NULL &&
                            strcmp(jstr_or(e, "status", ""),
                                   jstr_or(sc->orders[i].view, "status", "")) != 0) {
                            violation(sc, "customer %s: order %s listed as %s but GET says %s", cid,
                                      id, jstr_or(e, "status", "?"),
                                      jstr_or(sc->orders[i].view, "status", "?"));
                        }
                    }
                }
                if (!is_mine) {
                    violation(sc,
                              "customer %s: order %s (%s) was never acknowledged to a client: "
                              "an order created twice?",
                              cid, id, jstr_or(e, "status", "?"));
                }
            }
        }

        /* The credit: computed from the listed orders (and, as a cross-check, from their own
         * views). */
        int64_t approved_listed = 0, approved_views = 0;
        const char *id;
        json_t *e;
        json_object_foreach (listed, id, e) {
            if (strcmp(jstr_or(e, "status", ""), "APPROVED") == 0) {
                approved_listed += jint_or(e, "total_cents", 0);
            }
        }
        for (int i = 0; i < N_ORDERS; i++) {
            if (sc->orders[i].customer == c && is_approved(&sc->orders[i])) {
                approved_views += sc->orders[i].total;
            }
        }
        int64_t limit = -1, available = -1;
        int status = 0;
        snprintf(path, sizeof(path), "/api/v1/customers/%s", cid);
        for (;;) {
            sk_test_http r;
            http_soft("GET", path, &r);
            status = r.status;
            if (r.status == 200) {
                limit = jint_or(r.json, "credit_limit_cents", -1);
                available = jint_or(r.json, "available_credit_cents", -1);
            }
            sk_test_http_fini(&r);
            if (limit - available == approved_listed || sk_time_mono_ms() > deadline) {
                break;
            }
            pause_ms(50);
        }
        if (status != 200) {
            violation(sc, "customer %s: GET answered HTTP %d", cid, status);
        }
        if (limit != g_limits[c]) {
            violation(sc, "customer %s: credit_limit_cents %lld, registered with %lld", cid,
                      (long long)limit, (long long)g_limits[c]);
        }
        if (limit - available != approved_listed) {
            violation(sc,
                      "customer %s: credit_limit (%lld) - available_credit (%lld) = %lld != %lld, "
                      "the total of its "
                      "APPROVED orders",
                      cid, (long long)limit, (long long)available, (long long)(limit - available),
                      (long long)approved_listed);
        }
        if (approved_listed != approved_views) {
            violation(
                sc,
                "customer %s: APPROVED total %lld in the list but %lld from the orders' own views",
                cid, (long long)approved_listed, (long long)approved_views);
        }
    }
    json_decref(listed);
}

/* No idempotency key maps to two orders: each replay returns the order its key first created. */
static void check_idempotency_replays(scenario *sc)
{
    for (int i = 0; i < N_ORDERS; i++) {
        order_req *o = &sc->orders[i];
        char header[160];
        const char *headers[] = { header, NULL };
        sk_test_http r;
        snprintf(header, sizeof(header), "Idempotency-Key: %s", o->key);
        http("POST", "/api/v1/orders", o->body, headers, &r);
        const char *id = json_string_value(json_object_get(r.json, "order_id"));
        if (r.status != 202 || id == NULL) {
            violation(sc, "replay of key %s: HTTP %d: %.200s", o->key, r.status, r.body);
        } else if (strcmp(id, o->order_id) != 0) {
            violation(sc, "idempotency key %s maps to two orders: %s and %s", o->key, o->order_id,
                      id);
        }
        sk_test_http_fini(&r);
    }
}

/* ---------------------------------------------------------------- the scenario */

/* One scenario at a time; static so that a failing assertion leaks nothing (see release_scenario).
 */
static scenario g_scenario;

static void release_scenario(scenario *sc)
{
    for (int i = 0; i < N_ORDERS; i++) {
        json_decref(sc->orders[i].view);
        sc->orders[i].view = NULL;
    }
}

static void run_scenario(const char *victim)
{
    scenario *sc = &g_scenario;
    release_scenario(sc);
    memset(sc, 0, sizeof(*sc));
    sc->victim = victim;
    atomic_init(&sc->n_accepted, 0);
    g_failed = true; /* until the scenario passes */
    seed(sc);

    client clients[N_CLIENTS];
    pthread_t threads[N_CLIENTS];
    for (int t = 0; t < N_CLIENTS; t++) {
        clients[t] = (client){ .sc = sc, .index = t };
        assert_int_equal(pthread_create(&threads[t], NULL, client_main, &clients[t]), 0);
    }
    /* Kill while sagas are in flight: once the first few orders were accepted. */
    int64_t deadline = sk_time_mono_ms() + SUBMIT_MS;
    while (atomic_load(&sc->n_accepted) < KILL_AFTER && sk_time_mono_ms() < deadline) {
        pause_ms(1);
    }
    kill_and_await_restart(sc);
    for (int t = 0; t < N_CLIENTS; t++) {
        pthread_join(threads[t], NULL);
    }

    /* No acknowledged order may be lost, and every order must have been acknowledged eventually. */
    for (int i = 0; i < N_ORDERS; i++) {
        if (sc->orders[i].order_id[0] == '\0') {
            violation(sc, "order with key %s never got a 202 (%d attempts): %s", sc->orders[i].key,
                      sc->orders[i].n_attempts, sc->orders[i].last_error);
        }
    }
    if (sc->n_violations == 0) {
        check_orders_terminal(sc);
    }
    if (sc->n_violations == 0) {
        /* Views are final now, so the expected sums are known. */
        check_products(sc);
        check_customers(sc);
        check_idempotency_replays(sc);
    } else {
        fprintf(stderr,
                "[victim %s] stock, credit and idempotency checks skipped: orders not final\n",
                victim);
    }

    int n_approved = 0, n_credit = 0, n_timeout = 0, n_retried = 0;
    for (int i = 0; i < N_ORDERS; i++) {
        const order_req *o = &sc->orders[i];
        n_approved += is_approved(o) ? 1 : 0;
        n_credit += o->view != NULL &&
                    strcmp(jstr_or(o->view, "reject_reason", ""), "INSUFFICIENT_CREDIT") == 0;
        n_timeout +=
            o->view != NULL && strcmp(jstr_or(o->view, "reject_reason", ""), "TIMEOUT") == 0;
        n_retried += o->n_attempts > 1;
    }
    fprintf(stderr,
            "[victim %s] %d orders: %d APPROVED, %d INSUFFICIENT_CREDIT, %d TIMEOUT; %d needed "
            "retries; %d violations\n",
            victim, N_ORDERS, n_approved, n_credit, n_timeout, n_retried, sc->n_violations);
    int n_violations = sc->n_violations;
    release_scenario(sc);
    if (n_violations > 0) {
        fail_msg("victim %s: %d invariant(s) broken (see above; data dir %s)", victim, n_violations,
                 g_sys.data_dir);
    }
    /* The scenario must have exercised both outcomes, or it proved nothing about compensations. */
    assert_true(n_approved > 0);
    assert_true(n_credit > 0);
    g_failed = false;
}

static void test_kill_order(void **state)
{
    (void)state;
    run_scenario("order");
}

static void test_kill_inventory(void **state)
{
    (void)state;
    run_scenario("inventory");
}

static void test_kill_payment(void **state)
{
    (void)state;
    run_scenario("payment");
}

static void test_kill_orderview(void **state)
{
    (void)state;
    run_scenario("orderview");
}

/* ---------------------------------------------------------------- fixture */

static bool g_any_failed;

static int test_teardown(void **state)
{
    (void)state;
    release_scenario(&g_scenario);
    g_any_failed = g_any_failed || g_failed;
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-crash") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-crash: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-crash: skald up exited with %d (data kept in %s)\n", rc,
                g_sys.data_dir);
        return -1;
    }
    if (g_any_failed) {
        fprintf(stderr, "system-crash: a scenario failed; data kept in %s\n", g_sys.data_dir);
    } else {
        sk_test_system_cleanup(&g_sys);
    }
    sk_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill_order, test_teardown),
        cmocka_unit_test_teardown(test_kill_inventory, test_teardown),
        cmocka_unit_test_teardown(test_kill_payment, test_teardown),
        cmocka_unit_test_teardown(test_kill_orderview, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
