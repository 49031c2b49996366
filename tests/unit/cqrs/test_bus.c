/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of src/cqrs/bus.c: registration, middlewares, validation,
 * dispatch and asynchronous completion, status mapping, metrics, and the
 * exactly-once completion guard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cqrs/cqrs_int.h"
#include "sk_test.h"

/* ---------------------------------------------------------------- helpers */

typedef struct captured {
    atomic_int n_done;
    int http_status;
    char title[128];
    char detail[1100];
    char location[128];
    char body[512];
    bool has_body;
    pthread_t thread;
} captured;

static void capture_done(const sk_result *res, void *ctx)
{
    captured *c = ctx;

    c->http_status = res->http_status;
    snprintf(c->title, sizeof(c->title), "%s", res->title != NULL ? res->title : "");
    snprintf(c->detail, sizeof(c->detail), "%s", res->detail != NULL ? res->detail : "");
    snprintf(c->location, sizeof(c->location), "%s", res->location != NULL ? res->location : "");
    c->has_body = res->body != NULL;
    c->body[0] = '\0';
    if (res->body != NULL) {
        char *s = json_dumps(res->body, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(c->body, sizeof(c->body), "%s", s != NULL ? s : "");
        sk_free(s);
    }
    c->thread = pthread_self();
    atomic_fetch_add(&c->n_done, 1);
}

static void captured_init(captured *c)
{
    memset(c, 0, sizeof(*c));
    atomic_init(&c->n_done, 0);
}

/* Handler: answers 202 with {"id": <payload.id>, "type": <type>} and a Location. */
static void handler_accept(sk_call *call, void *ctx)
{
    const sk_request *req = sk_call_request(call);
    json_t *body =
        json_pack("{s:O?,s:s}", "id", json_object_get(req->payload, "id"), "type", req->type);

    (void)ctx;
    sk_call_complete(call, 202, body, "/orders/1");
}

/* Handler that parks the call in *ctx for someone else to complete. */
static void handler_park(sk_call *call, void *ctx)
{
    sk_call **slot = ctx;
    *slot = call;
}

static sk_status validate_needs_id(const json_t *payload, void *ctx)
{
    (void)ctx;
    if (!json_is_string(json_object_get(payload, "id"))) {
        return SK_FAIL(SK_EPROTO, "id: expected a string");
    }
    return SK_OK;
}

static sk_status validate_limit(const json_t *payload, void *ctx)
{
    (void)payload;
    (void)ctx;
    return SK_FAIL(SK_ELIMIT, "items: expected at most 100 items, got 101");
}

static sk_status validate_db(const json_t *payload, void *ctx)
{
    (void)payload;
    (void)ctx;
    return SK_FAIL(SK_EDB, "secret SQL detail");
}

static sk_cqrs_bus *new_bus(sk_cqrs_kind kind, sk_metrics *m)
{
    sk_cqrs_bus *bus = NULL;
    assert_int_equal(sk_cqrs_bus_create(&bus, kind, m), SK_OK);
    assert_non_null(bus);
    return bus;
}

static sk_status dispatch_json(sk_cqrs_bus *bus, const char *type, const char *payload, captured *c)
{
    json_t *p = payload != NULL ? json_loads(payload, 0, NULL) : NULL;
    sk_request req = { .type = type, .payload = p, .request_id = "req-1" };
    sk_status st = sk_cqrs_bus_dispatch(bus, &req, capture_done, c);

    json_decref(p);
    return st;
}

static int setup(void **state)
{
    (void)state;
    return sk_init("test-cqrs") == SK_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- create / register / use */

static void test_sk_cqrs_bus_create_null_and_bad_kind(void **state)
{
    sk_cqrs_bus *bus = (sk_cqrs_bus *)1;

    (void)state;
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_create(NULL, SK_CQRS_COMMAND, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_create(&bus, (sk_cqrs_kind)7, NULL), SK_EINVAL, "kind");
    assert_null(bus);
    sk_cqrs_bus_destroy(NULL);
}

static void test_sk_cqrs_bus_register_errors(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    char long_type[80];

    (void)state;
    memset(long_type, 'a', 65);
    long_type[65] = '\0';
    assert_int_equal(sk_cqrs_bus_register(bus, "CreateOrder", NULL, handler_accept, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "CreateOrder", NULL, handler_accept, NULL),
                       SK_EEXIST, "CreateOrder");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(NULL, "X", NULL, handler_accept, NULL), SK_EINVAL,
                       "bus");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, NULL, NULL, handler_accept, NULL), SK_EINVAL,
                       "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "", NULL, handler_accept, NULL), SK_EINVAL,
                       "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "1Abc", NULL, handler_accept, NULL), SK_EINVAL,
                       "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "Create-Order", NULL, handler_accept, NULL),
                       SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, long_type, NULL, handler_accept, NULL), SK_EINVAL,
                       "type");
    long_type[64] = '\0'; /* 64 bytes: the maximum */
    assert_int_equal(sk_cqrs_bus_register(bus, long_type, NULL, handler_accept, NULL), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(bus, "A", NULL, handler_accept, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "Other", NULL, NULL, NULL), SK_EINVAL, "handler");
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_type_is_valid(void **state)
{
    (void)state;
    assert_true(sk__cqrs_type_is_valid("a"));
    assert_true(sk__cqrs_type_is_valid("GetOrder2"));
    assert_false(sk__cqrs_type_is_valid(NULL));
    assert_false(sk__cqrs_type_is_valid(""));
    assert_false(sk__cqrs_type_is_valid("_x"));
    assert_false(sk__cqrs_type_is_valid("a b"));
}

