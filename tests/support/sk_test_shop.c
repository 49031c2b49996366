/* SPDX-License-Identifier: MIT */
/*
 * Business-rule checker of the reference shop (see sk_test_shop.h). The API
 * checks poll with a deadline because read models are eventually consistent;
 * the database checks run once the system has stopped, on files opened
 * read-only, so they see the write models exactly as the services left them.
 */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test_shop.h"

/* ---------------------------------------------------------------- helpers */

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* One exchange; a transport error (the target may be down) is an answer with status 0. */
static void http_soft(const sk_test_shop *shop,
                      const char *method,
                      const char *path,
                      const char *body,
                      const char *const *headers,
                      sk_test_http *r)
{
    if (sk_test_http_send(shop->sys, method, path, body, body != NULL ? strlen(body) : 0, headers,
                          r) != SK_OK) {
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

void sk_test_shop_violation(sk_test_shop *shop, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines of concurrent callers do not interleave. */
    fprintf(stderr, "[%s] INVARIANT BROKEN: %s\n", shop->label, line);
    atomic_fetch_add(&shop->n_violations, 1);
}

static void unique(char *out, size_t len, const char *prefix)
{
    static atomic_int counter;
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    snprintf(out, len, "%s-%d-%.8s", prefix, atomic_fetch_add(&counter, 1) + 1, id + 28);
}

static int n_handed_out(const sk_test_shop *shop)
{
    int n = atomic_load(&shop->n_orders);
    return n < shop->cap_orders ? n : shop->cap_orders;
}

static bool is_approved(const sk_test_shop_order *o)
{
    return o->view != NULL && strcmp(jstr_or(o->view, "status", ""), "APPROVED") == 0;
}

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

/* Units of sku @p j in the APPROVED orders; total of customer @p c's APPROVED orders. */
static int64_t approved_units(const sk_test_shop *shop, int j)
{
    int64_t n = 0;
    for (int i = 0; i < n_handed_out(shop); i++) {
        n += is_approved(&shop->orders[i]) ? shop->orders[i].qty[j] : 0;
    }
    return n;
}

static int64_t approved_total(const sk_test_shop *shop, int c)
{
    int64_t n = 0;
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        n += o->customer == c && is_approved(o) ? o->total : 0;
    }
    return n;
}

/* ---------------------------------------------------------------- life cycle */

sk_status
sk_test_shop_init(sk_test_shop *shop, const sk_test_system *sys, const char *label, int cap_orders)
{
    if (shop == NULL || sys == NULL || label == NULL || cap_orders <= 0) {
        return SK_FAIL(SK_EINVAL,
                       "sk_test_shop_init: shop, sys, label and cap_orders > 0 are required");
    }
    memset(shop, 0, sizeof(*shop));
    shop->sys = sys;
    snprintf(shop->label, sizeof(shop->label), "%s", label);
    shop->orders = sk_calloc((size_t)cap_orders, sizeof(*shop->orders));
    if (shop->orders == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_test_shop_init: %d order slots", cap_orders);
    }
    shop->cap_orders = cap_orders;
    atomic_init(&shop->n_orders, 0);
    atomic_init(&shop->n_accepted, 0);
    atomic_init(&shop->last_accepted, -1);
    atomic_init(&shop->n_violations, 0);
    return SK_OK;
}

void sk_test_shop_fini(sk_test_shop *shop)
{
    if (shop == NULL || shop->orders == NULL) {
        return;
    }
    for (int i = 0; i < shop->cap_orders; i++) {
        json_decref(shop->orders[i].view);
    }
    sk_free(shop->orders);
    shop->orders = NULL;
    shop->cap_orders = 0;
}

/* ---------------------------------------------------------------- seeding */

sk_status sk_test_shop_seed(sk_test_shop *shop, const char *sku_prefix, int64_t timeout_ms)
{
    sk_test_http r;
    char body[512], path[160];
    if (shop == NULL || sku_prefix == NULL || shop->n_skus < 1 ||
        shop->n_skus > SK_TEST_SHOP_MAX_SKUS || shop->n_customers < 1 ||
        shop->n_customers > SK_TEST_SHOP_MAX_CUSTOMERS) {
        return SK_FAIL(SK_EINVAL, "sk_test_shop_seed: a shop with 1..%d skus and 1..%d customers",
                       SK_TEST_SHOP_MAX_SKUS, SK_TEST_SHOP_MAX_CUSTOMERS);
    }
    for (int j = 0; j < shop->n_skus; j++) {
        unique(shop->skus[j], sizeof(shop->skus[j]), sku_prefix);
        snprintf(body, sizeof(body),
                 "{\"sku\":\"%s\",\"name\":\"%s %d\",\"price_cents\":%lld,\"stock\":%lld}",
                 shop->skus[j], shop->label, j, (long long)shop->prices[j],
                 (long long)shop->stock[j]);
        http_soft(shop, "POST", "/api/v1/products", body, NULL, &r);
        int status = r.status;
        if (status != 201) {
            sk_status st = SK_FAIL(SK_EIO, "seeding product %s: HTTP %d: %.200s", shop->skus[j],
                                   status, r.body != NULL ? r.body : "");
            sk_test_http_fini(&r);
            return st;
        }
        sk_test_http_fini(&r);
    }
    for (int c = 0; c < shop->n_customers; c++) {
        snprintf(body, sizeof(body), "{\"name\":\"%s %d\",\"credit_limit_cents\":%lld}",
                 shop->label, c, (long long)shop->limits[c]);
        http_soft(shop, "POST", "/api/v1/customers", body, NULL, &r);
        const char *id = jstr_or(r.json, "customer_id", "");
        if (r.status != 201 || id[0] == '\0') {
            sk_status st = SK_FAIL(SK_EIO, "seeding customer %d: HTTP %d: %.200s", c, r.status,
                                   r.body != NULL ? r.body : "");
            sk_test_http_fini(&r);
            return st;
        }
        snprintf(shop->customers[c], sizeof(shop->customers[c]), "%s", id);
        sk_test_http_fini(&r);
    }
    /* Visible means the payment account is open too: available credit == limit. */
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    for (int c = 0; c < shop->n_customers; c++) {
        snprintf(path, sizeof(path), "/api/v1/customers/%s", shop->customers[c]);
        for (;;) {
            http_soft(shop, "GET", path, NULL, NULL, &r);
            bool is_ready =
                r.status == 200 && jint_or(r.json, "available_credit_cents", -1) == shop->limits[c];
            sk_test_http_fini(&r);
            if (is_ready) {
                break;
            }
            if (sk_time_mono_ms() > deadline) {
                return SK_FAIL(SK_ETIMEDOUT,
                               "customer %s not visible with available credit %lld within %lld ms",
                               shop->customers[c], (long long)shop->limits[c],
                               (long long)timeout_ms);
            }
            pause_ms(20);
        }
    }
    for (int j = 0; j < shop->n_skus; j++) {
        snprintf(path, sizeof(path), "/api/v1/products/%s", shop->skus[j]);
        for (;;) {
            http_soft(shop, "GET", path, NULL, NULL, &r);
            bool is_ready = r.status == 200 && jint_or(r.json, "available", -1) == shop->stock[j];
            sk_test_http_fini(&r);
            if (is_ready) {
                break;
            }
            if (sk_time_mono_ms() > deadline) {
                return SK_FAIL(SK_ETIMEDOUT,
                               "product %s not visible with stock %lld within %lld ms",
                               shop->skus[j], (long long)shop->stock[j], (long long)timeout_ms);
            }
            pause_ms(20);
        }
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- orders */

sk_test_shop_order *sk_test_shop_order_next(sk_test_shop *shop)
{
    int i = atomic_fetch_add(&shop->n_orders, 1);
    if (i >= shop->cap_orders) {
        return NULL;
    }
    sk_test_shop_order *o = &shop->orders[i];
    char items[512] = "[";
    size_t len = 1;
    memset(o, 0, sizeof(*o));
    o->customer = i % shop->n_customers;
    /* One or two units of (usually) two skus: (i + j) % 3 == 0 leaves sku j out. */
    for (int j = 0; j < shop->n_skus; j++) {
        o->qty[j] = (i + j) % 3 == 0 ? 0 : 1 + (i + j) % 2;
        if (shop->n_skus == 1) {
            o->qty[j] = 1 + i % 2;
        }
        if (o->qty[j] > 0) {
            len += (size_t)snprintf(items + len, sizeof(items) - len,
                                    "%s{\"sku\":\"%s\",\"quantity\":%d}", len > 1 ? "," : "",
                                    shop->skus[j], o->qty[j]);
            o->total += o->qty[j] * shop->prices[j];
        }
    }
    snprintf(items + len, sizeof(items) - len, "]");
    snprintf(o->body, sizeof(o->body), "{\"customer_id\":\"%s\",\"items\":%s}",
             shop->customers[o->customer], items);
    unique(o->key, sizeof(o->key), "shop-key");
    return o;
}

bool sk_test_shop_submit(sk_test_shop *shop, sk_test_shop_order *o, int64_t timeout_ms)
{
    char header[160];
    const char *headers[] = { header, NULL };
    snprintf(header, sizeof(header), "Idempotency-Key: %s", o->key);
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    while (sk_time_mono_ms() < deadline) {
        sk_test_http r;
        o->n_attempts++;
        if (sk_test_http_send(shop->sys, "POST", "/api/v1/orders", o->body, strlen(o->body),
                              headers, &r) != SK_OK) {
            snprintf(o->last_error, sizeof(o->last_error), "transport: %s", sk_error_message());
            pause_ms(50);
            continue;
        }
        int status = r.status;
        if (status == 201 || status == 202) {
            const char *id = json_string_value(json_object_get(r.json, "order_id"));
            const char *st = json_string_value(json_object_get(r.json, "status"));
            bool is_ok = id != NULL && st != NULL && strcmp(st, "PENDING") == 0;
            if (is_ok) {
                snprintf(o->order_id, sizeof(o->order_id), "%s", id);
                /* After order_id is written: a reader of last_accepted may read it. */
                atomic_store(&shop->last_accepted, (int)(o - shop->orders));
                atomic_fetch_add(&shop->n_accepted, 1);
            } else {
                snprintf(o->last_error, sizeof(o->last_error),
                         "%d without order_id/PENDING: %.200s", status, r.body);
            }
            sk_test_http_fini(&r);
            return is_ok;
        }
        snprintf(o->last_error, sizeof(o->last_error), "HTTP %d: %.200s", status, r.body);
        sk_test_http_fini(&r);
        if (status != 429 && status < 500) {
            return false; /* a client error is final: check_accepted reports it */
        }
        pause_ms(50);
    }
    return false;
}

/* ---------------------------------------------------------------- API checks */

void sk_test_shop_check_accepted(sk_test_shop *shop)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->order_id[0] == '\0') {
            sk_test_shop_violation(shop, "order with key %s never got a 201/202 (%d attempts): %s",
                                   o->key, o->n_attempts, o->last_error);
        }
    }
}

