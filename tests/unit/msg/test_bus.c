/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/bus.c: argument checks, subject rules, nats error mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

static void test_subject_check(void **state)
{
    char big[300];
    (void)state;

    assert_int_equal(sk__subject_check("order.events.OrderCreated", false, "s"), SK_OK);
    assert_int_equal(sk__subject_check("a", false, "s"), SK_OK);
    assert_int_equal(sk__subject_check("order.*.x", true, "s"), SK_OK);
    assert_int_equal(sk__subject_check("order.>", true, "s"), SK_OK);
    assert_int_equal(sk__subject_check(">", true, "s"), SK_OK);
    SK_TEST_ASSERT_ERR(sk__subject_check(NULL, false, "field"), SK_EINVAL, "field must not be NULL");
    SK_TEST_ASSERT_ERR(sk__subject_check("", false, "f"), SK_EINVAL, "1..255");
    SK_TEST_ASSERT_ERR(sk__subject_check("a..b", false, "f"), SK_EINVAL, "empty token");
    SK_TEST_ASSERT_ERR(sk__subject_check(".a", false, "f"), SK_EINVAL, "empty token");
    SK_TEST_ASSERT_ERR(sk__subject_check("a.", false, "f"), SK_EINVAL, "empty token");
    SK_TEST_ASSERT_ERR(sk__subject_check("a b", false, "f"), SK_EINVAL, "invalid character");
    SK_TEST_ASSERT_ERR(sk__subject_check("a.*", false, "f"), SK_EINVAL, "wildcards");
    SK_TEST_ASSERT_ERR(sk__subject_check("a.>", false, "f"), SK_EINVAL, "wildcards");
    SK_TEST_ASSERT_ERR(sk__subject_check("a.b*", true, "f"), SK_EINVAL, "whole token");
    SK_TEST_ASSERT_ERR(sk__subject_check("a.>.b", true, "f"), SK_EINVAL, "last token");
    memset(big, 'a', sizeof(big));
    big[255] = '\0';
    assert_int_equal(sk__subject_check(big, false, "f"), SK_OK);
    big[255] = 'a';
    big[256] = '\0';
    SK_TEST_ASSERT_ERR(sk__subject_check(big, false, "f"), SK_EINVAL, "1..255");
}

static void test_nats_fail_mapping(void **state)
{
    (void)state;
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_TIMEOUT, 0, "doing x"), SK_ETIMEDOUT, "doing x: Timeout");
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_NO_MEMORY, 0, "y"), SK_ENOMEM, "y");
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_SSL_ERROR, 0, "z"), SK_ETLS, "z");
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_ERR, 10059, "w"), SK_EBUS, "(jetstream error 10059)");
    /* Failures that clear up by themselves: callers may wait and try again. */
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_NO_RESPONDERS, 0, "v"), SK_EUNAVAILABLE, "v");
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_ERR, 10008, "u"), SK_EUNAVAILABLE,
                       "(jetstream error 10008)");
    SK_TEST_ASSERT_ERR(sk__nats_fail(NATS_CONNECTION_DISCONNECTED, 0, "t"), SK_EUNAVAILABLE, "t");
}

static void test_nats_is_retryable(void **state)
{
    (void)state;
    assert_true(sk__nats_is_retryable(NATS_TIMEOUT, 0));
    assert_true(sk__nats_is_retryable(NATS_NO_RESPONDERS, 0));
    assert_true(sk__nats_is_retryable(NATS_ERR, 10076));
    assert_true(sk__nats_is_retryable(NATS_ERR, 10008));
    assert_true(sk__nats_is_retryable(NATS_CONNECTION_DISCONNECTED, 0));
    assert_false(sk__nats_is_retryable(NATS_ERR, 10059));
    assert_false(sk__nats_is_retryable(NATS_INVALID_ARG, 0));
}

static void test_bus_open_invalid_args(void **state)
{
    sk_bus *bus = (sk_bus *)1;
    (void)state;

    SK_TEST_ASSERT_ERR(sk_bus_open(NULL, NULL), SK_EINVAL, "out must not be NULL");
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, NULL), SK_EINVAL, "cfg");
    assert_null(bus);
    sk_bus_config c = { .servers = "" };
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "cfg->servers");
    c.servers = " , ";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "no server");
    c.servers = "http://x:1";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "nats:// or tls://");
    c.servers = "nats://127.0.0.1:1";
    c.cert_file = "/x.pem";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "go together");
    c.key_file = "/x.key";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "ca_file");
    c.cert_file = c.key_file = NULL;
    c.inbox_prefix = "_INBOX.a b";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_EINVAL, "inbox_prefix");
    c.inbox_prefix = NULL;
    c.ca_file = "/nonexistent/ca.pem";
    SK_TEST_ASSERT_ERR(sk_bus_open(&bus, &c), SK_ETLS, "/nonexistent/ca.pem");
    assert_null(bus);
}

/* With no server listening the bus still opens and keeps retrying. */
static void test_bus_open_without_server(void **state)
{
    sk_bus *bus = NULL;
    char url[64];
    (void)state;

    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", sk_test_free_port());
    sk_bus_config c = { .servers = url, .name = "unit", .inbox_prefix = "_INBOX.unit" };
    assert_int_equal(sk_bus_open(&bus, &c), SK_OK);
    assert_false(sk_bus_is_connected(bus));
    assert_false(sk_bus_is_connected(NULL));
    sk_bus_close(bus);
    sk_bus_close(NULL);
}

static void test_stream_ensure_invalid_args(void **state)
{
    const char *subjects[] = { "a.>" };
    const char *bad_subjects[] = { "a b" };
    sk_bus *bus = (sk_bus *)1; /* never dereferenced: validation comes first */
    sk_stream_config c = { .name = "S", .subjects = subjects, .n_subjects = 1 };
    (void)state;

    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(NULL, &c), SK_EINVAL, "must not be NULL");
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, NULL), SK_EINVAL, "must not be NULL");
    c.name = "has.dot";
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, &c), SK_EINVAL, "cfg->name");
    c.name = "S";
    c.n_subjects = 0;
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, &c), SK_EINVAL, "cfg->subjects");
    c.n_subjects = 1;
    c.subjects = bad_subjects;
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, &c), SK_EINVAL, "cfg->subjects[i]");
    c.subjects = subjects;
    c.replicas = 6;
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, &c), SK_EINVAL, "replicas");
    c.replicas = 0;
    c.duplicate_window_ms = -1;
    SK_TEST_ASSERT_ERR(sk_bus_stream_ensure(bus, &c), SK_EINVAL, "duplicate_window_ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_check),
        cmocka_unit_test(test_nats_fail_mapping),
        cmocka_unit_test(test_nats_is_retryable),
        cmocka_unit_test(test_bus_open_invalid_args),
        cmocka_unit_test(test_bus_open_without_server),
        cmocka_unit_test(test_stream_ensure_invalid_args),
    };
    int rc;

    if (sk_init("test") != SK_OK || nats_Open(-1) != NATS_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_CloseAndWait(5000);
    sk_shutdown();
    return rc;
}
