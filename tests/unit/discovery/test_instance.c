/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the registry entry value codec (src/discovery/instance.c):
 * name and address validators, validate, encode, decode of valid values,
 * of each invalid field and of garbage bytes, copy and allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "discovery/discovery_int.h"
#include "sk_test.h"

#define VALID                                                                          \
    "{\"service\":\"order\",\"instance\":\"order-1\",\"address\":\"127.0.0.1:41234\"," \
    "\"ready\":true,\"pid\":4242,\"heartbeat_ms\":1764000000123}"

static sk_status decode_str(const char *text, sk_instance *out)
{
    return sk__instance_decode(sk_slice_from_str(text), out);
}

/* Decode @p text, expecting @p want with @p substr in the message and a zeroed result. */
static void expect_decode_fail(const char *text, sk_status want, const char *substr)
{
    sk_instance inst;

    memset(&inst, 0xAB, sizeof(inst));
    sk_status st = decode_str(text, &inst);
    SK_TEST_ASSERT_ERR(st, want, substr);
    assert_null(inst.service);
    assert_null(inst.instance);
    assert_null(inst.address);
    assert_int_equal(inst.pid, 0);
}

static sk_instance sample(void)
{
    sk_instance i = { .service = "order",
                      .instance = "order-1",
                      .address = "127.0.0.1:41234",
                      .is_ready = true,
                      .pid = 4242,
                      .heartbeat_ms = 1764000000123LL };
    return i;
}

/* ---------------------------------------------------------------- validators */

static void test_name_is_valid_accepts_names(void **state)
{
    char max[SK_DISCOVERY_MAX_NAME + 2];

    (void)state;
    assert_true(sk__discovery_name_is_valid("order", 5));
    assert_true(sk__discovery_name_is_valid("a", 1));
    assert_true(sk__discovery_name_is_valid("order-1", 7));
    assert_true(sk__discovery_name_is_valid("0-9", 3));
    memset(max, 'a', sizeof(max));
    assert_true(sk__discovery_name_is_valid(max, SK_DISCOVERY_MAX_NAME));
    assert_false(sk__discovery_name_is_valid(max, SK_DISCOVERY_MAX_NAME + 1));
    /* Only len bytes are read: no NUL terminator needed. */
    assert_true(sk__discovery_name_is_valid("abc.def", 3));
}

static void test_name_is_valid_refuses_bad(void **state)
{
    (void)state;
    assert_false(sk__discovery_name_is_valid(NULL, 3));
    assert_false(sk__discovery_name_is_valid("", 0));
    assert_false(sk__discovery_name_is_valid("Order", 5));
    assert_false(sk__discovery_name_is_valid("or.der", 6));
    assert_false(sk__discovery_name_is_valid("or_der", 6));
    assert_false(sk__discovery_name_is_valid("or der", 6));
    assert_false(sk__discovery_name_is_valid("a>", 2));
    assert_false(sk__discovery_name_is_valid("a*", 2));
    assert_false(sk__discovery_name_is_valid("a\0b", 3));
    assert_false(sk__discovery_name_is_valid("\xc3\xa9", 2));
}

static bool addr_ok(const char *s)
{
    return sk__discovery_address_is_valid(s, strlen(s));
}

static void test_address_is_valid_accepts_addresses(void **state)
{
    char max[SK_DISCOVERY_MAX_ADDRESS + 2];

    (void)state;
    assert_true(addr_ok("127.0.0.1:41234"));
    assert_true(addr_ok("h:1"));
    assert_true(addr_ok("order-1.svc.cluster.local:65535"));
    assert_true(addr_ok("my_host:8443"));
    assert_true(addr_ok("[::1]:443"));
    assert_true(addr_ok("[fe80::1:2]:9000"));
    /* Longest accepted: host fills the rest. */
    memset(max, 'a', sizeof(max));
    memcpy(max + SK_DISCOVERY_MAX_ADDRESS - 5, ":8080", 5);
    assert_true(sk__discovery_address_is_valid(max, SK_DISCOVERY_MAX_ADDRESS));
    memset(max, 'a', sizeof(max));
    memcpy(max + SK_DISCOVERY_MAX_ADDRESS + 1 - 5, ":8080", 5);
    assert_false(sk__discovery_address_is_valid(max, SK_DISCOVERY_MAX_ADDRESS + 1));
}

