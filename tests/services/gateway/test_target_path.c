/* SPDX-License-Identifier: MIT */
/* gateway: internal paths built from public routes, with parameters percent-encoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "gateway.h"
#include "sk_test.h"

static void build(const char *target, const char *name, const char *value, const char *query, char *out,
                  size_t out_len, sk_status *st_out)
{
    char method[] = "GET", path[] = "/x", service[] = "s";
    char *target_copy = sk_strdup(target);
    sk_sys_route route = { .method = method, .path = path, .service = service, .target = target_copy };
    svc_params params = { .n = 0 };
    sk_buf buf;
    if (name != NULL) {
        params.names[0] = sk_strdup(name);
        params.values[0] = sk_strdup(value);
        params.n = 1;
    }
    sk_buf_init(&buf, 4096);
    *st_out = gateway_target_path(&route, &params, query, &buf);
    snprintf(out, out_len, "%s", buf.data != NULL ? buf.data : "");
    sk_buf_fini(&buf);
    svc_params_fini(&params);
    sk_free(target_copy);
}

static void test_gateway_target_path_substitutes_and_encodes(void **state)
{
    (void)state;
    char out[512];
    sk_status st;
    build("/orders/{id}/cancel", "id", "abc-123", NULL, out, sizeof(out), &st);
    assert_int_equal(st, SK_OK);
    assert_string_equal(out, "/orders/abc-123/cancel");
    build("/products/{sku}", "sku", "a/b c?%\"", NULL, out, sizeof(out), &st);
    assert_int_equal(st, SK_OK);
    assert_string_equal(out, "/products/a%2Fb%20c%3F%25%22");
    build("/orders", NULL, NULL, "limit=2&status=APPROVED", out, sizeof(out), &st);
    assert_int_equal(st, SK_OK);
    assert_string_equal(out, "/orders?limit=2&status=APPROVED");
}

static void test_gateway_target_path_missing_parameter(void **state)
{
    (void)state;
    char out[512];
    sk_status st;
    build("/orders/{id}", "other", "x", NULL, out, sizeof(out), &st);
    SK_TEST_ASSERT_ERR(st, SK_EPROTO, "no parameter id");
    build("/orders/{id", "id", "x", NULL, out, sizeof(out), &st);
    SK_TEST_ASSERT_ERR(st, SK_EPROTO, "unclosed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_target_path_substitutes_and_encodes),
        cmocka_unit_test(test_gateway_target_path_missing_parameter),
    };
    if (sk_init("test") != SK_OK) {
        return 1;
    }
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