void sk_test_shop_check_terminal(sk_test_shop *shop, int64_t timeout_ms)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    for (int i = 0; i < n_handed_out(shop); i++) {
        sk_test_shop_order *o = &shop->orders[i];
        char last[256] = "no answer";
        if (o->order_id[0] == '\0') {
            continue; /* reported by check_accepted */
        }
        snprintf(path, sizeof(path), "/api/v1/orders/%s", o->order_id);
        while (o->view == NULL) {
            sk_test_http r;
            http_soft(shop, "GET", path, NULL, NULL, &r);
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
            sk_test_shop_violation(shop,
                                   "order %s (key %s) not terminal within %lld s; last answer %s",
                                   o->order_id, o->key, (long long)timeout_ms / 1000, last);
            continue;
        }
        const char *status = jstr_or(o->view, "status", "");
        const char *reason = json_string_value(json_object_get(o->view, "reject_reason"));
        if (strcmp(status, "APPROVED") == 0) {
            if (!json_is_null(json_object_get(o->view, "reject_reason"))) {
                sk_test_shop_violation(shop, "order %s is APPROVED with reject_reason %s",
                                       o->order_id, reason != NULL ? reason : "?");
            }
        } else if (strcmp(status, "REJECTED") == 0) {
            if (!is_known_reason(reason)) {
                sk_test_shop_violation(shop, "order %s is REJECTED with reason %s", o->order_id,
                                       reason != NULL ? reason : "null");
            }
        } else {
            sk_test_shop_violation(shop, "order %s ended %s (expected APPROVED or REJECTED)",
                                   o->order_id, status);
        }
        if (strcmp(jstr_or(o->view, "customer_id", ""), shop->customers[o->customer]) != 0) {
            sk_test_shop_violation(shop, "order %s: customer_id %s, submitted for %s", o->order_id,
                                   jstr_or(o->view, "customer_id", "?"),
                                   shop->customers[o->customer]);
        }
        if (jint_or(o->view, "total_cents", -1) != o->total) {
            sk_test_shop_violation(
                shop, "order %s: total_cents %lld, expected %lld at the seeded prices", o->order_id,
                (long long)jint_or(o->view, "total_cents", -1), (long long)o->total);
        }
    }
}