static void test_address_is_valid_refuses_bad(void **state)
{
    (void)state;
    assert_false(sk__discovery_address_is_valid(NULL, 5));
    assert_false(addr_ok(""));
    assert_false(addr_ok("host"));
    assert_false(addr_ok("host:"));
    assert_false(addr_ok(":80"));
    assert_false(addr_ok("host:0"));
    assert_false(addr_ok("host:65536"));
    assert_false(addr_ok("host:99999"));
    assert_false(addr_ok("host:123456"));
    assert_false(addr_ok("host:080"));
    assert_false(addr_ok("host:+80"));
    assert_false(addr_ok("host:-1"));
    assert_false(addr_ok("host:8x"));
    assert_false(addr_ok("ho st:80"));
    assert_false(addr_ok("host/x:80"));
    assert_false(addr_ok("::1:443"));
    assert_false(addr_ok("[::1:443"));
    assert_false(addr_ok("[]:443"));
    assert_false(addr_ok("[::g]:443"));
    assert_false(addr_ok("http://h:80"));
    assert_false(sk__discovery_address_is_valid("h:8\0", 4));
}

static void test_instance_validate_success(void **state)
{
    sk_instance i = sample();

    (void)state;
    assert_int_equal(sk__instance_validate(&i), SK_OK);
    i.pid = 0; /* 0 means "this process" at registration */
    assert_int_equal(sk__instance_validate(&i), SK_OK);
}

static void test_instance_validate_each_field(void **state)
{
    sk_instance i;

    (void)state;
    SK_TEST_ASSERT_ERR(sk__instance_validate(NULL), SK_EINVAL, "must not be NULL");
    i = sample();
    i.service = NULL;
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "service: expected");
    i = sample();
    i.service = "Order";
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "service: expected");
    i = sample();
    i.instance = "";
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "instance: expected");
    i = sample();
    i.instance = NULL;
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "instance: expected");
    i = sample();
    i.address = "nohost";
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "address: expected");
    i = sample();
    i.address = NULL;
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "address: expected");
    i = sample();
    i.pid = -1;
    SK_TEST_ASSERT_ERR(sk__instance_validate(&i), SK_EINVAL, "pid: expected");
}

/* ---------------------------------------------------------------- encode */

static void test_instance_encode_roundtrip(void **state)
{
    sk_instance in = sample();
    sk_instance out;
    char *text = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(sk__instance_encode(&in, &text, &len), SK_OK);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_non_null(strstr(text, "\"service\":\"order\""));
    assert_non_null(strstr(text, "\"ready\":true"));
    assert_non_null(strstr(text, "\"heartbeat_ms\":1764000000123"));
    assert_int_equal(sk__instance_decode((sk_slice){ (const uint8_t *)text, len }, &out), SK_OK);
    assert_string_equal(out.service, "order");
    assert_string_equal(out.instance, "order-1");
    assert_string_equal(out.address, "127.0.0.1:41234");
    assert_true(out.is_ready);
    assert_int_equal(out.pid, 4242);
    assert_int_equal(out.heartbeat_ms, 1764000000123LL);
    sk__instance_fini(&out);
    sk_free(text);

    in.is_ready = false;
    assert_int_equal(sk__instance_encode(&in, &text, &len), SK_OK);
    assert_non_null(strstr(text, "\"ready\":false"));
    sk_free(text);
}

