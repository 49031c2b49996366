/* SPDX-License-Identifier: MIT */
/*
 * System test of the reference shop: runs `skald up` (nats-server, every
 * service, the gateway) and drives every row of the public HTTP API table
 * and every business rule of CONTRACT.md through the gateway, then stops it
 * with SIGTERM and expects exit 0. Waits poll with deadlines; nothing sleeps
 * for a fixed time to "let things settle".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_system.h"

static sk_test_system g_sys;

/* ---------------------------------------------------------------- helpers */

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Send and assert that an answer arrived. */
static void http(const char *method, const char *path, const char *body, const char *const *headers, sk_test_http *r)
{
    sk_status st = sk_test_http_send(&g_sys, method, path, body, body != NULL ? strlen(body) : 0, headers, r);
    if (st != SK_OK) {
        fail_msg("%s %s: %s", method, path, sk_error_message());
    }
}

static void expect_status(const sk_test_http *r, int want, const char *what)
{
    if (r->status != want) {
        fail_msg("%s: expected HTTP %d, got %d: %s", what, want, r->status, r->body);
    }
}

/* An error must be problem+json with type, title, status and detail. */
static void expect_problem(const sk_test_http *r, int want, const char *what)
{
    expect_status(r, want, what);
    if (strncmp(r->content_type, "application/problem+json", 24) != 0) {
        fail_msg("%s: expected application/problem+json, got \"%s\"", what, r->content_type);
    }
    assert_non_null(r->json);
    assert_non_null(json_object_get(r->json, "type"));
    assert_non_null(json_object_get(r->json, "title"));
    assert_non_null(json_object_get(r->json, "detail"));
    assert_int_equal(json_integer_value(json_object_get(r->json, "status")), want);
}

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) {
        fail_msg("member %s is not an integer", k);
    }
    return json_integer_value(v);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (s == NULL) {
        fail_msg("member %s is not a string", k);
    }
    return s;
}

/* GET until it answers 200 (read models are eventually consistent); fails after 10 s. */
static void get_eventually(const char *path, sk_test_http *r)
{
    int64_t deadline = sk_time_mono_ms() + 10000;
    for (;;) {
        http("GET", path, NULL, NULL, r);
        if (r->status == 200 || sk_time_mono_ms() > deadline) {
            break;
        }
        sk_test_http_fini(r);
        pause_ms(20);
    }
    expect_status(r, 200, path);
}

static void new_customer(const char *name, int64_t limit, char id_out[64])
{
    sk_test_http r;
    json_t *body = json_pack("{s:s, s:I}", "name", name, "credit_limit_cents", (json_int_t)limit);
    char *text = json_dumps(body, JSON_COMPACT);
    http("POST", "/api/v1/customers", text, NULL, &r);
    free(text);
    json_decref(body);
    expect_status(&r, 201, "POST /customers");
    snprintf(id_out, 64, "%s", jstr(r.json, "customer_id"));
    assert_string_equal(jstr(r.json, "name"), name);
    assert_int_equal(jint(r.json, "credit_limit_cents"), limit);
    sk_test_http_fini(&r);
}

static void new_product(const char *sku, int64_t price, int64_t stock)
{
    sk_test_http r;
    char body[512];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"name\":\"Widget %s\",\"price_cents\":%lld,\"stock\":%lld}", sku,
             sku, (long long)price, (long long)stock);
    http("POST", "/api/v1/products", body, NULL, &r);
    expect_status(&r, 201, "POST /products");
    assert_string_equal(jstr(r.json, "sku"), sku);
    assert_int_equal(jint(r.json, "price_cents"), price);
    assert_int_equal(jint(r.json, "available"), stock);
    sk_test_http_fini(&r);
}

/* Unique names per run so tests never see each other's data. */
static void unique(char *out, size_t len, const char *prefix)
{
    static _Atomic int counter;
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    snprintf(out, len, "%s-%d-%.8s", prefix, ++counter, id + 28);
}