void sk_test_shop_check_products(sk_test_shop *shop, int64_t timeout_ms)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    for (int j = 0; j < shop->n_skus; j++) {
        int64_t want_sold = approved_units(shop, j);
        int64_t available = -1, reserved = -1, sold = -1, stock = shop->stock[j];
        int status = 0;
        snprintf(path, sizeof(path), "/api/v1/products/%s", shop->skus[j]);
        for (;;) {
            sk_test_http r;
            http_soft(shop, "GET", path, NULL, NULL, &r);
            status = r.status;
            if (r.status == 200) {
                available = jint_or(r.json, "available", -1);
                reserved = jint_or(r.json, "reserved", -1);
                sold = jint_or(r.json, "sold", -1);
            }
            sk_test_http_fini(&r);
            if ((available + reserved + sold == stock && reserved == 0 && sold == want_sold) ||
                sk_time_mono_ms() > deadline) {
                break;
            }
            pause_ms(50);
        }
        if (status != 200) {
            sk_test_shop_violation(shop, "product %s: GET answered HTTP %d", shop->skus[j], status);
        }
        if (available + reserved + sold != stock) {
            sk_test_shop_violation(shop,
                                   "product %s: stock + restocked (%lld) != available (%lld) + "
                                   "reserved (%lld) + sold (%lld)",
                                   shop->skus[j], (long long)stock, (long long)available,
                                   (long long)reserved, (long long)sold);
        }
        if (reserved != 0) {
            sk_test_shop_violation(
                shop,
                "product %s: reserved == %lld with no order PENDING (a reservation left open)",
                shop->skus[j], (long long)reserved);
        }
        if (sold != want_sold) {
            sk_test_shop_violation(
                shop, "product %s: sold == %lld but the APPROVED orders hold %lld units",
                shop->skus[j], (long long)sold, (long long)want_sold);
        }
    }
}