static void test_instance_encode_errors(void **state)
{
    sk_instance in = sample();
    char *text = (char *)"x";
    size_t len = 7;

    (void)state;
    SK_TEST_ASSERT_ERR(sk__instance_encode(&in, NULL, &len), SK_EINVAL, "must not be NULL");
    SK_TEST_ASSERT_ERR(sk__instance_encode(&in, &text, NULL), SK_EINVAL, "must not be NULL");
    SK_TEST_ASSERT_ERR(sk__instance_encode(NULL, &text, &len), SK_EINVAL, "must not be NULL");
    assert_null(text);
    assert_int_equal(len, 0);
    in.address = "x:0";
    SK_TEST_ASSERT_ERR(sk__instance_encode(&in, &text, &len), SK_EINVAL, "address");
    in = sample();
    in.pid = 0;
    SK_TEST_ASSERT_ERR(sk__instance_encode(&in, &text, &len), SK_EINVAL, "pid");
    in = sample();
    in.heartbeat_ms = -5;
    SK_TEST_ASSERT_ERR(sk__instance_encode(&in, &text, &len), SK_EINVAL, "heartbeat_ms");
    assert_null(text);
}

static void test_instance_encode_every_alloc_failure(void **state)
{
    sk_instance in = sample();

    (void)state;
    for (long n = 0;; n++) {
        char *text = NULL;
        size_t len = 0;
        sk_test_fail_alloc_at(n);
        sk_status st = sk__instance_encode(&in, &text, &len);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_free(text);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(text);
    }
}

/* ---------------------------------------------------------------- decode */

static void test_instance_decode_valid(void **state)
{
    sk_instance inst;

    (void)state;
    assert_int_equal(decode_str(VALID, &inst), SK_OK);
    assert_string_equal(inst.service, "order");
    assert_string_equal(inst.instance, "order-1");
    assert_string_equal(inst.address, "127.0.0.1:41234");
    assert_true(inst.is_ready);
    assert_int_equal(inst.pid, 4242);
    assert_int_equal(inst.heartbeat_ms, 1764000000123LL);
    sk__instance_fini(&inst);
    assert_null(inst.service);
    sk__instance_fini(&inst); /* idempotent */
    sk__instance_fini(NULL);  /* NULL-safe */
}

static void test_instance_decode_ignores_unknown_fields(void **state)
{
    sk_instance inst;

    (void)state;
    assert_int_equal(decode_str("{\"zone\":\"eu-1\",\"service\":\"a\",\"instance\":\"b\","
                                "\"address\":\"[::1]:1\",\"ready\":false,\"pid\":1,"
                                "\"heartbeat_ms\":0,\"extra\":{\"x\":[1,2,3]}}",
                                &inst),
                     SK_OK);
    assert_string_equal(inst.service, "a");
    assert_string_equal(inst.address, "[::1]:1");
    assert_false(inst.is_ready);
    assert_int_equal(inst.heartbeat_ms, 0);
    sk__instance_fini(&inst);
}

static void test_instance_decode_not_nul_terminated(void **state)
{
    char buf[sizeof(VALID) + 8];
    sk_instance inst;

    (void)state;
    memcpy(buf, VALID, sizeof(VALID) - 1);
    memcpy(buf + sizeof(VALID) - 1, "garbage!", 8); /* no NUL anywhere after the JSON */
    sk_slice s = { (const uint8_t *)buf, sizeof(VALID) - 1 };
    assert_int_equal(sk__instance_decode(s, &inst), SK_OK);
    assert_string_equal(inst.address, "127.0.0.1:41234");
    sk__instance_fini(&inst);
}

