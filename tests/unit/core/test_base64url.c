/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/base64url.c (RFC 4648 test vectors, strict decoding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include <skald/core.h>

#include "sk_test.h"

static void test_sk_base64url_encode_vectors(void **state)
{
    (void)state;
    static const char *const in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const want[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
    char out[16];
    for (size_t i = 0; i < 7; i++) {
        size_t n = sk_base64url_encode(in[i], strlen(in[i]), out);
        assert_string_equal(out, want[i]);
        assert_int_equal(n, strlen(want[i]));
    }
    uint8_t bin[] = { 0xfb, 0xff, 0xbf };
    sk_base64url_encode(bin, 3, out);
    assert_string_equal(out, "-_-_");
    assert_int_equal(sk_base64url_encode("x", 1, NULL), 0);
    assert_int_equal(sk_base64url_encode(NULL, 5, out), 0);
    assert_string_equal(out, "");
}

static void test_sk_base64url_roundtrip(void **state)
{
    (void)state;
    uint8_t data[256], back[256 + 1];
    char text[4 * 86 + 1];
    for (int i = 0; i < 256; i++) {
        data[i] = (uint8_t)i;
    }
    for (size_t len = 0; len <= 256; len += 17) {
        size_t n = sk_base64url_encode(data, len, text);
        size_t got = 0;
        sk_slice s = { (const uint8_t *)text, n };
        assert_int_equal(sk_base64url_decode(s, back, &got), SK_OK);
        assert_int_equal(got, len);
        assert_memory_equal(back, data, len);
    }
}

static void test_sk_base64url_decode_rejects(void **state)
{
    (void)state;
    uint8_t out[32];
    size_t n = 99;
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zm9v=="), out, &n), SK_EPROTO,
                       "offset 4: invalid character 0x3d");
    assert_int_equal(n, 0);
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zm+v"), out, &n), SK_EPROTO,
                       "offset 2");
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zm9vY"), out, &n), SK_EPROTO,
                       "length 5");
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zh"), out, &n), SK_EPROTO,
                       "trailing bits");
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zm9 "), out, &n), SK_EPROTO,
                       "invalid character");
}

static void test_sk_base64url_decode_null_args(void **state)
{
    (void)state;
    uint8_t out[4];
    size_t n;
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zg"), out, NULL), SK_EINVAL,
                       "out_len");
    SK_TEST_ASSERT_ERR(sk_base64url_decode(sk_slice_from_str("Zg"), NULL, &n), SK_EINVAL,
                       "out must not be NULL");
    sk_slice bad = { NULL, 3 };
    SK_TEST_ASSERT_ERR(sk_base64url_decode(bad, out, &n), SK_EINVAL, "text.ptr");
    sk_slice empty = { NULL, 0 };
    assert_int_equal(sk_base64url_decode(empty, out, &n), SK_OK);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_base64url_encode_vectors),
        cmocka_unit_test(test_sk_base64url_roundtrip),
        cmocka_unit_test(test_sk_base64url_decode_rejects),
        cmocka_unit_test(test_sk_base64url_decode_null_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