/*
 * All orders of a customer through cursor pagination (limit 100). Returns
 * false on a non-200 answer (the caller polls again). *out gets the ids, each
 * with its listed status and total.
 */
static bool list_orders(const sk_test_shop *shop, const char *customer_id, json_t *out)
{
    char path[512], cursor[256] = "";
    json_object_clear(out);
    for (int page = 0; page < 1000; page++) {
        sk_test_http r;
        if (cursor[0] == '\0') {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=100", customer_id);
        } else {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=100&cursor=%s",
                     customer_id, cursor);
        }
        http_soft(shop, "GET", path, NULL, NULL, &r);
        if (r.status != 200 || !json_is_array(json_object_get(r.json, "items"))) {
            sk_test_http_fini(&r);
            return false;
        }
        size_t i;
        const json_t *item;
        json_array_foreach (json_object_get(r.json, "items"), i, item) {
            const char *id = jstr_or(item, "order_id", "");
            if (json_object_get(out, id) != NULL) {
                /* Listed twice: the caller reports the mismatch. */
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

/* Does the listing hold exactly customer c's accepted orders, each as terminal as its own view? */
static bool listing_matches(const sk_test_shop *shop, int c, const json_t *listed)
{
    size_t n_mine = 0;
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->customer != c || o->order_id[0] == '\0') {
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

/* The accepted order of customer c with this id, or NULL. */
static const sk_test_shop_order *find_order(const sk_test_shop *shop, int c, const char *id)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if ((c < 0 || o->customer == c) && o->order_id[0] != '\0' && strcmp(o->order_id, id) == 0) {
            return o;
        }
    }
    return NULL;
}

static void report_listing(sk_test_shop *shop, int c, json_t *listed)
{
    const char *cid = shop->customers[c];
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->customer == c && o->order_id[0] != '\0' &&
            json_object_get(listed, o->order_id) == NULL) {
            sk_test_shop_violation(
                shop,
                "customer %s: accepted order %s (key %s) missing from GET /orders?customer_id", cid,
                o->order_id, o->key);
        }
    }
    const char *id;
    json_t *e;
    json_object_foreach (listed, id, e) {
        const sk_test_shop_order *o = find_order(shop, c, id);
        if (o == NULL) {
            sk_test_shop_violation(shop,
                                   "customer %s: order %s (%s) was never acknowledged to a client: "
                                   "an order created twice?",
                                   cid, id, jstr_or(e, "status", "?"));
        } else if (o->view != NULL &&
                   strcmp(jstr_or(e, "status", ""), jstr_or(o->view, "status", "")) != 0) {
            sk_test_shop_violation(shop, "customer %s: order %s listed as %s but GET says %s", cid,
                                   id, jstr_or(e, "status", "?"), jstr_or(o->view, "status", "?"));
        }
    }
}

void sk_test_shop_check_customers(sk_test_shop *shop, int64_t timeout_ms)
{
    char path[160];
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    json_t *listed = json_object();
    if (listed == NULL) {
        sk_test_shop_violation(shop, "out of memory checking the customers");
        return;
    }
    for (int c = 0; c < shop->n_customers; c++) {
        const char *cid = shop->customers[c];
        bool is_listed = false;
        for (;;) {
            is_listed = list_orders(shop, cid, listed) && listing_matches(shop, c, listed);
            if (is_listed || sk_time_mono_ms() > deadline) {
                break;
            }
            pause_ms(50);
        }
        if (!is_listed) {
            report_listing(shop, c, listed);
        }

        /* The credit: from the listed orders and, as a cross-check, from their own views. */
        int64_t approved_listed = 0, approved_views = approved_total(shop, c);
        const char *id;
        json_t *e;
        json_object_foreach (listed, id, e) {
            if (strcmp(jstr_or(e, "status", ""), "APPROVED") == 0) {
                approved_listed += jint_or(e, "total_cents", 0);
            }
        }
        int64_t limit = -1, available = -1;
        int status = 0;
        snprintf(path, sizeof(path), "/api/v1/customers/%s", cid);
        for (;;) {
            sk_test_http r;
            http_soft(shop, "GET", path, NULL, NULL, &r);
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
            sk_test_shop_violation(shop, "customer %s: GET answered HTTP %d", cid, status);
        }
        if (limit != shop->limits[c]) {
            sk_test_shop_violation(shop,
                                   "customer %s: credit_limit_cents %lld, registered with %lld",
                                   cid, (long long)limit, (long long)shop->limits[c]);
        }
        if (limit - available != approved_listed) {
            sk_test_shop_violation(shop,
                                   "customer %s: credit_limit (%lld) - available_credit (%lld) = "
                                   "%lld != %lld, the total of its APPROVED orders",
                                   cid, (long long)limit, (long long)available,
                                   (long long)(limit - available), (long long)approved_listed);
        }
        if (approved_listed != approved_views) {
            sk_test_shop_violation(
                shop,
                "customer %s: APPROVED total %lld in the list but %lld from the orders' views", cid,
                (long long)approved_listed, (long long)approved_views);
        }
    }
    json_decref(listed);
}