static void test_instance_decode_missing_fields(void **state)
{
    (void)state;
    expect_decode_fail("{\"instance\":\"b\",\"address\":\"h:1\",\"ready\":true,\"pid\":1,"
                       "\"heartbeat_ms\":0}",
                       SK_EPROTO, "service: missing");
    expect_decode_fail("{\"service\":\"a\",\"address\":\"h:1\",\"ready\":true,\"pid\":1,"
                       "\"heartbeat_ms\":0}",
                       SK_EPROTO, "instance: missing");
    expect_decode_fail("{\"service\":\"a\",\"instance\":\"b\",\"ready\":true,\"pid\":1,"
                       "\"heartbeat_ms\":0}",
                       SK_EPROTO, "address: missing");
    expect_decode_fail("{\"service\":\"a\",\"instance\":\"b\",\"address\":\"h:1\",\"pid\":1,"
                       "\"heartbeat_ms\":0}",
                       SK_EPROTO, "ready: missing");
    expect_decode_fail("{\"service\":\"a\",\"instance\":\"b\",\"address\":\"h:1\",\"ready\":true,"
                       "\"heartbeat_ms\":0}",
                       SK_EPROTO, "pid: missing");
    expect_decode_fail("{\"service\":\"a\",\"instance\":\"b\",\"address\":\"h:1\",\"ready\":true,"
                       "\"pid\":1}",
                       SK_EPROTO, "heartbeat_ms: missing");
}

/* Build VALID with field @p key's value replaced by the JSON text @p json. */
static void with_field(char *out, size_t cap, const char *key, const char *json)
{
    const char *names[] = { "service", "instance", "address", "ready", "pid", "heartbeat_ms" };
    const char *values[] = { "\"order\"", "\"order-1\"", "\"127.0.0.1:41234\"",
                             "true",      "4242",        "1764000000123" };
    size_t used = 0;

    used += (size_t)snprintf(out + used, cap - used, "{");
    for (size_t i = 0; i < 6; i++) {
        const char *v = strcmp(names[i], key) == 0 ? json : values[i];
        used +=
            (size_t)snprintf(out + used, cap - used, "%s\"%s\":%s", i > 0 ? "," : "", names[i], v);
    }
    snprintf(out + used, cap - used, "}");
}

static void expect_field_fail(const char *key, const char *json, const char *substr)
{
    char text[1024];

    with_field(text, sizeof(text), key, json);
    expect_decode_fail(text, SK_EPROTO, substr);
}

