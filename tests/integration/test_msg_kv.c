/* SPDX-License-Identifier: MIT */
/* Integration: KV bucket put/get/delete and watch against a real nats-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"
#include "sk_test_nats.h"

typedef struct events {
    pthread_mutex_t mu;
    char log[4096]; /* "key=value;" or "key-;" for deletes */
    size_t len;
} events;

static void on_change(const char *key, sk_slice value, bool is_deleted, void *ctx)
{
    events *e = ctx;
    pthread_mutex_lock(&e->mu);
    int n = is_deleted ? snprintf(e->log + e->len, sizeof(e->log) - e->len, "%s-;", key)
                       : snprintf(e->log + e->len, sizeof(e->log) - e->len, "%s=%.*s;", key,
                                  (int)value.len, (const char *)value.ptr);
    if (n > 0 && e->len + (size_t)n < sizeof(e->log)) {
        e->len += (size_t)n;
    }
    pthread_mutex_unlock(&e->mu);
}

typedef struct want {
    events *e;
    const char *text;
} want;

static bool log_has(void *ctx)
{
    want *w = ctx;
    pthread_mutex_lock(&w->e->mu);
    bool ok = strstr(w->e->log, w->text) != NULL;
    pthread_mutex_unlock(&w->e->mu);
    return ok;
}

static void test_kv_put_get_delete_watch(void **state)
{
    sk_test_nats *nats = NULL;
    sk_bus *bus = NULL;
    sk_kv *kv = NULL, *again = NULL;
    sk_kv_watch *w = NULL;
    events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
    char *val = NULL;
    size_t len = 0;
    (void)state;

    assert_int_equal(sk_test_nats_start(&nats, NULL), SK_OK);
    sk_bus_config bc = { .servers = sk_test_nats_url(nats), .name = "test-kv" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_int_equal(sk_kv_open(&kv, bus, "instances", 10000), SK_OK);
    assert_int_equal(sk_kv_open(&again, bus, "instances", 10000), SK_OK); /* binds */
    sk_kv_close(again);

    assert_int_equal(sk_kv_put(kv, "order.1", sk_slice_from_str("{\"a\":1}")), SK_OK);
    assert_int_equal(sk_kv_get(kv, "order.1", &val, &len), SK_OK);
    assert_string_equal(val, "{\"a\":1}");
    assert_int_equal(len, 7);
    sk_free(val);
    SK_TEST_ASSERT_ERR(sk_kv_get(kv, "order.2", &val, &len), SK_ENOTFOUND, "no such key");
    assert_null(val);

    assert_int_equal(sk_kv_watch_start(&w, kv, "order.>", on_change, &ev), SK_OK);
    want w1 = { &ev, "order.1={\"a\":1};" };
    assert_true(sk_test_wait_until(log_has, &w1, 5000)); /* the current entry first */
    assert_int_equal(sk_kv_put(kv, "order.2", sk_slice_from_str("x")), SK_OK);
    assert_int_equal(sk_kv_put(kv, "payment.1", sk_slice_from_str("y")), SK_OK);
    assert_int_equal(sk_kv_delete(kv, "order.1"), SK_OK);
    want w2 = { &ev, "order.2=x;order.1-;" };
    assert_true(sk_test_wait_until(log_has, &w2, 5000));
    SK_TEST_ASSERT_ERR(sk_kv_get(kv, "order.1", &val, &len), SK_ENOTFOUND, "order.1");
    sk_kv_watch_stop(w);
    pthread_mutex_lock(&ev.mu);
    assert_null(strstr(ev.log, "payment"));
    pthread_mutex_unlock(&ev.mu);

    /* Invalid input never reaches the server. */
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, ".bad", sk_slice_from_str("x")), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "a b", sk_slice_from_str("x")), SK_EINVAL, "key");

    sk_kv_close(kv);
    sk_bus_close(bus);
    sk_test_nats_stop(nats);
}

static bool bus_up(void *ctx)
{
    return sk_bus_is_connected(ctx);
}

static void test_bus_connects_when_server_comes_later(void **state)
{
    sk_test_nats *nats = NULL;
    sk_bus *bus = NULL;
    (void)state;

    assert_int_equal(sk_test_nats_start(&nats, NULL), SK_OK);
    sk_test_nats_kill(nats);
    sk_bus_config bc = { .servers = sk_test_nats_url(nats), .name = "late" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    assert_false(sk_bus_is_connected(bus));
    assert_int_equal(sk_test_nats_restart(nats), SK_OK);
    assert_true(sk_test_wait_until(bus_up, bus, 5000));
    sk_bus_close(bus);
    sk_test_nats_stop(nats);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_put_get_delete_watch),
        cmocka_unit_test(test_bus_connects_when_server_comes_later),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