static sk_status mw_noop_before(const sk_request *req, void *ctx)
{
    (void)req;
    (void)ctx;
    return SK_OK;
}

static void test_sk_cqrs_bus_use_errors(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_QUERY, NULL);
    sk_middleware empty = { .name = "empty" };
    sk_middleware ok = { .name = NULL, .before = mw_noop_before };
    captured c;

    (void)state;
    captured_init(&c);
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_use(NULL, &ok), SK_EINVAL, "bus");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_use(bus, NULL), SK_EINVAL, "mw");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_use(bus, &empty), SK_EINVAL, "before or an after");
    assert_int_equal(sk_cqrs_bus_use(bus, &ok), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(bus, "GetOrder", NULL, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "GetOrder", "{}", &c), SK_OK);
    /* Set-up is closed once dispatching started. */
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_use(bus, &ok), SK_ESTATE, "already dispatching");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_register(bus, "Late", NULL, handler_accept, NULL), SK_ESTATE,
                       "already dispatching");
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- dispatch */

static void test_sk_cqrs_bus_dispatch_success(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(
        sk_cqrs_bus_register(bus, "CreateOrder", validate_needs_id, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "CreateOrder", "{\"id\":\"o-1\"}", &c), SK_OK);
    assert_int_equal(atomic_load(&c.n_done), 1);
    assert_int_equal(c.http_status, 202);
    assert_string_equal(c.body, "{\"id\":\"o-1\",\"type\":\"CreateOrder\"}");
    assert_string_equal(c.location, "/orders/1");
    assert_string_equal(c.title, "");
    assert_int_equal(sk__cqrs_bus_pending(bus), 0);
    sk_cqrs_bus_destroy(bus);
}

static void handler_check_null_payload(sk_call *call, void *ctx)
{
    const sk_request *req = sk_call_request(call);

    (void)ctx;
    assert_true(json_is_object(req->payload));
    assert_int_equal(json_object_size(req->payload), 0);
    assert_null(req->idempotency_key);
    sk_call_complete(call, 200, NULL, NULL);
}