static void place_order(const char *customer_id, const char *items_json, const char *idem, int want_status,
                        char order_id[64], char token[256])
{
    sk_test_http r;
    char body[4096], header[300];
    const char *headers[] = { header, NULL };
    snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"items\":%s}", customer_id, items_json);
    snprintf(header, sizeof(header), "Idempotency-Key: %s", idem != NULL ? idem : "");
    http("POST", "/api/v1/orders", body, idem != NULL ? headers : NULL, &r);
    expect_status(&r, want_status, "POST /orders");
    if (want_status == 202) {
        snprintf(order_id, 64, "%s", jstr(r.json, "order_id"));
        assert_string_equal(jstr(r.json, "status"), "PENDING");
        if (token != NULL) {
            snprintf(token, 256, "%s", jstr(r.json, "consistency_token"));
        }
        char want_location[128];
        snprintf(want_location, sizeof(want_location), "/api/v1/orders/%s", order_id);
        assert_string_equal(r.location, want_location);
    }
    sk_test_http_fini(&r);
}

/* Wait for a terminal status; returns the order view (caller frees). */
static json_t *await_terminal(const char *order_id)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order_id);
    int64_t deadline = sk_time_mono_ms() + 30000;
    for (;;) {
        sk_test_http r;
        http("GET", path, NULL, NULL, &r);
        if (r.status == 200) {
            const char *status = jstr(r.json, "status");
            if (strcmp(status, "PENDING") != 0) {
                json_t *view = json_incref(r.json);
                sk_test_http_fini(&r);
                return view;
            }
        }
        sk_test_http_fini(&r);
        if (sk_time_mono_ms() > deadline) {
            fail_msg("order %s not terminal within 30 s", order_id);
        }
        pause_ms(20);
    }
}

/* Wait until GET path has member @p key == @p want. */
static void await_field(const char *path, const char *key, int64_t want)
{
    int64_t deadline = sk_time_mono_ms() + 15000;
    int64_t got = -1;
    for (;;) {
        sk_test_http r;
        http("GET", path, NULL, NULL, &r);
        if (r.status == 200) {
            got = jint(r.json, key);
        }
        sk_test_http_fini(&r);
        if (got == want) {
            return;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("%s: %s stayed %lld, expected %lld", path, key, (long long)got, (long long)want);
        }
        pause_ms(20);
    }
}

static void expect_product(const char *sku, int64_t available, int64_t reserved, int64_t sold)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/products/%s", sku);
    await_field(path, "available", available);
    await_field(path, "reserved", reserved);
    await_field(path, "sold", sold);
}

static void expect_credit(const char *customer_id, int64_t available)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/customers/%s", customer_id);
    await_field(path, "available_credit_cents", available);
}

/* ---------------------------------------------------------------- fixture */

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-test") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-test: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-test: skald up exited with %d (data kept in %s)\n", rc, g_sys.data_dir);
        return -1;
    }
    sk_test_system_cleanup(&g_sys);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- operational endpoints */

static void test_gateway_health_ready_metrics(void **state)
{
    (void)state;
    sk_test_http r;
    http("GET", "/healthz", NULL, NULL, &r);
    expect_status(&r, 200, "healthz");
    sk_test_http_fini(&r);
    http("GET", "/readyz", NULL, NULL, &r);
    expect_status(&r, 200, "readyz");
    sk_test_http_fini(&r);
    http("GET", "/metrics", NULL, NULL, &r);
    expect_status(&r, 200, "metrics");
    assert_non_null(strstr(r.body, "# TYPE"));
    sk_test_http_fini(&r);
}

static void test_unknown_route_404_and_wrong_method_405(void **state)
{
    (void)state;
    sk_test_http r;
    http("GET", "/api/v1/nothing-here", NULL, NULL, &r);
    expect_problem(&r, 404, "unknown route");
    sk_test_http_fini(&r);
    http("DELETE", "/api/v1/orders", NULL, NULL, &r);
    expect_problem(&r, 405, "DELETE /orders");
    assert_non_null(strstr(r.allow, "POST"));
    sk_test_http_fini(&r);
    http("PUT", "/api/v1/customers", "{}", NULL, &r);
    expect_problem(&r, 405, "PUT /customers");
    sk_test_http_fini(&r);
}

/* ---------------------------------------------------------------- customers and products */