static void test_instance_decode_bad_service(void **state)
{
    (void)state;
    expect_field_fail("service", "\"\"", "service: expected [a-z0-9-]{1,64}, got \"\"");
    expect_field_fail("service", "\"Order\"", "got \"Order\"");
    expect_field_fail("service", "\"a.b\"", "service: expected");
    expect_field_fail("service", "\"a>\"", "service: expected");
    expect_field_fail("service", "\"a\\u0000b\"", "instance value");
    expect_field_fail("service",
                      "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                      "service: expected");
    expect_field_fail("service", "42", "service: expected [a-z0-9-]{1,64}, got a JSON number");
    expect_field_fail("service", "null", "got a JSON null");
    expect_field_fail("service", "[\"a\"]", "got a JSON array");
    expect_field_fail("service", "{}", "got a JSON object");
    expect_field_fail("service", "true", "got a JSON boolean");
}

static void test_instance_decode_bad_instance(void **state)
{
    (void)state;
    expect_field_fail("instance", "\"\"", "instance: expected");
    expect_field_fail("instance", "\"order_1\"", "instance: expected");
    expect_field_fail("instance", "\"\xc3\xa9\"", "instance: expected");
    expect_field_fail("instance", "1", "instance: expected");
}

static void test_instance_decode_bad_address(void **state)
{
    (void)state;
    expect_field_fail("address", "\"\"", "address: expected \"host:port\"");
    expect_field_fail("address", "\"host\"", "address: expected");
    expect_field_fail("address", "\"host:0\"", "address: expected");
    expect_field_fail("address", "\"host:65536\"", "address: expected");
    expect_field_fail("address", "\"h\\\"q:80\"", "address: expected");
    expect_field_fail("address", "8080", "address: expected");
}

static void test_instance_decode_bad_ready(void **state)
{
    (void)state;
    expect_field_fail("ready", "1", "ready: not a boolean");
    expect_field_fail("ready", "\"true\"", "ready: not a boolean");
    expect_field_fail("ready", "null", "ready: not a boolean");
}

static void test_instance_decode_bad_pid(void **state)
{
    (void)state;
    expect_field_fail("pid", "0", "pid: expected an integer 1..2147483647, got 0");
    expect_field_fail("pid", "-3", "got -3");
    expect_field_fail("pid", "2147483648", "got 2147483648");
    expect_field_fail("pid", "1.5", "pid: expected an integer");
    expect_field_fail("pid", "\"12\"", "pid: expected an integer");
    expect_field_fail("pid", "true", "pid: expected an integer");
}

static void test_instance_decode_bad_heartbeat(void **state)
{
    (void)state;
    expect_field_fail("heartbeat_ms", "-1", "heartbeat_ms: expected an integer 0..");
    expect_field_fail("heartbeat_ms", "1e3", "heartbeat_ms: expected an integer");
    expect_field_fail("heartbeat_ms", "\"now\"", "heartbeat_ms: expected an integer");
}

static void test_instance_decode_garbage(void **state)
{
    static const uint8_t bin[] = { 0x00, 0xff, 0xfe, 0x7b, 0x22, 0x80, 0x01 };
    sk_instance inst;

    (void)state;
    expect_decode_fail("", SK_EPROTO, "instance value: empty");
    expect_decode_fail("not json", SK_EPROTO, "instance value");
    expect_decode_fail("{", SK_EPROTO, "instance value");
    expect_decode_fail("[]", SK_EPROTO, "expected a JSON object");
    expect_decode_fail("\"order\"", SK_EPROTO, "expected a JSON object");
    expect_decode_fail("null", SK_EPROTO, "expected a JSON object");
    expect_decode_fail(VALID VALID, SK_EPROTO, "instance value");
    expect_decode_fail("{\"service\":\"a\",\"service\":\"b\"}", SK_EPROTO, "instance value");
    expect_decode_fail("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", SK_ELIMIT,
                       "instance value");
    memset(&inst, 0, sizeof(inst));
    SK_TEST_ASSERT_ERR(sk__instance_decode((sk_slice){ bin, sizeof(bin) }, &inst), SK_EPROTO,
                       "instance value");
    assert_null(inst.service);
    /* Every prefix of a valid value is refused without reading past it. */
    for (size_t len = 0; len + 1 < sizeof(VALID) - 1; len++) {
        sk_status st = sk__instance_decode((sk_slice){ (const uint8_t *)VALID, len }, &inst);
        assert_int_equal(st, SK_EPROTO);
        assert_null(inst.service);
    }
}

static void test_instance_decode_size_limit(void **state)
{
    char *big = sk_malloc(SK__DISCOVERY_MAX_VALUE + 2);
    sk_instance inst;
    size_t head = strlen(VALID) - 1; /* without the closing brace */

    (void)state;
    assert_non_null(big);
    /* VALID padded with an unknown string field to exactly max and max+1 bytes. */
    for (size_t total = SK__DISCOVERY_MAX_VALUE; total <= SK__DISCOVERY_MAX_VALUE + 1; total++) {
        size_t pad = total - head - strlen(",\"p\":\"\"}");
        memcpy(big, VALID, head);
        memcpy(big + head, ",\"p\":\"", 6);
        memset(big + head + 6, 'x', pad);
        memcpy(big + head + 6 + pad, "\"}", 2);
        sk_slice s = { (const uint8_t *)big, total };
        sk_status st = sk__instance_decode(s, &inst);
        if (total == SK__DISCOVERY_MAX_VALUE) {
            assert_int_equal(st, SK_OK);
            sk__instance_fini(&inst);
        } else {
            SK_TEST_ASSERT_ERR(st, SK_ELIMIT, "at most 4096");
        }
    }
    sk_free(big);
}

static void test_instance_decode_null_args(void **state)
{
    sk_instance inst;

    (void)state;
    SK_TEST_ASSERT_ERR(decode_str(VALID, NULL), SK_EINVAL, "out must not be NULL");
    SK_TEST_ASSERT_ERR(sk__instance_decode((sk_slice){ NULL, 3 }, &inst), SK_EINVAL,
                       "value.ptr is NULL");
    SK_TEST_ASSERT_ERR(sk__instance_decode((sk_slice){ NULL, 0 }, &inst), SK_EPROTO, "empty");
}

static void test_instance_decode_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_instance inst;
        sk_test_fail_alloc_at(n);
        sk_status st = decode_str(VALID, &inst);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk__instance_fini(&inst);
            break;
        }
        /* jansson 2.14 reports most allocation failures inside json_loadb as
         * syntax errors ("line -1, column -1"), so EPROTO is possible here. */
        if (st != SK_ENOMEM) {
            assert_int_equal(st, SK_EPROTO);
        }
        assert_null(inst.service);
        assert_null(inst.instance);
        assert_null(inst.address);
    }
}

