/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/kv.c: argument checks (the bucket itself is covered by integration). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "msg/msg_int.h"
#include "sk_test.h"

static void on_change(const char *key, sk_slice value, bool is_deleted, void *ctx)
{
    (void)key;
    (void)value;
    (void)is_deleted;
    (void)ctx;
}

static void test_kv_open_invalid_args(void **state)
{
    sk_kv *kv = (sk_kv *)1;
    sk_bus *bus = (sk_bus *)1; /* never dereferenced */
    (void)state;

    SK_TEST_ASSERT_ERR(sk_kv_open(NULL, bus, "b", 0), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_kv_open(&kv, NULL, "b", 0), SK_EINVAL, "bus");
    assert_null(kv);
    SK_TEST_ASSERT_ERR(sk_kv_open(&kv, bus, NULL, 0), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_kv_open(&kv, bus, "a.b", 0), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_kv_open(&kv, bus, "b", -1), SK_EINVAL, "ttl_ms");
    sk_kv_close(NULL);
}

static void test_kv_ops_invalid_args(void **state)
{
    sk_kv *kv = (sk_kv *)1; /* never dereferenced: keys are checked first */
    char *out = (char *)1;
    size_t len = 9;
    sk_kv_watch *w = (sk_kv_watch *)1;
    (void)state;

    SK_TEST_ASSERT_ERR(sk_kv_put(NULL, "k", sk_slice_from_str("v")), SK_EINVAL, "kv");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, NULL, sk_slice_from_str("v")), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "", sk_slice_from_str("v")), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "a.", sk_slice_from_str("v")), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "a*", sk_slice_from_str("v")), SK_EINVAL, "invalid character");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "k", (sk_slice){ NULL, 3 }), SK_EINVAL, "value.ptr");
    SK_TEST_ASSERT_ERR(sk_kv_put(kv, "k", (sk_slice){ (const uint8_t *)"x", SK_MAX_MSG_PAYLOAD + 1 }),
                       SK_ELIMIT, "over");
    SK_TEST_ASSERT_ERR(sk_kv_delete(NULL, "k"), SK_EINVAL, "kv");
    SK_TEST_ASSERT_ERR(sk_kv_delete(kv, ".k"), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_get(kv, "k", NULL, &len), SK_EINVAL, "out");
    assert_int_equal(len, 0);
    SK_TEST_ASSERT_ERR(sk_kv_get(NULL, "k", &out, &len), SK_EINVAL, "kv");
    assert_null(out);
    SK_TEST_ASSERT_ERR(sk_kv_get(kv, "a b", &out, &len), SK_EINVAL, "key");
    SK_TEST_ASSERT_ERR(sk_kv_watch_start(NULL, kv, ">", on_change, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_kv_watch_start(&w, NULL, ">", on_change, NULL), SK_EINVAL, "kv");
    assert_null(w);
    SK_TEST_ASSERT_ERR(sk_kv_watch_start(&w, kv, ">", NULL, NULL), SK_EINVAL, "fn");
    SK_TEST_ASSERT_ERR(sk_kv_watch_start(&w, kv, "a..b", on_change, NULL), SK_EINVAL, "pattern");
    sk_kv_watch_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_open_invalid_args),
        cmocka_unit_test(test_kv_ops_invalid_args),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