static void test_customer_register_and_get(void **state)
{
    (void)state;
    char id[64], path[128];
    sk_test_http r;
    new_customer("Ada", 100000, id);
    snprintf(path, sizeof(path), "/api/v1/customers/%s", id);
    get_eventually(path, &r);
    assert_string_equal(jstr(r.json, "customer_id"), id);
    assert_string_equal(jstr(r.json, "name"), "Ada");
    assert_int_equal(jint(r.json, "credit_limit_cents"), 100000);
    assert_int_equal(jint(r.json, "available_credit_cents"), 100000);
    sk_test_http_fini(&r);

    http("GET", "/api/v1/customers/0190a0a0-0000-7000-8000-000000000000", NULL, NULL, &r);
    expect_problem(&r, 404, "unknown customer");
    sk_test_http_fini(&r);
}

static void test_unicode_and_quote_names_verbatim(void **state)
{
    (void)state;
    const char *names[] = { "Zoë \"the\" O'Brien \\ 東京 🚀", "<script>alert('x')</script>", "  spaced  " };
    for (size_t i = 0; i < 3; i++) {
        char id[64], path[128];
        sk_test_http r;
        new_customer(names[i], 5, id);
        snprintf(path, sizeof(path), "/api/v1/customers/%s", id);
        get_eventually(path, &r);
        assert_string_equal(jstr(r.json, "name"), names[i]);
        sk_test_http_fini(&r);
    }
}

static void test_product_create_conflict_restock_get(void **state)
{
    (void)state;
    char sku[64], path[128];
    sk_test_http r;
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 1999, 10);

    char body[256];
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"name\":\"Again\",\"price_cents\":1,\"stock\":1}", sku);
    http("POST", "/api/v1/products", body, NULL, &r);
    expect_problem(&r, 409, "duplicate sku");
    sk_test_http_fini(&r);

    snprintf(path, sizeof(path), "/api/v1/products/%s", sku);
    get_eventually(path, &r);
    assert_string_equal(jstr(r.json, "sku"), sku);
    assert_int_equal(strncmp(jstr(r.json, "name"), "Widget ", 7), 0);
    assert_int_equal(jint(r.json, "price_cents"), 1999);
    assert_int_equal(jint(r.json, "available"), 10);
    assert_int_equal(jint(r.json, "reserved"), 0);
    assert_int_equal(jint(r.json, "sold"), 0);
    sk_test_http_fini(&r);

    snprintf(path, sizeof(path), "/api/v1/products/%s/restock", sku);
    http("POST", path, "{\"quantity\": 5}", NULL, &r);
    expect_status(&r, 202, "restock");
    sk_test_http_fini(&r);
    expect_product(sku, 15, 0, 0);

    http("POST", "/api/v1/products/NO-SUCH-SKU-EVER/restock", "{\"quantity\": 5}", NULL, &r);
    expect_problem(&r, 404, "restock unknown sku");
    sk_test_http_fini(&r);
    http("GET", "/api/v1/products/NO-SUCH-SKU-EVER", NULL, NULL, &r);
    expect_problem(&r, 404, "unknown product");
    sk_test_http_fini(&r);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input_is_refused_with_problem_json(void **state)
{
    (void)state;
    char long_sku[5100];
    memset(long_sku, 'S', 5000);
    long_sku[5000] = '\0';
    char *long_sku_body = sk_asprintf("{\"sku\":\"%s\",\"name\":\"x\",\"price_cents\":1,\"stock\":1}", long_sku);
    char *long_sku_order = sk_asprintf("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}", long_sku);
    struct {
        const char *path;
        const char *body;
    } cases[] = {
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": " },     /* malformed JSON */
        { "/api/v1/customers", "[1, 2, 3]" },                                    /* not an object */
        { "/api/v1/customers", "{\"name\": 42, \"credit_limit_cents\": 1}" },      /* wrong type */
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": \"1\"}" },
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": -1}" }, /* negative */
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": 1000000000001}" },
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": 99999999999999999999999}" },
        { "/api/v1/customers", "{\"name\": \"Ada\", \"credit_limit_cents\": 1.5}" },
        { "/api/v1/customers", "{\"name\": \"\", \"credit_limit_cents\": 1}" },
        { "/api/v1/customers", "{\"credit_limit_cents\": 1}" },
        { "/api/v1/products", "{\"sku\":\"\",\"name\":\"x\",\"price_cents\":1,\"stock\":1}" },
        { "/api/v1/products", long_sku_body },
        { "/api/v1/products", "{\"sku\":\"A\",\"name\":\"x\",\"price_cents\":-5,\"stock\":1}" },
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":[]}" },                 /* empty items */
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":0}]}" },
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":10001}]}" },
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":-1}]}" },
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":\"A\"}" },
        { "/api/v1/orders", long_sku_order },
        { "/api/v1/orders", "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":1},{\"sku\":\"A\",\"quantity\":1}]}" },
        { "/api/v1/orders", "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":{\"j\":{\"k\":{\"l\":{\"m\":{"
                            "\"n\":{\"o\":{\"p\":{\"q\":{\"r\":{\"s\":{\"t\":{\"u\":{\"v\":{\"w\":{\"x\":{\"y\":{\"z\":{"
                            "\"A\":{\"B\":{\"C\":{\"D\":{\"E\":{\"F\":{\"G\":1}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}" },
        { "/api/v1/products/X/restock", "{\"quantity\": 0}" },
        { "/api/v1/products/X/restock", "{\"quantity\": \"5\"}" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sk_test_http r;
        http("POST", cases[i].path, cases[i].body, NULL, &r);
        if (r.status != 400 && r.status != 422) {
            fail_msg("case %zu (%s %.80s): expected 400 or 422, got %d: %s", i, cases[i].path, cases[i].body,
                     r.status, r.body);
        }
        expect_problem(&r, r.status, cases[i].path);
        sk_test_http_fini(&r);
    }
    sk_free(long_sku_body);
    sk_free(long_sku_order);

    /* Over 1 MiB: 413. */
    size_t big_len = 1024 * 1024 + 10;
    char *big = sk_malloc(big_len + 1);
    memset(big, ' ', big_len);
    big[0] = '{';
    big[big_len - 1] = '}';
    big[big_len] = '\0';
    sk_test_http r;
    http("POST", "/api/v1/orders", big, NULL, &r);
    expect_status(&r, 413, "1 MiB body");
    sk_test_http_fini(&r);
    sk_free(big);

    /* Nothing above may have created anything: a sku that was refused does not exist. */
    http("GET", "/api/v1/products/A", NULL, NULL, &r);
    expect_status(&r, 404, "refused product was not created");
    sk_test_http_fini(&r);
}

