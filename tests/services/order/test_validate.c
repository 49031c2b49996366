/* SPDX-License-Identifier: MIT */
/* order: validation of CreateOrder and CancelOrder payloads (limits of CONTRACT.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "order.h"
#include "sk_test.h"

static sk_status validate(const char *text)
{
    json_t *doc = NULL;
    sk_status st = sk_json_parse_object(sk_slice_from_str(text), &doc);
    assert_int_equal(st, SK_OK);
    st = order_validate_create(doc, NULL);
    json_decref(doc);
    return st;
}

static void test_order_validate_create_accepts_a_valid_order(void **state)
{
    (void)state;
    assert_int_equal(validate("{\"customer_id\":\"c1\",\"items\":[{\"sku\":\"A\",\"quantity\":1},"
                              "{\"sku\":\"B\",\"quantity\":10000}]}"),
                     SK_OK);
}

static void test_order_validate_create_names_the_bad_field(void **state)
{
    (void)state;
    SK_TEST_ASSERT_ERR(validate("{\"items\":[{\"sku\":\"A\",\"quantity\":1}]}"), SK_EPROTO, "customer_id");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\"}"), SK_EPROTO, "items: required");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":{}}"), SK_EPROTO, "items");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[]}"), SK_EPROTO, "1..100 items");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[1]}"), SK_EPROTO, "items[0]");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":0}]}"), SK_EPROTO,
                       "quantity");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":10001}]}"),
                       SK_EPROTO, "quantity");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":1.0}]}"), SK_EPROTO,
                       "quantity");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"\",\"quantity\":1}]}"), SK_EPROTO,
                       "sku");
    SK_TEST_ASSERT_ERR(validate("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":1},"
                                "{\"sku\":\"A\",\"quantity\":2}]}"),
                       SK_EPROTO, "items[1].sku: duplicate");
}

static void test_order_validate_create_item_count_limits(void **state)
{
    (void)state;
    for (int n = 100; n <= 101; n++) {
        json_t *items = json_array();
        for (int i = 0; i < n; i++) {
            char sku[16];
            snprintf(sku, sizeof(sku), "S%d", i);
            json_array_append_new(items, json_pack("{s:s, s:i}", "sku", sku, "quantity", 1));
        }
        json_t *doc = json_pack("{s:s, s:o}", "customer_id", "c", "items", items);
        sk_status st = order_validate_create(doc, NULL);
        json_decref(doc);
        if (n == 100) {
            assert_int_equal(st, SK_OK);
        } else {
            SK_TEST_ASSERT_ERR(st, SK_EPROTO, "got 101");
        }
    }
}

static void test_order_validate_cancel(void **state)
{
    (void)state;
    json_t *ok = json_pack("{s:s}", "id", "0190a0a0-0000-7000-8000-000000000000");
    json_t *bad = json_pack("{s:i}", "id", 3);
    assert_int_equal(order_validate_cancel(ok, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(order_validate_cancel(bad, NULL), SK_EPROTO, "id");
    json_decref(ok);
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_validate_create_accepts_a_valid_order),
        cmocka_unit_test(test_order_validate_create_names_the_bad_field),
        cmocka_unit_test(test_order_validate_create_item_count_limits),
        cmocka_unit_test(test_order_validate_cancel),
    };
    if (sk_init("test") != SK_OK) {
        return 1;
    }
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