void sk_test_shop_check_idempotency(sk_test_shop *shop)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        sk_test_shop_order *o = &shop->orders[i];
        char header[160];
        const char *headers[] = { header, NULL };
        sk_test_http r;
        if (o->order_id[0] == '\0') {
            continue;
        }
        snprintf(header, sizeof(header), "Idempotency-Key: %s", o->key);
        http_soft(shop, "POST", "/api/v1/orders", o->body, headers, &r);
        const char *id = json_string_value(json_object_get(r.json, "order_id"));
        if ((r.status != 201 && r.status != 202) || id == NULL) {
            sk_test_shop_violation(shop, "replay of key %s: HTTP %d: %.200s", o->key, r.status,
                                   r.body != NULL ? r.body : "");
        } else if (strcmp(id, o->order_id) != 0) {
            sk_test_shop_violation(shop, "idempotency key %s maps to two orders: %s and %s", o->key,
                                   o->order_id, id);
        }
        sk_test_http_fini(&r);
    }
}

/* ---------------------------------------------------------------- database checks */

/* A read-only connection, or NULL (reported). */
static sqlite3 *db_open(sk_test_shop *shop, const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sk_test_shop_violation(shop, "opening %s read-only: %s", path,
                               db != NULL ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/*
 * Prepare @p sql and bind the NULL-terminated text parameters; NULL on failure
 * (reported, naming @p what).
 */
static sqlite3_stmt *db_query(sk_test_shop *shop,
                              sqlite3 *db,
                              const char *what,
                              const char *sql,
                              const char *p1,
                              const char *p2)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        sk_test_shop_violation(shop, "%s: preparing \"%s\": %s", what, sql, sqlite3_errmsg(db));
        return NULL;
    }
    if (p1 != NULL) {
        sqlite3_bind_text(stmt, 1, p1, -1, SQLITE_TRANSIENT);
    }
    if (p2 != NULL) {
        sqlite3_bind_text(stmt, 2, p2, -1, SQLITE_TRANSIENT);
    }
    return stmt;
}

static const char *col_text(sqlite3_stmt *stmt, int i)
{
    const unsigned char *s = sqlite3_column_text(stmt, i);
    return s != NULL ? (const char *)s : "";
}

/* order.db: each accepted order once, with its status; its saga finished; its key recorded once. */
static void check_order_db(sk_test_shop *shop, sqlite3 *db)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->order_id[0] == '\0' || o->view == NULL) {
            continue;
        }
        const char *want = jstr_or(o->view, "status", "");
        sqlite3_stmt *s = db_query(shop, db, "order.db", "SELECT status FROM orders WHERE id = ?",
                                   o->order_id, NULL);
        if (s != NULL) {
            if (sqlite3_step(s) != SQLITE_ROW) {
                sk_test_shop_violation(shop, "order.db: order %s missing", o->order_id);
            } else if (strcmp(col_text(s, 0), want) != 0) {
                sk_test_shop_violation(shop, "order.db: order %s is %s, its view says %s",
                                       o->order_id, col_text(s, 0), want);
            }
            sqlite3_finalize(s);
        }
        s = db_query(shop, db, "order.db", "SELECT state FROM sk_sagas WHERE id = ?", o->order_id,
                     NULL);
        if (s != NULL) {
            if (sqlite3_step(s) != SQLITE_ROW) {
                sk_test_shop_violation(shop, "order.db: no CreateOrderSaga for order %s",
                                       o->order_id);
            } else {
                int state = sqlite3_column_int(s, 0);
                /* 0 running, 1 compensating, 2 completed, 3 failed. */
                if (state == 0 || state == 1 || (strcmp(want, "APPROVED") == 0 && state != 2)) {
                    sk_test_shop_violation(shop, "order.db: saga of %s order %s in state %d", want,
                                           o->order_id, state);
                }
            }
            sqlite3_finalize(s);
        }
        s = db_query(shop, db, "order.db", "SELECT body FROM sk_idempotency WHERE key = ?", o->key,
                     NULL);
        if (s != NULL) {
            int n = 0;
            while (sqlite3_step(s) == SQLITE_ROW) {
                n++;
                json_t *body = json_loads(col_text(s, 0), 0, NULL);
                if (strcmp(jstr_or(body, "order_id", ""), o->order_id) != 0) {
                    sk_test_shop_violation(shop,
                                           "order.db: idempotency key %s records order %s, the "
                                           "client was given %s",
                                           o->key, jstr_or(body, "order_id", "?"), o->order_id);
                }
                json_decref(body);
            }
            if (n != 1) {
                sk_test_shop_violation(shop, "order.db: idempotency key %s has %d records", o->key,
                                       n);
            }
            sqlite3_finalize(s);
        }
    }
    /* No order of these customers that no client was told about (created twice). */
    for (int c = 0; c < shop->n_customers; c++) {
        sqlite3_stmt *s =
            db_query(shop, db, "order.db", "SELECT id FROM orders WHERE customer_id = ?",
                     shop->customers[c], NULL);
        while (s != NULL && sqlite3_step(s) == SQLITE_ROW) {
            if (find_order(shop, c, col_text(s, 0)) == NULL) {
                sk_test_shop_violation(shop,
                                       "order.db: order %s of customer %s was never acknowledged "
                                       "to a client: an order created twice?",
                                       col_text(s, 0), shop->customers[c]);
            }
        }
        sqlite3_finalize(s);
    }
}