/* ---------------------------------------------------------------- orders */

static void test_order_approved_with_consistency_token(void **state)
{
    (void)state;
    char customer[64], sku[64], order[64], token[256], items[256], path[512], header[300];
    sk_test_http r;
    new_customer("Grace", 100000, customer);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 1999, 10);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":2}]", sku);
    expect_credit(customer, 100000);
    place_order(customer, items, NULL, 202, order, token);

    /* Read-your-writes: with the token the view includes the order at once. */
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    snprintf(header, sizeof(header), "X-Consistency-Token: %s", token);
    const char *headers[] = { header, NULL };
    http("GET", path, NULL, headers, &r);
    expect_status(&r, 200, "GET with token");
    assert_string_equal(jstr(r.json, "order_id"), order);
    sk_test_http_fini(&r);
    snprintf(path, sizeof(path), "/api/v1/orders/%s?consistency_token=%s", order, token);
    http("GET", path, NULL, NULL, &r);
    expect_status(&r, 200, "GET with ?consistency_token");
    sk_test_http_fini(&r);

    json_t *view = await_terminal(order);
    assert_string_equal(jstr(view, "status"), "APPROVED");
    assert_true(json_is_null(json_object_get(view, "reject_reason")));
    assert_string_equal(jstr(view, "customer_id"), customer);
    assert_string_equal(jstr(view, "customer_name"), "Grace");
    assert_int_equal(jint(view, "total_cents"), 3998);
    const json_t *line = json_array_get(json_object_get(view, "items"), 0);
    assert_string_equal(jstr(line, "sku"), sku);
    assert_int_equal(jint(line, "quantity"), 2);
    assert_int_equal(jint(line, "unit_price_cents"), 1999);
    assert_int_equal(jint(line, "line_total_cents"), 3998);
    assert_true(jint(view, "version") >= 2);
    assert_non_null(json_string_value(json_object_get(view, "created_at")));
    assert_non_null(json_string_value(json_object_get(view, "updated_at")));
    json_decref(view);

    expect_product(sku, 8, 0, 2);
    expect_credit(customer, 100000 - 3998);

    /* A malformed token: 400. */
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    const char *bad[] = { "X-Consistency-Token: not*a*token", NULL };
    http("GET", path, NULL, bad, &r);
    expect_problem(&r, 400, "malformed token");
    sk_test_http_fini(&r);
    http("GET", "/api/v1/orders/0190a0a0-0000-7000-8000-000000000000", NULL, NULL, &r);
    expect_problem(&r, 404, "unknown order");
    sk_test_http_fini(&r);
}

