/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/http_status.c: status mapping, reasons, problem+json, request ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

static void test_sk_http_status_for_each_status(void **state)
{
    (void)state;
    assert_int_equal(sk_http_status_for(SK_OK), 200);
    assert_int_equal(sk_http_status_for(SK_EINVAL), 400);
    assert_int_equal(sk_http_status_for(SK_EPROTO), 400);
    assert_int_equal(sk_http_status_for(SK_ENOTFOUND), 404);
    assert_int_equal(sk_http_status_for(SK_EEXIST), 409);
    assert_int_equal(sk_http_status_for(SK_ECONFLICT), 409);
    assert_int_equal(sk_http_status_for(SK_ELIMIT), 413);
    assert_int_equal(sk_http_status_for(SK_ETIMEDOUT), 504);
    assert_int_equal(sk_http_status_for(SK_EUNAVAILABLE), 503);
    assert_int_equal(sk_http_status_for(SK_EDENIED), 403);
    assert_int_equal(sk_http_status_for(SK_ENOMEM), 500);
    assert_int_equal(sk_http_status_for(SK_EIO), 500);
    assert_int_equal(sk_http_status_for(SK_EDB), 500);
    assert_int_equal(sk_http_status_for(SK_ETLS), 500);
    assert_int_equal(sk_http_status_for(SK_ECANCELED), 500);
    assert_int_equal(sk_http_status_for((sk_status)999), 500);
}

static void test_sk__http_reason(void **state)
{
    (void)state;
    assert_string_equal(sk_http_reason(404), "Not Found");
    assert_string_equal(sk_http_reason(413), "Content Too Large");
    assert_string_equal(sk_http_reason(503), "Service Unavailable");
    assert_string_equal(sk_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sk_http_reason(299), "Unknown");
    assert_string_equal(sk_http_reason(-1), "Unknown");
}

static void test_sk__http_problem_format_full(void **state)
{
    (void)state;
    sk_buf b;
    json_t *o;

    sk_buf_init(&b, 4096);
    assert_int_equal(sk__http_problem_format(&b, 409, "Conflict", "order \"7\" paid", "rid-1"),
                     SK_OK);
    assert_int_equal(sk_json_parse_object((sk_slice){ (const uint8_t *)b.data, b.len }, &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "about:blank");
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Conflict");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 409);
    assert_string_equal(json_string_value(json_object_get(o, "detail")), "order \"7\" paid");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "rid-1");
    json_decref(o);
    sk_buf_fini(&b);
}

static void test_sk__http_problem_format_defaults(void **state)
{
    (void)state;
    sk_buf b;
    json_t *o;

    sk_buf_init(&b, 4096);
    assert_int_equal(sk__http_problem_format(&b, 503, NULL, NULL, NULL), SK_OK);
    assert_int_equal(sk_json_parse_object((sk_slice){ (const uint8_t *)b.data, b.len }, &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Service Unavailable");
    assert_null(json_object_get(o, "detail"));
    assert_null(json_object_get(o, "request_id"));
    json_decref(o);
    /* Invalid UTF-8 in the detail never breaks the answer. */
    sk_buf_reset(&b);
    assert_int_equal(sk__http_problem_format(&b, 400, NULL, "bad \xff byte", "r"), SK_OK);
    assert_non_null(strstr(b.data, "not valid UTF-8"));
    sk_buf_fini(&b);
}

static void test_sk__http_problem_format_errors(void **state)
{
    (void)state;
    sk_buf b;

    sk_buf_init(&b, 4096);
    SK_TEST_ASSERT_ERR(sk__http_problem_format(NULL, 400, NULL, NULL, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk__http_problem_format(&b, 99, NULL, NULL, NULL), SK_EINVAL, "status");
    SK_TEST_ASSERT_ERR(sk__http_problem_format(&b, 600, NULL, NULL, NULL), SK_EINVAL, "status");
    sk_buf_fini(&b);
    /* A buffer too small for the body. */
    sk_buf_init(&b, 8);
    assert_int_equal(sk__http_problem_format(&b, 400, NULL, "long enough detail", NULL), SK_ELIMIT);
    sk_buf_fini(&b);
}

static void test_sk__http_problem_format_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_buf b;
        sk_buf_init(&b, 4096);
        sk_test_fail_alloc_at(n);
        sk_status st = sk__http_problem_format(&b, 404, NULL, "detail", "rid");
        sk_test_fail_alloc_at(-1);
        sk_buf_fini(&b);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
    }
}

static void test_sk__http_request_id_is_valid(void **state)
{
    (void)state;
    char max[SK_MESH_MAX_REQUEST_ID + 2];

    assert_true(sk__http_request_id_is_valid("abc-123_x.y:z"));
    assert_true(sk__http_request_id_is_valid("a"));
    assert_false(sk__http_request_id_is_valid(NULL));
    assert_false(sk__http_request_id_is_valid(""));
    assert_false(sk__http_request_id_is_valid("a b"));
    assert_false(sk__http_request_id_is_valid("a/b"));
    assert_false(sk__http_request_id_is_valid("a\"b"));
    memset(max, 'a', sizeof(max));
    max[SK_MESH_MAX_REQUEST_ID] = '\0';
    assert_true(sk__http_request_id_is_valid(max));
    max[SK_MESH_MAX_REQUEST_ID] = 'a';
    max[SK_MESH_MAX_REQUEST_ID + 1] = '\0';
    assert_false(sk__http_request_id_is_valid(max));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_http_status_for_each_status),
        cmocka_unit_test(test_sk__http_reason),
        cmocka_unit_test(test_sk__http_problem_format_full),
        cmocka_unit_test(test_sk__http_problem_format_defaults),
        cmocka_unit_test(test_sk__http_problem_format_errors),
        cmocka_unit_test(test_sk__http_problem_format_every_alloc_failure),
        cmocka_unit_test(test_sk__http_request_id_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