/* inventory.db: one reservation per order, committed once when APPROVED; the stock invariants. */
static void check_inventory_db(sk_test_shop *shop, sqlite3 *db)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->order_id[0] == '\0' || o->view == NULL) {
            continue;
        }
        bool is_ok = is_approved(o);
        sqlite3_stmt *s =
            db_query(shop, db, "inventory.db",
                     "SELECT state FROM reservation_orders WHERE order_id = ?", o->order_id, NULL);
        if (s != NULL) {
            const char *state = sqlite3_step(s) == SQLITE_ROW ? col_text(s, 0) : "(none)";
            if (is_ok ? strcmp(state, "COMMITTED") != 0
                      : (strcmp(state, "RESERVED") == 0 || strcmp(state, "COMMITTED") == 0)) {
                sk_test_shop_violation(shop, "inventory.db: reservation of %s order %s is %s",
                                       is_ok ? "APPROVED" : "REJECTED", o->order_id, state);
            }
            sqlite3_finalize(s);
        }
        for (int j = 0; j < shop->n_skus; j++) {
            s = db_query(shop, db, "inventory.db",
                         "SELECT COUNT(*), COALESCE(SUM(quantity), 0), MIN(unit_price_cents),"
                         " MAX(unit_price_cents) FROM reservations WHERE order_id = ? AND sku = ?",
                         o->order_id, shop->skus[j]);
            if (s == NULL || sqlite3_step(s) != SQLITE_ROW) {
                sqlite3_finalize(s);
                continue;
            }
            int64_t n = sqlite3_column_int64(s, 0), units = sqlite3_column_int64(s, 1);
            bool is_priced = n == 0 || (sqlite3_column_int64(s, 2) == shop->prices[j] &&
                                        sqlite3_column_int64(s, 3) == shop->prices[j]);
            /* A rejected order may never have reserved (0 lines) or keep its released lines. */
            if (n > 1 || units > o->qty[j] || (is_ok && units != o->qty[j]) || !is_priced) {
                sk_test_shop_violation(shop,
                                       "inventory.db: order %s (%s) holds %lld line(s), %lld "
                                       "unit(s) of %s (ordered %d at %lld cents)",
                                       o->order_id, is_ok ? "APPROVED" : "REJECTED", (long long)n,
                                       (long long)units, shop->skus[j], o->qty[j],
                                       (long long)shop->prices[j]);
            }
            sqlite3_finalize(s);
        }
    }
    for (int j = 0; j < shop->n_skus; j++) {
        sqlite3_stmt *s =
            db_query(shop, db, "inventory.db",
                     "SELECT stock, restocked, available, reserved, sold FROM products"
                     " WHERE sku = ?",
                     shop->skus[j], NULL);
        if (s == NULL) {
            continue;
        }
        if (sqlite3_step(s) != SQLITE_ROW) {
            sk_test_shop_violation(shop, "inventory.db: product %s missing", shop->skus[j]);
        } else {
            int64_t stock = sqlite3_column_int64(s, 0), restocked = sqlite3_column_int64(s, 1);
            int64_t available = sqlite3_column_int64(s, 2), reserved = sqlite3_column_int64(s, 3);
            int64_t sold = sqlite3_column_int64(s, 4), want_sold = approved_units(shop, j);
            if (stock + restocked != available + reserved + sold || reserved != 0 ||
                sold != want_sold) {
                sk_test_shop_violation(shop,
                                       "inventory.db: product %s: stock %lld + restocked %lld vs "
                                       "available %lld + reserved %lld + sold %lld (APPROVED "
                                       "units %lld, reserved must be 0)",
                                       shop->skus[j], (long long)stock, (long long)restocked,
                                       (long long)available, (long long)reserved, (long long)sold,
                                       (long long)want_sold);
            }
        }
        sqlite3_finalize(s);
    }
}

/* payment.db: one charge of the total per APPROVED order, none kept otherwise; the credit
 * invariant. */