static void expect_rejected(const char *order, const char *reason)
{
    json_t *view = await_terminal(order);
    assert_string_equal(jstr(view, "status"), "REJECTED");
    assert_string_equal(jstr(view, "reject_reason"), reason);
    json_decref(view);
}

static void test_order_rejections_undo_every_effect(void **state)
{
    (void)state;
    char customer[64], poor[64], sku[64], order[64], items[256];
    new_customer("Rich", 1000000, customer);
    new_customer("Poor", 100, poor);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 500, 5);
    expect_credit(customer, 1000000);
    expect_credit(poor, 100);

    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":6}]", sku);
    place_order(customer, items, NULL, 202, order, NULL);
    expect_rejected(order, "OUT_OF_STOCK");

    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    place_order(poor, items, NULL, 202, order, NULL);
    expect_rejected(order, "INSUFFICIENT_CREDIT");

    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1},{\"sku\":\"NO-SUCH-SKU\",\"quantity\":1}]", sku);
    place_order(customer, items, NULL, 202, order, NULL);
    expect_rejected(order, "UNKNOWN_PRODUCT");

    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    place_order("0190a0a0-0000-7000-8000-00000000dead", items, NULL, 202, order, NULL);
    expect_rejected(order, "UNKNOWN_CUSTOMER");

    /* Every partial effect undone: stock and credit as at the start. */
    expect_product(sku, 5, 0, 0);
    expect_credit(customer, 1000000);
    expect_credit(poor, 100);
}

static void test_cancel(void **state)
{
    (void)state;
    char customer[64], sku[64], order[64], items[256], path[160];
    sk_test_http r;
    new_customer("Canceller", 100000, customer);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 1000, 10);
    expect_credit(customer, 100000);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":3}]", sku);

    /* Cancel an approved order: stock back, credit refunded. */
    place_order(customer, items, NULL, 202, order, NULL);
    json_t *view = await_terminal(order);
    assert_string_equal(jstr(view, "status"), "APPROVED");
    json_decref(view);
    snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", order);
    http("POST", path, NULL, NULL, &r);
    expect_status(&r, 202, "cancel approved");
    sk_test_http_fini(&r);
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    int64_t deadline = sk_time_mono_ms() + 30000;
    for (;;) {
        http("GET", path, NULL, NULL, &r);
        bool done = r.status == 200 && strcmp(jstr(r.json, "status"), "CANCELLED") == 0;
        sk_test_http_fini(&r);
        if (done) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("order %s not CANCELLED", order);
        }
        pause_ms(20);
    }
    expect_product(sku, 10, 0, 0);
    expect_credit(customer, 100000);

    /* Cancelling again: 409. */
    snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", order);
    http("POST", path, NULL, NULL, &r);
    expect_problem(&r, 409, "cancel cancelled");
    sk_test_http_fini(&r);

    /* Cancel right after placing (PENDING or already approved): ends CANCELLED, everything undone. */
    place_order(customer, items, NULL, 202, order, NULL);
    snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", order);
    http("POST", path, NULL, NULL, &r);
    expect_status(&r, 202, "cancel pending");
    sk_test_http_fini(&r);
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    deadline = sk_time_mono_ms() + 30000;
    for (;;) {
        http("GET", path, NULL, NULL, &r);
        bool done = r.status == 200 && (strcmp(jstr(r.json, "status"), "CANCELLED") == 0 ||
                                        strcmp(jstr(r.json, "status"), "REJECTED") == 0);
        sk_test_http_fini(&r);
        if (done) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("order %s not cancelled", order);
        }
        pause_ms(20);
    }
    expect_product(sku, 10, 0, 0);
    expect_credit(customer, 100000);

    /* Cancelling a rejected order: 409; an unknown one: 404. */
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":11}]", sku);
    place_order(customer, items, NULL, 202, order, NULL);
    expect_rejected(order, "OUT_OF_STOCK");
    snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", order);
    http("POST", path, NULL, NULL, &r);
    expect_problem(&r, 409, "cancel rejected");
    sk_test_http_fini(&r);
    http("POST", "/api/v1/orders/0190a0a0-0000-7000-8000-000000000000/cancel", NULL, NULL, &r);
    expect_problem(&r, 404, "cancel unknown");
    sk_test_http_fini(&r);
}