/* ---------------------------------------------------------------- copy */

static void test_instance_copy(void **state)
{
    sk_instance in = sample();
    sk_instance out;

    (void)state;
    assert_int_equal(sk__instance_copy(&out, &in), SK_OK);
    assert_ptr_not_equal(out.service, in.service);
    assert_string_equal(out.service, in.service);
    assert_string_equal(out.instance, in.instance);
    assert_string_equal(out.address, in.address);
    assert_int_equal(out.pid, in.pid);
    assert_int_equal(out.heartbeat_ms, in.heartbeat_ms);
    assert_true(out.is_ready);
    sk__instance_fini(&out);
    SK_TEST_ASSERT_ERR(sk__instance_copy(NULL, &in), SK_EINVAL, "must not be NULL");
    SK_TEST_ASSERT_ERR(sk__instance_copy(&out, NULL), SK_EINVAL, "must not be NULL");
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk__instance_copy(&out, &in);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk__instance_fini(&out);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(out.service);
        assert_null(out.address);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_is_valid_accepts_names),
        cmocka_unit_test(test_name_is_valid_refuses_bad),
        cmocka_unit_test(test_address_is_valid_accepts_addresses),
        cmocka_unit_test(test_address_is_valid_refuses_bad),
        cmocka_unit_test(test_instance_validate_success),
        cmocka_unit_test(test_instance_validate_each_field),
        cmocka_unit_test(test_instance_encode_roundtrip),
        cmocka_unit_test(test_instance_encode_errors),
        cmocka_unit_test(test_instance_encode_every_alloc_failure),
        cmocka_unit_test(test_instance_decode_valid),
        cmocka_unit_test(test_instance_decode_ignores_unknown_fields),
        cmocka_unit_test(test_instance_decode_not_nul_terminated),
        cmocka_unit_test(test_instance_decode_missing_fields),
        cmocka_unit_test(test_instance_decode_bad_service),
        cmocka_unit_test(test_instance_decode_bad_instance),
        cmocka_unit_test(test_instance_decode_bad_address),
        cmocka_unit_test(test_instance_decode_bad_ready),
        cmocka_unit_test(test_instance_decode_bad_pid),
        cmocka_unit_test(test_instance_decode_bad_heartbeat),
        cmocka_unit_test(test_instance_decode_garbage),
        cmocka_unit_test(test_instance_decode_size_limit),
        cmocka_unit_test(test_instance_decode_null_args),
        cmocka_unit_test(test_instance_decode_every_alloc_failure),
        cmocka_unit_test(test_instance_copy),
    };
    return cmocka_run_group_tests(tests, sk_test_group_setup, sk_test_group_teardown);
}