static void check_payment_db(sk_test_shop *shop, sqlite3 *db)
{
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->order_id[0] == '\0' || o->view == NULL) {
            continue;
        }
        bool is_ok = is_approved(o);
        sqlite3_stmt *s = db_query(shop, db, "payment.db",
                                   "SELECT state, amount_cents, customer_id FROM charges"
                                   " WHERE order_id = ?",
                                   o->order_id, NULL);
        if (s == NULL) {
            continue;
        }
        if (sqlite3_step(s) != SQLITE_ROW) {
            if (is_ok) {
                sk_test_shop_violation(shop, "payment.db: APPROVED order %s has no charge",
                                       o->order_id);
            }
        } else {
            const char *state = col_text(s, 0);
            int64_t amount = sqlite3_column_int64(s, 1);
            bool is_kept = strcmp(state, "CHARGED") == 0 || strcmp(state, "PENDING") == 0 ||
                           strcmp(state, "REFUND_PENDING") == 0;
            if (is_ok ? (strcmp(state, "CHARGED") != 0 || amount != o->total) : is_kept) {
                sk_test_shop_violation(shop,
                                       "payment.db: charge of %s order %s is %s for %lld cents "
                                       "(order total %lld)",
                                       is_ok ? "APPROVED" : "REJECTED", o->order_id, state,
                                       (long long)amount, (long long)o->total);
            }
            /* A refund that overtook its charge leaves a VOID tombstone naming no customer. */
            if (strcmp(state, "VOID") != 0 &&
                strcmp(col_text(s, 2), shop->customers[o->customer]) != 0) {
                sk_test_shop_violation(shop, "payment.db: charge of order %s names customer %s",
                                       o->order_id, col_text(s, 2));
            }
        }
        sqlite3_finalize(s);
    }
    for (int c = 0; c < shop->n_customers; c++) {
        const char *cid = shop->customers[c];
        int64_t want = approved_total(shop, c);
        sqlite3_stmt *s = db_query(shop, db, "payment.db",
                                   "SELECT credit_limit_cents, available_cents FROM accounts"
                                   " WHERE customer_id = ?",
                                   cid, NULL);
        if (s != NULL) {
            if (sqlite3_step(s) != SQLITE_ROW) {
                sk_test_shop_violation(shop, "payment.db: no account for customer %s", cid);
            } else {
                int64_t limit = sqlite3_column_int64(s, 0), available = sqlite3_column_int64(s, 1);
                if (limit != shop->limits[c] || limit - available != want) {
                    sk_test_shop_violation(shop,
                                           "payment.db: customer %s: limit %lld - available %lld "
                                           "!= %lld, the total of its APPROVED orders",
                                           cid, (long long)limit, (long long)available,
                                           (long long)want);
                }
            }
            sqlite3_finalize(s);
        }
        s = db_query(shop, db, "payment.db", "SELECT order_id FROM charges WHERE customer_id = ?",
                     cid, NULL);
        while (s != NULL && sqlite3_step(s) == SQLITE_ROW) {
            if (find_order(shop, c, col_text(s, 0)) == NULL) {
                sk_test_shop_violation(shop,
                                       "payment.db: customer %s charged for order %s that no "
                                       "client was told about",
                                       cid, col_text(s, 0));
            }
        }
        sqlite3_finalize(s);
    }
}

/* orderview.db: the read model agrees with the write models and the order views. */
static void check_orderview_db(
    sk_test_shop *shop, sqlite3 *db, const char *name, sqlite3 *inventory, sqlite3 *payment)
{
    for (int j = 0; j < shop->n_skus && inventory != NULL; j++) {
        sqlite3_stmt *v = db_query(shop, db, name,
                                   "SELECT available, reserved, sold FROM products_v WHERE sku = ?",
                                   shop->skus[j], NULL);
        sqlite3_stmt *w = db_query(shop, inventory, "inventory.db",
                                   "SELECT available, reserved, sold FROM products WHERE sku = ?",
                                   shop->skus[j], NULL);
        if (v != NULL && w != NULL) {
            bool has_v = sqlite3_step(v) == SQLITE_ROW, has_w = sqlite3_step(w) == SQLITE_ROW;
            if (!has_v || !has_w || sqlite3_column_int64(v, 0) != sqlite3_column_int64(w, 0) ||
                sqlite3_column_int64(v, 1) != sqlite3_column_int64(w, 1) ||
                sqlite3_column_int64(v, 2) != sqlite3_column_int64(w, 2)) {
                sk_test_shop_violation(
                    shop,
                    "%s: product %s available/reserved/sold %lld/%lld/%lld, inventory has "
                    "%lld/%lld/%lld (an event applied twice or lost in the projection?)",
                    name, shop->skus[j], has_v ? (long long)sqlite3_column_int64(v, 0) : -1LL,
                    has_v ? (long long)sqlite3_column_int64(v, 1) : -1LL,
                    has_v ? (long long)sqlite3_column_int64(v, 2) : -1LL,
                    has_w ? (long long)sqlite3_column_int64(w, 0) : -1LL,
                    has_w ? (long long)sqlite3_column_int64(w, 1) : -1LL,
                    has_w ? (long long)sqlite3_column_int64(w, 2) : -1LL);
            }
        }
        sqlite3_finalize(v);
        sqlite3_finalize(w);
    }
    for (int c = 0; c < shop->n_customers && payment != NULL; c++) {
        sqlite3_stmt *v =
            db_query(shop, db, name, "SELECT available_credit_cents FROM customers_v WHERE id = ?",
                     shop->customers[c], NULL);
        sqlite3_stmt *w = db_query(shop, payment, "payment.db",
                                   "SELECT available_cents FROM accounts WHERE customer_id = ?",
                                   shop->customers[c], NULL);
        if (v != NULL && w != NULL) {
            bool has_v = sqlite3_step(v) == SQLITE_ROW, has_w = sqlite3_step(w) == SQLITE_ROW;
            if (!has_v || !has_w || sqlite3_column_int64(v, 0) != sqlite3_column_int64(w, 0)) {
                sk_test_shop_violation(
                    shop, "%s: customer %s available credit %lld, payment has %lld", name,
                    shop->customers[c], has_v ? (long long)sqlite3_column_int64(v, 0) : -1LL,
                    has_w ? (long long)sqlite3_column_int64(w, 0) : -1LL);
            }
        }
        sqlite3_finalize(v);
        sqlite3_finalize(w);
    }
    for (int i = 0; i < n_handed_out(shop); i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        if (o->order_id[0] == '\0' || o->view == NULL) {
            continue;
        }
        sqlite3_stmt *s =
            db_query(shop, db, name, "SELECT status FROM orders_v WHERE id = ?", o->order_id, NULL);
        if (s == NULL) {
            continue;
        }
        const char *status = sqlite3_step(s) == SQLITE_ROW ? col_text(s, 0) : "(missing)";
        if (strcmp(status, jstr_or(o->view, "status", "")) != 0) {
            sk_test_shop_violation(shop, "%s: order %s is %s, GET said %s", name, o->order_id,
                                   status, jstr_or(o->view, "status", ""));
        }
        sqlite3_finalize(s);
    }
}