static void test_idempotency_key(void **state)
{
    (void)state;
    char customer[64], sku[64], first[64], second[64], items[256], key[64];
    new_customer("Idem", 100000, customer);
    unique(sku, sizeof(sku), "SKU");
    unique(key, sizeof(key), "key");
    new_product(sku, 100, 10);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    place_order(customer, items, key, 202, first, NULL);
    place_order(customer, items, key, 202, second, NULL);
    assert_string_equal(first, second);
    /* Same key, another body: 422. */
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":2}]", sku);
    place_order(customer, items, key, 422, second, NULL);
    json_t *view = await_terminal(first);
    json_decref(view);
    expect_product(sku, 9, 0, 1); /* one order, not two */
}

static void test_list_orders_pagination_and_filters(void **state)
{
    (void)state;
    char customer[64], sku[64], items[256], ids[5][64], path[512];
    sk_test_http r;
    new_customer("Lister", 1000000, customer);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 10, 100);
    expect_credit(customer, 1000000);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    for (int i = 0; i < 5; i++) {
        place_order(customer, items, NULL, 202, ids[i], NULL);
    }
    for (int i = 0; i < 5; i++) {
        json_decref(await_terminal(ids[i]));
    }
    /* Newest first, two per page. */
    char cursor[256] = "";
    int seen = 0;
    for (int page = 0; page < 4; page++) {
        if (page == 0) {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=2", customer);
        } else {
            snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&limit=2&cursor=%s", customer, cursor);
        }
        http("GET", path, NULL, NULL, &r);
        expect_status(&r, 200, "list");
        const json_t *list = json_object_get(r.json, "items");
        for (size_t i = 0; i < json_array_size(list); i++) {
            assert_string_equal(jstr(json_array_get(list, i), "order_id"), ids[4 - seen]);
            seen++;
        }
        const json_t *next = json_object_get(r.json, "next_cursor");
        bool is_last = json_is_null(next);
        if (!is_last) {
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        }
        sk_test_http_fini(&r);
        if (is_last) {
            break;
        }
    }
    assert_int_equal(seen, 5);
    snprintf(path, sizeof(path), "/api/v1/orders?customer_id=%s&status=REJECTED", customer);
    http("GET", path, NULL, NULL, &r);
    expect_status(&r, 200, "list by status");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    sk_test_http_fini(&r);
    http("GET", "/api/v1/orders", NULL, NULL, &r);
    expect_status(&r, 200, "list default");
    assert_true(json_array_size(json_object_get(r.json, "items")) <= 20);
    sk_test_http_fini(&r);
    const char *bad[] = { "/api/v1/orders?limit=0", "/api/v1/orders?limit=101", "/api/v1/orders?limit=abc",
                          "/api/v1/orders?status=LOST", "/api/v1/orders?cursor=%21%21" };
    for (size_t i = 0; i < 5; i++) {
        http("GET", bad[i], NULL, NULL, &r);
        expect_problem(&r, 400, bad[i]);
        sk_test_http_fini(&r);
    }
}

/* ---------------------------------------------------------------- contention */

#define N_COMPETING 40

typedef struct competitor {
    const char *customer;
    const char *items;
    char order[64];
    int status;
} competitor;

static void *compete(void *arg)
{
    competitor *c = arg;
    sk_test_http r;
    char body[512];
    snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"items\":%s}", c->customer, c->items);
    if (sk_test_http_send(&g_sys, "POST", "/api/v1/orders", body, strlen(body), NULL, &r) == SK_OK) {
        c->status = r.status;
        if (r.status == 202) {
            snprintf(c->order, sizeof(c->order), "%s", json_string_value(json_object_get(r.json, "order_id")));
        }
        sk_test_http_fini(&r);
    }
    return NULL;
}

