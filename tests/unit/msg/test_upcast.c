/* SPDX-License-Identifier: MIT */
/* Unit tests for src/msg/upcast.c: the upcaster registry and sk_msg_upcast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

/* v1 {"qty"} -> v2 {"quantity"} */
static sk_status rename_qty(json_t *data, const sk_envelope *env, void *ctx)
{
    json_t *q = json_object_get(data, "qty");
    int *calls = ctx;
    (void)env;
    if (calls != NULL) {
        (*calls)++;
    }
    if (q == NULL) {
        return SK_FAIL(SK_EPROTO, "field qty missing");
    }
    if (json_object_set(data, "quantity", q) != 0 || json_object_del(data, "qty") != 0) {
        return SK_FAIL(SK_ENOMEM, "renaming qty");
    }
    return SK_OK;
}

/* v2 -> v3: adds "currency" */
static sk_status add_currency(json_t *data, const sk_envelope *env, void *ctx)
{
    (void)env;
    (void)ctx;
    if (json_object_set_new(data, "currency", json_string("EUR")) != 0) {
        return SK_FAIL(SK_ENOMEM, "adding currency");
    }
    return SK_OK;
}

static sk_status bare_failure(json_t *data, const sk_envelope *env, void *ctx)
{
    (void)data;
    (void)env;
    (void)ctx;
    return SK_EIO; /* no message set on purpose */
}

static sk_status breaks_object(json_t *data, const sk_envelope *env, void *ctx)
{
    (void)env;
    (void)ctx;
    json_object_clear(data);
    return SK_OK;
}

static void message_init(sk_message *m, const char *type, int version, json_t *json)
{
    memset(m, 0, sizeof(*m));
    sk_envelope_init(&m->env, type, "test", "agg", NULL);
    m->env.schema_version = version;
    m->json = json;
}

static void test_upcasters_create_and_destroy(void **state)
{
    sk_upcasters *u = NULL;
    (void)state;
    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_non_null(u);
    assert_int_equal(sk_upcasters_version(u, "Anything"), 1);
    sk_upcasters_destroy(u);
    sk_upcasters_destroy(NULL);
    SK_TEST_ASSERT_ERR(sk_upcasters_create(NULL), SK_EINVAL, "out must not be NULL");
    assert_int_equal(sk_upcasters_version(NULL, "X"), 1);
}

static void test_upcaster_register_invalid(void **state)
{
    sk_upcasters *u = NULL;
    char long_type[SK_ENVELOPE_MAX_ATTR + 2];
    (void)state;

    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    memset(long_type, 'a', sizeof(long_type) - 1);
    long_type[sizeof(long_type) - 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_upcaster_register(NULL, "T", 1, rename_qty, NULL), SK_EINVAL, "u and fn");
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "T", 1, NULL, NULL), SK_EINVAL, "u and fn");
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, NULL, 1, rename_qty, NULL), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "", 1, rename_qty, NULL), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, long_type, 1, rename_qty, NULL), SK_EINVAL,
                       "expected 1..256 bytes");
    /* 256 bytes is the longest type. */
    long_type[SK_ENVELOPE_MAX_ATTR] = '\0';
    assert_int_equal(sk_upcaster_register(u, long_type, 1, rename_qty, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "T", 0, rename_qty, NULL), SK_EINVAL,
                       "from_version");
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "T", SK__MAX_SCHEMA_VERSION, rename_qty, NULL),
                       SK_EINVAL, "from_version");
    assert_int_equal(sk_upcaster_register(u, "T", 1, rename_qty, NULL), SK_OK);
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "T", 1, add_currency, NULL), SK_EEXIST,
                       "already has an upcaster from version 1");
    SK_TEST_ASSERT_ERR(sk_upcasters_version_set(NULL, "T", 2), SK_EINVAL, "u must not be NULL");
    SK_TEST_ASSERT_ERR(sk_upcasters_version_set(u, "", 2), SK_EINVAL, "type");
    SK_TEST_ASSERT_ERR(sk_upcasters_version_set(u, "T", 0), SK_EINVAL, "version");
    SK_TEST_ASSERT_ERR(sk_upcasters_version_set(u, "T", SK__MAX_SCHEMA_VERSION + 1), SK_EINVAL,
                       "version");
    sk_upcasters_destroy(u);
}

static void test_upcaster_register_limit(void **state)
{
    sk_upcasters *u = NULL;
    (void)state;
    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    for (int i = 1; i <= SK_UPCASTERS_MAX; i++) {
        assert_int_equal(sk_upcaster_register(u, "T", i, rename_qty, NULL), SK_OK);
    }
    SK_TEST_ASSERT_ERR(sk_upcaster_register(u, "T", SK_UPCASTERS_MAX + 1, rename_qty, NULL),
                       SK_ELIMIT, "more than 1024");
    SK_TEST_ASSERT_ERR(sk_upcasters_version_set(u, "U", 2), SK_ELIMIT, "more than 1024");
    assert_int_equal(sk_upcasters_version(u, "T"), SK_UPCASTERS_MAX + 1);
    sk_upcasters_destroy(u);
}

static void test_upcasters_version(void **state)
{
    sk_upcasters *u = NULL;
    (void)state;
    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Placed", 1, rename_qty, NULL), SK_OK);
    assert_int_equal(sk_upcasters_version(u, "Placed"), 2);
    assert_int_equal(sk_upcaster_register(u, "Placed", 2, add_currency, NULL), SK_OK);
    assert_int_equal(sk_upcasters_version(u, "Placed"), 3);
    /* A declared version counts when higher, never lowers the implied one. */
    assert_int_equal(sk_upcasters_version_set(u, "Placed", 2), SK_OK);
    assert_int_equal(sk_upcasters_version(u, "Placed"), 3);
    assert_int_equal(sk_upcasters_version_set(u, "Shipped", 4), SK_OK);
    assert_int_equal(sk_upcasters_version(u, "Shipped"), 4);
    assert_int_equal(sk_upcasters_version(u, "Other"), 1);
    assert_int_equal(sk_upcasters_version(u, NULL), 1);
    sk_upcasters_destroy(u);
}