void sk_test_shop_await_sagas(sk_test_shop *shop, const char *data_dir, int64_t timeout_ms)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/db/order.db", data_dir);
    sqlite3 *db = db_open(shop, path);
    if (db == NULL) {
        return;
    }
    int64_t start = sk_time_mono_ms();
    long long n = -1;
    for (;;) {
        sqlite3_stmt *s =
            db_query(shop, db, "order.db", "SELECT count(*) FROM sk_sagas WHERE state IN (0, 1)",
                     NULL, NULL);
        if (s == NULL) {
            break;
        }
        n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
        sqlite3_finalize(s);
        if (n == 0 || sk_time_mono_ms() - start > timeout_ms) {
            break;
        }
        struct timespec pause = { 0, 100 * 1000000L };
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "[%s] sagas still running or compensating: %lld, after %lld ms\n", shop->label,
            n, (long long)(sk_time_mono_ms() - start));
    sqlite3_close(db);
}

void sk_test_shop_check_databases(sk_test_shop *shop, const char *data_dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/db/order.db", data_dir);
    sqlite3 *order = db_open(shop, path);
    snprintf(path, sizeof(path), "%s/db/inventory.db", data_dir);
    sqlite3 *inventory = db_open(shop, path);
    snprintf(path, sizeof(path), "%s/db/payment.db", data_dir);
    sqlite3 *payment = db_open(shop, path);
    if (order != NULL) {
        check_order_db(shop, order);
    }
    if (inventory != NULL) {
        check_inventory_db(shop, inventory);
    }
    if (payment != NULL) {
        check_payment_db(shop, payment);
    }
    /* The read model the orderview instances share. */
    snprintf(path, sizeof(path), "%s/db/orderview.db", data_dir);
    sqlite3 *view = db_open(shop, path); /* a violation when missing */
    if (view != NULL) {
        check_orderview_db(shop, view, "orderview.db", inventory, payment);
    }
    sqlite3_close(view);
    sqlite3_close(payment);
    sqlite3_close(inventory);
    sqlite3_close(order);
}

/* ---------------------------------------------------------------- summary */

void sk_test_shop_summary(const sk_test_shop *shop, sk_test_shop_counts *out)
{
    sk_test_shop_counts n = { 0 };
    n.n_orders = n_handed_out(shop);
    for (int i = 0; i < n.n_orders; i++) {
        const sk_test_shop_order *o = &shop->orders[i];
        const char *reason = o->view != NULL ? jstr_or(o->view, "reject_reason", "") : "";
        n.n_accepted += o->order_id[0] != '\0';
        n.n_approved += is_approved(o);
        n.n_rejected += o->view != NULL && strcmp(jstr_or(o->view, "status", ""), "REJECTED") == 0;
        n.n_insufficient_credit += strcmp(reason, "INSUFFICIENT_CREDIT") == 0;
        n.n_timeout += strcmp(reason, "TIMEOUT") == 0;
        n.n_payment_unavailable += strcmp(reason, "PAYMENT_UNAVAILABLE") == 0;
        n.n_retried += o->n_attempts > 1;
    }
    fprintf(stderr,
            "[%s] %d orders, %d accepted: %d APPROVED, %d REJECTED (%d INSUFFICIENT_CREDIT, %d "
            "TIMEOUT, %d PAYMENT_UNAVAILABLE); %d needed retries; %d violations\n",
            shop->label, n.n_orders, n.n_accepted, n.n_approved, n.n_rejected,
            n.n_insufficient_credit, n.n_timeout, n.n_payment_unavailable, n.n_retried,
            atomic_load(&shop->n_violations));
    if (out != NULL) {
        *out = n;
    }
}