static void test_forty_orders_compete_for_ten_units(void **state)
{
    (void)state;
    char customer[64], sku[64], items[256];
    competitor cs[N_COMPETING];
    pthread_t threads[N_COMPETING];
    new_customer("Crowd", 100000000, customer);
    unique(sku, sizeof(sku), "HOT");
    new_product(sku, 250, 10);
    expect_credit(customer, 100000000);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    for (int i = 0; i < N_COMPETING; i++) {
        cs[i] = (competitor){ .customer = customer, .items = items };
        assert_int_equal(pthread_create(&threads[i], NULL, compete, &cs[i]), 0);
    }
    for (int i = 0; i < N_COMPETING; i++) {
        pthread_join(threads[i], NULL);
    }
    int approved = 0, out_of_stock = 0;
    for (int i = 0; i < N_COMPETING; i++) {
        if (cs[i].status != 202) {
            fail_msg("competitor %d: HTTP %d", i, cs[i].status);
        }
        json_t *view = await_terminal(cs[i].order);
        if (strcmp(jstr(view, "status"), "APPROVED") == 0) {
            approved++;
        } else if (strcmp(jstr(view, "status"), "REJECTED") == 0 &&
                   strcmp(jstr(view, "reject_reason"), "OUT_OF_STOCK") == 0) {
            out_of_stock++;
        }
        json_decref(view);
    }
    assert_int_equal(approved, 10);
    assert_int_equal(out_of_stock, N_COMPETING - 10);
    expect_product(sku, 0, 0, 10);
    expect_credit(customer, 100000000 - 10 * 250);
}

/* Hostile edges found in review: every one answered clearly, nothing stuck. */
static void test_long_headers_methods_and_ids(void **state)
{
    (void)state;
    char customer[64], sku[64], order[64], items[256], method[601], key_header[700], token_header[700];
    sk_test_http r;
    memset(method, 'X', 600);
    method[600] = '\0';
    http(method, "/api/v1/orders", NULL, NULL, &r);
    expect_problem(&r, 405, "600-character method");
    sk_test_http_fini(&r);

    new_customer("Edge", 1000, customer);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 1000000000000LL, 1000);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":200}]", sku);

    /* A 600-byte Idempotency-Key is refused, not silently dropped. */
    char body[512];
    snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"items\":%s}", customer, items);
    snprintf(key_header, sizeof(key_header), "Idempotency-Key: %0600d", 7);
    const char *idem[] = { key_header, NULL };
    http("POST", "/api/v1/orders", body, idem, &r);
    expect_problem(&r, 400, "600-byte Idempotency-Key");
    sk_test_http_fini(&r);

    /* A total of 2 * 10^14 cents: rejected for credit, not by a timeout. */
    expect_credit(customer, 1000);
    place_order(customer, items, NULL, 202, order, NULL);
    expect_rejected(order, "INSUFFICIENT_CREDIT");

    /* A 600-byte garbage consistency token: 400. */
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    snprintf(token_header, sizeof(token_header), "X-Consistency-Token: %0600d", 9);
    const char *token[] = { token_header, NULL };
    http("GET", path, NULL, token, &r);
    expect_problem(&r, 400, "600-byte token");
    sk_test_http_fini(&r);

    /* A customer id of 100 two-byte characters: a normal rejection, not a stuck order. */
    char wide[256];
    for (int i = 0; i < 100; i++) {
        memcpy(wide + 2 * i, "\xc3\xa9", 2);
    }
    wide[200] = '\0';
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":1}]", sku);
    place_order(wide, items, NULL, 202, order, NULL);
    expect_rejected(order, "UNKNOWN_CUSTOMER");
    expect_product(sku, 1000, 0, 0);
}