static void test_msg_upcast_chain(void **state)
{
    sk_upcasters *u = NULL;
    sk_message m;
    json_t *data = json_pack("{s:i}", "qty", 3);
    json_t *owned = NULL;
    int calls = 0;
    (void)state;

    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Placed", 2, add_currency, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Placed", 1, rename_qty, &calls), SK_OK);
    message_init(&m, "Placed", 1, data);
    assert_int_equal(sk_msg_upcast(u, &m, &owned), SK_OK);
    assert_non_null(owned);
    assert_ptr_equal(m.json, owned);
    assert_int_equal(m.env.schema_version, 3);
    assert_int_equal(calls, 1);
    assert_int_equal(json_integer_value(json_object_get(owned, "quantity")), 3);
    assert_string_equal(json_string_value(json_object_get(owned, "currency")), "EUR");
    /* The original is untouched. */
    assert_non_null(json_object_get(data, "qty"));
    assert_null(json_object_get(data, "currency"));
    json_decref(owned);

    /* Current already: nothing to do. */
    message_init(&m, "Placed", 3, data);
    assert_int_equal(sk_msg_upcast(u, &m, &owned), SK_OK);
    assert_null(owned);
    assert_ptr_equal(m.json, data);
    /* A type the registry does not know, at version 1. */
    message_init(&m, "Unregistered", 1, data);
    assert_int_equal(sk_msg_upcast(u, &m, &owned), SK_OK);
    assert_null(owned);
    /* No registry: nothing checked. */
    message_init(&m, "Placed", 7, data);
    assert_int_equal(sk_msg_upcast(NULL, &m, &owned), SK_OK);
    assert_null(owned);
    assert_int_equal(m.env.schema_version, 7);
    json_decref(data);
    sk_upcasters_destroy(u);
}

static void test_msg_upcast_errors(void **state)
{
    sk_upcasters *u = NULL;
    sk_message m;
    json_t *data = json_pack("{s:i}", "n", 1);
    json_t *owned = (json_t *)1;
    (void)state;

    assert_int_equal(sk_upcasters_create(&u), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Placed", 2, add_currency, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Failing", 1, rename_qty, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Bare", 1, bare_failure, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Breaks", 1, breaks_object, NULL), SK_OK);
    assert_int_equal(sk_upcaster_register(u, "Breaks", 2, breaks_object, NULL), SK_OK);

    /* A gap in the chain. */
    message_init(&m, "Placed", 1, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO,
                       "no upcaster for Placed from schema version 1 (current 3)");
    assert_null(owned);
    assert_ptr_equal(m.json, data);
    assert_int_equal(m.env.schema_version, 1);
    /* Newer than known. */
    message_init(&m, "Placed", 4, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO,
                       "schema version 4 of Placed is newer than this consumer knows (3)");
    message_init(&m, "Unregistered", 2, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO,
                       "newer than this consumer knows (1)");
    /* The upcaster's own error, wrapped. */
    message_init(&m, "Failing", 1, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO, "field qty missing");
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO,
                       "upcasting Failing from schema version 1");
    message_init(&m, "Bare", 1, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EIO, "upcaster returned");
    /* An object stays an object (clearing it is fine). */
    message_init(&m, "Breaks", 1, data);
    assert_int_equal(sk_msg_upcast(u, &m, &owned), SK_OK);
    json_decref(owned);
    /* Version 0 cannot come from the envelope decoder, but is refused. */
    message_init(&m, "Placed", 0, data);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EPROTO, "expected at least 1");
    /* Arguments. */
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, NULL), SK_EINVAL, "owned_json");
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, NULL, &owned), SK_EINVAL, "m and m->env.type");
    message_init(&m, "Placed", 1, NULL);
    SK_TEST_ASSERT_ERR(sk_msg_upcast(u, &m, &owned), SK_EINVAL, "expected a JSON object");
    json_decref(data);
    sk_upcasters_destroy(u);
}

static void test_msg_upcast_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_upcasters *u = NULL;
        sk_message m;
        json_t *data = json_pack("{s:i}", "qty", 3);
        json_t *owned = NULL;
        sk_status st;

        assert_non_null(data);
        sk_test_fail_alloc_at(n);
        st = sk_upcasters_create(&u);
        if (st == SK_OK) {
            st = sk_upcaster_register(u, "Placed", 1, rename_qty, NULL);
        }
        if (st == SK_OK) {
            message_init(&m, "Placed", 1, data);
            st = sk_msg_upcast(u, &m, &owned);
        }
        sk_test_fail_alloc_at(-1);
        json_decref(owned);
        json_decref(data);
        sk_upcasters_destroy(u);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upcasters_create_and_destroy),
        cmocka_unit_test(test_upcaster_register_invalid),
        cmocka_unit_test(test_upcaster_register_limit),
        cmocka_unit_test(test_upcasters_version),
        cmocka_unit_test(test_msg_upcast_chain),
        cmocka_unit_test(test_msg_upcast_errors),
        cmocka_unit_test(test_msg_upcast_every_alloc_failure),
    };
    int rc;

    if (sk_init("test") != SK_OK) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    sk_shutdown();
    return rc;
}