static void test_sk_cqrs_bus_dispatch_null_payload_is_empty_object(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_QUERY, NULL);
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(
        sk_cqrs_bus_register(bus, "ListOrders", NULL, handler_check_null_payload, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "ListOrders", NULL, &c), SK_OK);
    assert_int_equal(c.http_status, 200);
    assert_false(c.has_body);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_dispatch_bad_args(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    json_t *arr = json_array();
    sk_request req = { .type = "X" };
    sk_request no_type = { .type = NULL };
    sk_request empty_type = { .type = "" };
    sk_request bad_payload = { .type = "X", .payload = arr };
    captured c;

    (void)state;
    captured_init(&c);
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(NULL, &req, capture_done, &c), SK_EINVAL, "bus");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(bus, NULL, capture_done, &c), SK_EINVAL, "req");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(bus, &req, NULL, &c), SK_EINVAL, "done");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(bus, &no_type, capture_done, &c), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(bus, &empty_type, capture_done, &c), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_cqrs_bus_dispatch(bus, &bad_payload, capture_done, &c), SK_EINVAL,
                       "JSON object");
    assert_int_equal(atomic_load(&c.n_done), 0);
    json_decref(arr);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_dispatch_validator_failure_400(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(
        sk_cqrs_bus_register(bus, "CreateOrder", validate_needs_id, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "CreateOrder", "{\"id\":5}", &c), SK_OK);
    assert_int_equal(atomic_load(&c.n_done), 1);
    assert_int_equal(c.http_status, 400);
    assert_string_equal(c.title, "Bad Request");
    assert_string_equal(c.detail, "id: expected a string");
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_dispatch_validator_limit_422_and_other_500(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Big", validate_limit, handler_accept, NULL), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(bus, "Db", validate_db, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "Big", "{}", &c), SK_OK);
    assert_int_equal(c.http_status, 422);
    assert_string_equal(c.title, "Unprocessable Content");
    assert_non_null(strstr(c.detail, "at most 100 items"));
    assert_int_equal(dispatch_json(bus, "Db", "{}", &c), SK_OK);
    assert_int_equal(c.http_status, 500);
    assert_string_equal(c.detail, "internal error");
    assert_int_equal(atomic_load(&c.n_done), 2);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_dispatch_unknown_type_404(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_QUERY, NULL);
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "GetOrder", NULL, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "GetCustomer", "{}", &c), SK_OK);
    assert_int_equal(c.http_status, 404);
    assert_string_equal(c.title, "Not Found");
    assert_non_null(strstr(c.detail, "unknown query type \"GetCustomer\""));
    /* A type that is not even a valid name is unknown too, and its text is sanitised. */
    assert_int_equal(dispatch_json(bus, "bad \"type\"\n", "{}", &c), SK_OK);
    assert_int_equal(c.http_status, 404);
    assert_null(strchr(c.detail + strlen("unknown query type \""), '\n'));
    assert_int_equal(atomic_load(&c.n_done), 2);
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- asynchronous completion */

typedef struct async_job {
    sk_call *call;
} async_job;

static void *complete_later(void *arg)
{
    async_job *job = arg;
    const sk_request *req = sk_call_request(job->call);
    json_t *body = json_pack("{s:O}", "echo", json_object_get(req->payload, "n"));

    assert_string_equal(req->request_id, "req-1");
    sk_call_complete(job->call, 201, body, NULL);
    return NULL;
}

static bool done_once(void *ctx)
{
    return atomic_load(&((captured *)ctx)->n_done) == 1;
}