/* `skald status` lists one ready instance per service (each confirmed by GET /readyz over mTLS). */
static void test_status_lists_every_instance_ready(void **state)
{
    (void)state;
    char cmd[600], line[512];
    const char *services[] = { "customer", "inventory", "payment", "order", "orderview", "gateway", "psp" };
    bool seen[7] = { false };
    snprintf(cmd, sizeof(cmd), "%s/skald status --data %s", SK_BIN_DIR, g_sys.data_dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p) != NULL) {
        for (size_t i = 0; i < 7; i++) {
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "%s-1 ", services[i]);
            if (strncmp(line, prefix, strlen(prefix)) == 0) {
                if (strstr(line, " ready ") == NULL) {
                    fail_msg("skald status: %s", line);
                }
                seen[i] = true;
            }
        }
    }
    assert_int_equal(pclose(p), 0);
    for (size_t i = 0; i < 7; i++) {
        if (!seen[i]) {
            fail_msg("skald status did not list %s-1", services[i]);
        }
    }
}

/* ---------------------------------------------------------------- replay */

typedef struct replay_run {
    char *out;
    int exit_code;
    sk_status st;
    atomic_bool is_done;
} replay_run;

static void *run_replay(void *arg)
{
    replay_run *rr = arg;
    rr->st = sk_test_system_cli(&g_sys, "replay orderview --timeout 60", &rr->out, &rr->exit_code);
    atomic_store(&rr->is_done, true);
    return NULL;
}

/* `skald replay orderview` rebuilds the read model both instances share (one projects, the other
 * follows it); the API keeps answering meanwhile. */
static void test_replay_orderview_via_cli(void **state)
{
    (void)state;
    char customer[64], sku[64], items[256], order[64], path[256];
    sk_test_http r;
    new_customer("Replayer", 100000, customer);
    unique(sku, sizeof(sku), "SKU");
    new_product(sku, 250, 10);
    snprintf(items, sizeof(items), "[{\"sku\":\"%s\",\"quantity\":3}]", sku);
    place_order(customer, items, NULL, 202, order, NULL);
    json_t *before = await_terminal(order);
    assert_string_equal(jstr(before, "status"), "APPROVED");

    replay_run rr = { .out = NULL, .exit_code = -1 };
    atomic_init(&rr.is_done, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_replay, &rr), 0);
    int n_queries = 0;
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    while (!atomic_load(&rr.is_done)) {
        http("GET", path, NULL, NULL, &r);
        expect_status(&r, 200, "order during the replay");
        assert_string_equal(jstr(r.json, "status"), "APPROVED");
        assert_int_equal(json_integer_value(json_object_get(r.json, "total_cents")), 750);
        sk_test_http_fini(&r);
        n_queries++;
    }
    pthread_join(t, NULL);
    assert_int_equal(rr.st, SK_OK);
    if (rr.exit_code != 0) {
        print_error("skald replay exited %d:\n%s\n", rr.exit_code, rr.out != NULL ? rr.out : "");
    }
    assert_int_equal(rr.exit_code, 0);
    assert_non_null(strstr(rr.out, "orderview-1 now reads version"));
    assert_non_null(strstr(rr.out, "orderview-2 now reads version"));
    print_message("replay: %d queries answered during it\n", n_queries);
    sk_free(rr.out);

    /* The rebuilt views equal what the live ones showed. */
    json_t *after = await_terminal(order);
    json_object_del(before, "updated_at");
    json_object_del(after, "updated_at");
    assert_true(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    expect_product(sku, 7, 0, 3);
    expect_credit(customer, 100000 - 750);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_health_ready_metrics),
        cmocka_unit_test(test_unknown_route_404_and_wrong_method_405),
        cmocka_unit_test(test_status_lists_every_instance_ready),
        cmocka_unit_test(test_customer_register_and_get),
        cmocka_unit_test(test_unicode_and_quote_names_verbatim),
        cmocka_unit_test(test_product_create_conflict_restock_get),
        cmocka_unit_test(test_bad_input_is_refused_with_problem_json),
        cmocka_unit_test(test_order_approved_with_consistency_token),
        cmocka_unit_test(test_order_rejections_undo_every_effect),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_idempotency_key),
        cmocka_unit_test(test_long_headers_methods_and_ids),
        cmocka_unit_test(test_list_orders_pagination_and_filters),
        cmocka_unit_test(test_forty_orders_compete_for_ten_units),
        cmocka_unit_test(test_replay_orderview_via_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