static void test_sk_call_complete_from_another_thread(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;
    async_job job;
    pthread_t t;
    json_t *p = json_pack("{s:i}", "n", 7);
    sk_request req = { .type = "Slow", .payload = p, .request_id = "req-1" };

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Slow", NULL, handler_park, &parked), SK_OK);
    assert_int_equal(sk_cqrs_bus_dispatch(bus, &req, capture_done, &c), SK_OK);
    /* The request was deep-copied: the caller's payload may change or go away. */
    assert_int_equal(json_object_set_new(p, "n", json_integer(99)), 0);
    json_decref(p);
    assert_non_null(parked);
    assert_int_equal(atomic_load(&c.n_done), 0);
    assert_int_equal(sk__cqrs_bus_pending(bus), 1);
    job.call = parked;
    assert_int_equal(pthread_create(&t, NULL, complete_later, &job), 0);
    assert_true(sk_test_wait_until(done_once, &c, 5000));
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(c.http_status, 201);
    assert_string_equal(c.body, "{\"echo\":7}");
    assert_true(pthread_equal(c.thread, t));
    assert_int_equal(sk__cqrs_bus_pending(bus), 0);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_call_user_and_null_safety(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;
    int marker = 0;

    (void)state;
    captured_init(&c);
    assert_null(sk_call_request(NULL));
    assert_null(sk_call_user(NULL));
    sk_call_set_user(NULL, &marker);
    sk_call_complete(NULL, 200, json_object(), NULL); /* logged, body freed */
    sk_call_fail(NULL, SK_EINVAL, "x");
    sk_call_fail_http(NULL, 400, NULL, "x");
    assert_int_equal(sk_cqrs_bus_register(bus, "Slow", NULL, handler_park, &parked), SK_OK);
    assert_int_equal(dispatch_json(bus, "Slow", "{}", &c), SK_OK);
    assert_null(sk_call_user(parked));
    sk_call_set_user(parked, &marker);
    assert_ptr_equal(sk_call_user(parked), &marker);
    sk_call_complete(parked, 204, NULL, NULL);
    assert_int_equal(c.http_status, 204);
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- double completion */

static void handler_twice(sk_call *call, void *ctx)
{
    (void)ctx;
    sk_call_complete(call, 200, json_pack("{s:i}", "first", 1), NULL);
    sk_call_fail(call, SK_EINTERNAL, "second completion");             /* ignored */
    sk_call_complete(call, 201, json_pack("{s:i}", "third", 1), NULL); /* ignored, body freed */
}

static void test_sk_call_complete_twice_is_ignored(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Twice", NULL, handler_twice, NULL), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(bus, "Park", NULL, handler_park, &parked), SK_OK);
    assert_int_equal(dispatch_json(bus, "Twice", "{}", &c), SK_OK);
    assert_int_equal(atomic_load(&c.n_done), 1);
    assert_int_equal(c.http_status, 200);
    assert_string_equal(c.body, "{\"first\":1}");
    /* Asynchronously, after the call is gone. */
    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail_http(parked, 409, "Conflict", "first");
    sk_call_fail_http(parked, 410, "Gone", "second");
    assert_int_equal(atomic_load(&c.n_done), 2);
    assert_int_equal(c.http_status, 409);
    assert_int_equal(sk__cqrs_bus_pending(bus), 0);
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- failures and status mapping */

static void test_sk_cqrs_http_status_mapping(void **state)
{
    (void)state;
    assert_int_equal(sk_cqrs_http_status(SK_OK), 200);
    assert_int_equal(sk_cqrs_http_status(SK_EINVAL), 400);
    assert_int_equal(sk_cqrs_http_status(SK_EPROTO), 400);
    assert_int_equal(sk_cqrs_http_status(SK_ENOTFOUND), 404);
    assert_int_equal(sk_cqrs_http_status(SK_EEXIST), 409);
    assert_int_equal(sk_cqrs_http_status(SK_ECONFLICT), 409);
    assert_int_equal(sk_cqrs_http_status(SK_ELIMIT), 422);
    assert_int_equal(sk_cqrs_http_status(SK_EUNAVAILABLE), 503);
    assert_int_equal(sk_cqrs_http_status(SK_ETIMEDOUT), 504);
    assert_int_equal(sk_cqrs_http_status(SK_EDENIED), 403);
    assert_int_equal(sk_cqrs_http_status(SK_EDB), 500);
    assert_int_equal(sk_cqrs_http_status(SK_ENOMEM), 500);
    assert_int_equal(sk_cqrs_http_status((sk_status)1000), 500);
    assert_string_equal(sk_http_reason(422), "Unprocessable Content");
    assert_string_equal(sk_http_reason(599), "Unknown");
}

static void test_sk_call_fail_maps_status_and_hides_500(void **state)
{
    static const struct {
        sk_status st;
        int http;
        const char *title;
    } cases[] = {
        { SK_EINVAL, 400, "Bad Request" },
        { SK_EPROTO, 400, "Bad Request" },
        { SK_ENOTFOUND, 404, "Not Found" },
        { SK_EEXIST, 409, "Conflict" },
        { SK_ECONFLICT, 409, "Conflict" },
        { SK_ELIMIT, 422, "Unprocessable Content" },
        { SK_EUNAVAILABLE, 503, "Service Unavailable" },
        { SK_ETIMEDOUT, 504, "Gateway Timeout" },
        { SK_EDENIED, 403, "Forbidden" },
        { SK_EDB, 500, "Internal Server Error" },
    };
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Park", NULL, handler_park, &parked), SK_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
        sk_call_fail(parked, cases[i].st, "order %s: detail %d", "o-1", 42);
        assert_int_equal(c.http_status, cases[i].http);
        assert_string_equal(c.title, cases[i].title);
        if (cases[i].http == 500) {
            assert_string_equal(c.detail, "internal error");
        } else {
            assert_string_equal(c.detail, "order o-1: detail 42");
        }
    }
    /* Failing with SK_OK is a handler bug: 500. */
    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail(parked, SK_OK, "oops");
    assert_int_equal(c.http_status, 500);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_call_fail_http_and_invalid_statuses(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Park", NULL, handler_park, &parked), SK_OK);
    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail_http(parked, 409, "Order Closed", "order %s is %s", "o-1", "CANCELLED");
    assert_int_equal(c.http_status, 409);
    assert_string_equal(c.title, "Order Closed");
    assert_string_equal(c.detail, "order o-1 is CANCELLED");

    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail_http(parked, 503, NULL, "psp down");
    assert_int_equal(c.http_status, 503);
    assert_string_equal(c.title, "Service Unavailable");
    assert_string_equal(c.detail, "psp down");

    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail_http(parked, 500, "Boom", "secret %d", 1);
    assert_int_equal(c.http_status, 500);
    assert_string_equal(c.detail, "internal error");

    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_fail_http(parked, 200, "Not an error", "x");
    assert_int_equal(c.http_status, 500);

    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_complete(parked, 99, json_object(), "/x");
    assert_int_equal(c.http_status, 500);
    assert_false(c.has_body);

    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_call_complete(parked, 600, NULL, NULL);
    assert_int_equal(c.http_status, 500);
    assert_int_equal(atomic_load(&c.n_done), 6);
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- middlewares */

typedef struct trace {
    char text[512];
    int64_t last_elapsed_ns;
    int last_status;
} trace;

static void trace_add(trace *t, const char *s)
{
    size_t n = strlen(t->text);
    snprintf(t->text + n, sizeof(t->text) - n, "%s%s", n > 0 ? " " : "", s);
}

typedef struct mw_ctx {
    trace *t;
    const char *name;
    bool is_refusing;
} mw_ctx;

static sk_status mw_before(const sk_request *req, void *ctx)
{
    mw_ctx *m = ctx;
    char s[64];

    assert_non_null(req->type);
    snprintf(s, sizeof(s), "%s.before", m->name);
    trace_add(m->t, s);
    if (m->is_refusing) {
        return SK_FAIL(SK_EDENIED, "no credentials for %s", req->type);
    }
    return SK_OK;
}

static void mw_after(const sk_request *req, const sk_result *res, int64_t elapsed_ns, void *ctx)
{
    mw_ctx *m = ctx;
    char s[64];

    assert_non_null(req->type);
    snprintf(s, sizeof(s), "%s.after", m->name);
    trace_add(m->t, s);
    m->t->last_elapsed_ns = elapsed_ns;
    m->t->last_status = res->http_status;
}

static void handler_traced(sk_call *call, void *ctx)
{
    trace_add(ctx, "handler");
    sk_call_complete(call, 202, NULL, NULL);
}

static void test_sk_cqrs_bus_use_order_and_refusal(void **state)
{
    trace t;
    mw_ctx a = { .t = &t, .name = "A" };
    mw_ctx b = { .t = &t, .name = "B" };
    sk_middleware mwa = { .name = "auth", .before = mw_before, .after = mw_after, .ctx = &a };
    sk_middleware mwb = { .name = "quota", .before = mw_before, .after = mw_after, .ctx = &b };
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    captured c;

    (void)state;
    memset(&t, 0, sizeof(t));
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_use(bus, &mwa), SK_OK);
    assert_int_equal(sk_cqrs_bus_use(bus, &mwb), SK_OK);
    assert_int_equal(sk_cqrs_bus_register(bus, "Do", NULL, handler_traced, &t), SK_OK);
    assert_int_equal(dispatch_json(bus, "Do", "{}", &c), SK_OK);
    assert_string_equal(t.text, "A.before B.before handler B.after A.after");
    assert_int_equal(t.last_status, 202);
    assert_true(t.last_elapsed_ns >= 0);

    /* B refuses: no handler, 403 with B's message, both afters still see the result. */
    t.text[0] = '\0';
    b.is_refusing = true;
    assert_int_equal(dispatch_json(bus, "Do", "{}", &c), SK_OK);
    assert_string_equal(t.text, "A.before B.before B.after A.after");
    assert_int_equal(c.http_status, 403);
    assert_string_equal(c.title, "Forbidden");
    assert_string_equal(c.detail, "refused by quota: no credentials for Do");
    assert_int_equal(t.last_status, 403);

    /* Middlewares also see unknown types. */
    t.text[0] = '\0';
    b.is_refusing = false;
    assert_int_equal(dispatch_json(bus, "Nope", "{}", &c), SK_OK);
    assert_string_equal(t.text, "A.before B.before B.after A.after");
    assert_int_equal(c.http_status, 404);
    assert_int_equal(atomic_load(&c.n_done), 3);
    sk_cqrs_bus_destroy(bus);
}

/* ---------------------------------------------------------------- metrics */

static void test_sk_cqrs_bus_metrics_rendered(void **state)
{
    sk_metrics *m = NULL;
    sk_cqrs_bus *bus;
    captured c;
    sk_buf out;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_metrics_create(&m), SK_OK);
    bus = new_bus(SK_CQRS_COMMAND, m);
    assert_int_equal(
        sk_cqrs_bus_register(bus, "CreateOrder", validate_needs_id, handler_accept, NULL), SK_OK);
    assert_int_equal(dispatch_json(bus, "CreateOrder", "{\"id\":\"a\"}", &c), SK_OK);
    assert_int_equal(dispatch_json(bus, "CreateOrder", "{\"id\":\"b\"}", &c), SK_OK);
    assert_int_equal(dispatch_json(bus, "CreateOrder", "{}", &c), SK_OK);
    assert_int_equal(dispatch_json(bus, "Missing", "{}", &c), SK_OK);
    sk_buf_init(&out, 1u << 20);
    assert_int_equal(sk_metrics_render(m, &out), SK_OK);
    assert_non_null(
        strstr(out.data,
               "sk_cqrs_requests_total{kind=\"command\",type=\"CreateOrder\",status=\"202\"} 2"));
    assert_non_null(
        strstr(out.data,
               "sk_cqrs_requests_total{kind=\"command\",type=\"CreateOrder\",status=\"400\"} 1"));
    assert_non_null(strstr(
        out.data, "sk_cqrs_requests_total{kind=\"command\",type=\"_unknown\",status=\"404\"} 1"));
    assert_non_null(strstr(out.data, "sk_cqrs_request_duration_seconds_count{kind=\"command\","
                                     "type=\"CreateOrder\"} 3"));
    sk_buf_fini(&out);
    sk_cqrs_bus_destroy(bus);
    sk_metrics_destroy(m);
}

/* ---------------------------------------------------------------- shutdown, allocation failures,
 * threads */

static void test_sk_cqrs_bus_destroy_with_pending_call(void **state)
{
    sk_cqrs_bus *bus = new_bus(SK_CQRS_COMMAND, NULL);
    sk_call *parked = NULL;
    captured c;

    (void)state;
    captured_init(&c);
    assert_int_equal(sk_cqrs_bus_register(bus, "Park", NULL, handler_park, &parked), SK_OK);
    assert_int_equal(dispatch_json(bus, "Park", "{}", &c), SK_OK);
    sk_cqrs_bus_destroy(bus); /* refused (logged): the call still points at the bus */
    sk_call_complete(parked, 200, NULL, NULL);
    assert_int_equal(atomic_load(&c.n_done), 1);
    assert_int_equal(sk__cqrs_bus_pending(bus), 0);
    sk_cqrs_bus_destroy(bus);
}

static void test_sk_cqrs_bus_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_metrics *m = NULL;
        sk_cqrs_bus *bus = NULL;
        captured c;
        sk_status st;
        json_t *p = json_pack("{s:s,s:[i,i]}", "id", "x", "list", 1, 2);
        sk_request req = { .type = "CreateOrder",
                           .payload = p,
                           .idempotency_key = "k",
                           .consistency_token = "t",
                           .traceparent = "tp",
                           .request_id = "r" };
        sk_middleware mw = { .name = "noop", .before = mw_noop_before };

        captured_init(&c);
        assert_non_null(p);
        assert_int_equal(sk_metrics_create(&m), SK_OK);
        sk_test_fail_alloc_at(n);
        st = sk_cqrs_bus_create(&bus, SK_CQRS_COMMAND, m);
        if (st == SK_OK) {
            st = sk_cqrs_bus_use(bus, &mw);
        }
        if (st == SK_OK) {
            st = sk_cqrs_bus_register(bus, "CreateOrder", validate_needs_id, handler_accept, NULL);
        }
        if (st == SK_OK) {
            st = sk_cqrs_bus_dispatch(bus, &req, capture_done, &c);
        }
        sk_test_fail_alloc_at(-1);
        json_decref(p);
        if (st == SK_OK) {
            /* The handler's own body may have failed to allocate: any answer is fine. */
            assert_int_equal(atomic_load(&c.n_done), 1);
            sk_cqrs_bus_destroy(bus);
            sk_metrics_destroy(m);
            if (c.http_status == 202 && c.has_body) {
                break;
            }
            continue;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_int_equal(atomic_load(&c.n_done), 0);
        if (bus != NULL) {
            assert_int_equal(sk__cqrs_bus_pending(bus), 0);
        }
        sk_cqrs_bus_destroy(bus);
        sk_metrics_destroy(m);
        assert_true(n < 10000);
    }
}

#define STRESS_THREADS 4
#define STRESS_CALLS   2000

typedef struct stress {
    sk_cqrs_bus *bus;
    atomic_int n_done;
} stress;

static void stress_done(const sk_result *res, void *ctx)
{
    assert_int_equal(res->http_status, 202);
    atomic_fetch_add(&((stress *)ctx)->n_done, 1);
}

static void *stress_main(void *arg)
{
    stress *s = arg;

    for (int i = 0; i < STRESS_CALLS; i++) {
        sk_request req = { .type = "CreateOrder" };
        assert_int_equal(sk_cqrs_bus_dispatch(s->bus, &req, stress_done, s), SK_OK);
    }
    return NULL;
}

static void test_sk_cqrs_bus_dispatch_concurrent(void **state)
{
    sk_metrics *m = NULL;
    stress s;
    pthread_t t[STRESS_THREADS];

    (void)state;
    assert_int_equal(sk_metrics_create(&m), SK_OK);
    s.bus = new_bus(SK_CQRS_COMMAND, m);
    atomic_init(&s.n_done, 0);
    assert_int_equal(sk_cqrs_bus_register(s.bus, "CreateOrder", NULL, handler_accept, NULL), SK_OK);
    for (int i = 0; i < STRESS_THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, stress_main, &s), 0);
    }
    for (int i = 0; i < STRESS_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_int_equal(atomic_load(&s.n_done), STRESS_THREADS * STRESS_CALLS);
    assert_int_equal(sk__cqrs_bus_pending(s.bus), 0);
    sk_cqrs_bus_destroy(s.bus);
    sk_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_cqrs_bus_create_null_and_bad_kind),
        cmocka_unit_test(test_sk_cqrs_bus_register_errors),
        cmocka_unit_test(test_sk_cqrs_bus_type_is_valid),
        cmocka_unit_test(test_sk_cqrs_bus_use_errors),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_success),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_null_payload_is_empty_object),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_bad_args),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_validator_failure_400),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_validator_limit_422_and_other_500),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_unknown_type_404),
        cmocka_unit_test(test_sk_call_complete_from_another_thread),
        cmocka_unit_test(test_sk_call_user_and_null_safety),
        cmocka_unit_test(test_sk_call_complete_twice_is_ignored),
        cmocka_unit_test(test_sk_cqrs_http_status_mapping),
        cmocka_unit_test(test_sk_call_fail_maps_status_and_hides_500),
        cmocka_unit_test(test_sk_call_fail_http_and_invalid_statuses),
        cmocka_unit_test(test_sk_cqrs_bus_use_order_and_refusal),
        cmocka_unit_test(test_sk_cqrs_bus_metrics_rendered),
        cmocka_unit_test(test_sk_cqrs_bus_destroy_with_pending_call),
        cmocka_unit_test(test_sk_cqrs_bus_every_alloc_failure),
        cmocka_unit_test(test_sk_cqrs_bus_dispatch_concurrent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
