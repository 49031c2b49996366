/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of src/cqrs/idempotency.c: the migrations, the canonical request
 * hash, and lookup / save / expire against an in-memory SQLite store.
 * Database work runs in units of work that record their results; assertions
 * run afterwards on the test thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cqrs/cqrs_int.h"
#include "sk_test.h"

static sk_store *open_store(void)
{
    size_t n = 0;
    const sk_migration *m = sk_cqrs_migrations(&n);
    sk_store_config cfg = { .url = "sqlite::memory:", .migrations = m, .n_migrations = n };
    sk_store *store = NULL;

    assert_int_equal(sk_store_open(&store, &cfg), SK_OK);
    return store;
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

/* ---------------------------------------------------------------- migrations and hash */

static void test_sk_cqrs_migrations(void **state)
{
    size_t n = 0;
    const sk_migration *m = sk_cqrs_migrations(&n);

    (void)state;
    assert_int_equal(n, 3);
    assert_string_equal(m[0].component, "sk_cqrs");
    assert_int_equal(m[0].version, 1);
    assert_non_null(strstr(m[0].sql, "sk_idempotency"));
    assert_non_null(strstr(m[0].sql, "sk_checkpoints"));
    assert_string_equal(m[1].component, "sk_cqrs");
    assert_int_equal(m[1].version, 2);
    assert_non_null(strstr(m[1].sql, "sk_readmodels"));
    assert_int_equal(m[2].version, 3);
    assert_non_null(strstr(m[2].sql, "retiring_version"));
    assert_ptr_equal(sk_cqrs_migrations(NULL), m);
}

static void test_sk_idem_hash_known_vectors(void **state)
{
    char h[SK_IDEM_HASH_LEN];
    json_t *empty = json_object();
    json_t *doc = json_loads("{\"b\":[1,2],\"a\":{\"y\":\"z\",\"x\":null}}", 0, NULL);

    (void)state;
    assert_int_equal(sk_idem_hash(empty, h), SK_OK);
    assert_string_equal(h, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    /* sha256 of {"a":{"x":null,"y":"z"},"b":[1,2]} */
    assert_int_equal(sk_idem_hash(doc, h), SK_OK);
    assert_string_equal(h, "c9d95eebe5ab4e0b82c250603fd20fb764440603497d06553c2d51937ded2fd4");
    json_decref(empty);
    json_decref(doc);
}

static void test_sk_idem_hash_key_order_independent(void **state)
{
    char h1[SK_IDEM_HASH_LEN];
    char h2[SK_IDEM_HASH_LEN];
    char h3[SK_IDEM_HASH_LEN];
    json_t *a =
        json_loads("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"S\",\"quantity\":2}]}", 0, NULL);
    json_t *b = json_loads(
        "{ \"items\" : [ {\"quantity\":2, \"sku\":\"S\"} ], \"customer_id\":\"c\" }", 0, NULL);
    json_t *c =
        json_loads("{\"customer_id\":\"c\",\"items\":[{\"sku\":\"S\",\"quantity\":3}]}", 0, NULL);

    (void)state;
    assert_int_equal(sk_idem_hash(a, h1), SK_OK);
    assert_int_equal(sk_idem_hash(b, h2), SK_OK);
    assert_int_equal(sk_idem_hash(c, h3), SK_OK);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);
    assert_int_equal(strlen(h1), 64);
    for (size_t i = 0; i < 64; i++) {
        assert_true((h1[i] >= '0' && h1[i] <= '9') || (h1[i] >= 'a' && h1[i] <= 'f'));
    }
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_sk_idem_hash_null_args(void **state)
{
    char h[SK_IDEM_HASH_LEN] = "x";
    json_t *o = json_object();

    (void)state;
    SK_TEST_ASSERT_ERR(sk_idem_hash(NULL, h), SK_EINVAL, "payload");
    assert_string_equal(h, "");
    SK_TEST_ASSERT_ERR(sk_idem_hash(o, NULL), SK_EINVAL, "out");
    json_decref(o);
}

/* ---------------------------------------------------------------- database operations */

typedef enum op { OP_SAVE, OP_LOOKUP, OP_EXPIRE, OP_AGE } op;

typedef struct job {
    op op;
    const char *scope;
    const char *key;
    const char *hash;
    int http_status;
    const char *body;
    int64_t max_age_ms;
    bool use_null_tx;
    /* results */
    sk_status st;
    char message[512];
    int got_status;
    char *got_body;
} job;

static sk_status run_job(sk_tx *tx, void *ctx)
{
    job *j = ctx;
    sk_tx *t = j->use_null_tx ? NULL : tx;

    switch (j->op) {
    case OP_SAVE:
        j->st = sk_idem_save(t, j->scope, j->key, j->hash, j->http_status, j->body);
        break;
    case OP_LOOKUP:
        j->got_status = -1;
        j->got_body = (char *)"sentinel";
        j->st = sk_idem_lookup(t, j->scope, j->key, j->hash, &j->got_status, &j->got_body);
        break;
    case OP_EXPIRE:
        j->st = sk_idem_expire(t, j->max_age_ms);
        break;
    case OP_AGE: {
        /* Make every key of the scope look 2 days old. */
        const sk_db_value p[] = { SK_DB_INT_V(sk_time_now_ms() - 2 * 86400000LL),
                                  SK_DB_TEXT_V(j->scope) };
        j->st =
            sk_tx_exec(tx, "UPDATE sk_idempotency SET created_ms = ? WHERE scope = ?", p, 2, NULL);
        break;
    }
    }
    snprintf(j->message, sizeof(j->message), "%s", sk_error_message());
    return SK_OK; /* keep whatever succeeded; the test asserts on j->st */
}

static sk_status do_job(sk_store *store, job *j)
{
    assert_int_equal(sk_store_run(store, run_job, j), SK_OK);
    if (j->st != SK_OK) {
        /* Put the unit's message in this thread's slot for SK_TEST_ASSERT_ERR. */
        SK_IGNORE(SK_FAIL(j->st, "%s", j->message));
    }
    return j->st;
}

static sk_status read_job(sk_store *store, job *j)
{
    sk_status st = sk_store_read(store, run_job, j);

    assert_int_equal(st, SK_OK);
    return j->st;
}

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_sk_idem_save_and_lookup(void **state)
{
    sk_store *store = open_store();
    job j;

    (void)state;
    j = (job){ .op = OP_SAVE,
               .scope = "CreateOrder",
               .key = "key-1",
               .hash = HASH_A,
               .http_status = 202,
               .body = "{\"order_id\":\"o-1\"}" };
    assert_int_equal(do_job(store, &j), SK_OK);

    /* Same request: replay. */
    j = (job){ .op = OP_LOOKUP, .scope = "CreateOrder", .key = "key-1", .hash = HASH_A };
    assert_int_equal(do_job(store, &j), SK_OK);
    assert_int_equal(j.got_status, 202);
    assert_string_equal(j.got_body, "{\"order_id\":\"o-1\"}");
    sk_free(j.got_body);

    /* Also from a read snapshot. */
    j = (job){ .op = OP_LOOKUP, .scope = "CreateOrder", .key = "key-1", .hash = HASH_A };
    assert_int_equal(read_job(store, &j), SK_OK);
    assert_int_equal(j.got_status, 202);
    sk_free(j.got_body);

    /* Same key, another body: conflict, outputs cleared. */
    j = (job){ .op = OP_LOOKUP, .scope = "CreateOrder", .key = "key-1", .hash = HASH_B };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_ECONFLICT, "different request");
    assert_int_equal(j.got_status, 0);
    assert_null(j.got_body);

    /* Unknown key, and the same key in another scope. */
    j = (job){ .op = OP_LOOKUP, .scope = "CreateOrder", .key = "key-2", .hash = HASH_A };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_ENOTFOUND, "Idempotency-Key");
    assert_null(j.got_body);
    j = (job){ .op = OP_LOOKUP, .scope = "CancelOrder", .key = "key-1", .hash = HASH_A };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_ENOTFOUND, "Idempotency-Key");

    /* Saving twice. */
    j = (job){ .op = OP_SAVE,
               .scope = "CreateOrder",
               .key = "key-1",
               .hash = HASH_B,
               .http_status = 202,
               .body = "{}" };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EEXIST, "already recorded");

    /* A NULL body is kept as NULL. */
    j = (job){
        .op = OP_SAVE, .scope = "CreateOrder", .key = "key-3", .hash = HASH_B, .http_status = 204
    };
    assert_int_equal(do_job(store, &j), SK_OK);
    j = (job){ .op = OP_LOOKUP, .scope = "CreateOrder", .key = "key-3", .hash = HASH_B };
    assert_int_equal(do_job(store, &j), SK_OK);
    assert_int_equal(j.got_status, 204);
    assert_null(j.got_body);
    sk_store_close(store);
}

static void test_sk_idem_key_validation(void **state)
{
    sk_store *store = open_store();
    char long_key[300];
    job j;

    (void)state;
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    j = (job){ .op = OP_SAVE, .scope = "S", .key = long_key, .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EPROTO, "Idempotency-Key: expected at most 255");
    long_key[255] = '\0'; /* the maximum */
    j = (job){ .op = OP_SAVE, .scope = "S", .key = long_key, .hash = HASH_A, .http_status = 200 };
    assert_int_equal(do_job(store, &j), SK_OK);
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "", .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EPROTO, "Idempotency-Key");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = NULL, .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EPROTO, "Idempotency-Key");
    j = (job){ .op = OP_LOOKUP, .scope = "S", .key = "a\tb", .hash = HASH_A };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EPROTO, "0x09 at offset 1");
    j = (job){ .op = OP_LOOKUP, .scope = "S", .key = "caf\xc3\xa9", .hash = HASH_A };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EPROTO, "Idempotency-Key");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = HASH_A, .http_status = 200 };
    assert_int_equal(do_job(store, &j), SK_OK); /* 1 byte: the minimum */
    sk_store_close(store);
}

static void test_sk_idem_bad_args(void **state)
{
    sk_store *store = open_store();
    char long_scope[300];
    int status = 5;
    char *body = (char *)"x";
    job j;

    (void)state;
    memset(long_scope, 's', 256);
    long_scope[256] = '\0';
    j = (job){ .op = OP_SAVE,
               .scope = "S",
               .key = "k",
               .hash = HASH_A,
               .http_status = 200,
               .use_null_tx = true };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "tx");
    j = (job){ .op = OP_LOOKUP, .scope = "S", .key = "k", .hash = HASH_A, .use_null_tx = true };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "tx");
    j = (job){ .op = OP_EXPIRE, .max_age_ms = 1, .use_null_tx = true };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "tx");
    j = (job){ .op = OP_SAVE, .scope = NULL, .key = "k", .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "scope");
    j = (job){ .op = OP_SAVE, .scope = "", .key = "k", .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "scope");
    j = (job){ .op = OP_SAVE, .scope = long_scope, .key = "k", .hash = HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "scope");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = NULL, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "request_hash");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = "abc", .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "request_hash");
    j = (job){ .op = OP_LOOKUP,
               .scope = "S",
               .key = "k",
               .hash = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "lower-case hex");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = HASH_A HASH_A, .http_status = 200 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "request_hash");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = HASH_A, .http_status = 99 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "http_status");
    j = (job){ .op = OP_SAVE, .scope = "S", .key = "k", .hash = HASH_A, .http_status = 600 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "http_status");
    j = (job){ .op = OP_EXPIRE, .max_age_ms = -1 };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_EINVAL, "max_age_ms");
    /* NULL outputs of lookup. */
    SK_TEST_ASSERT_ERR(sk_idem_lookup(NULL, "S", "k", HASH_A, NULL, &body), SK_EINVAL,
                       "http_status");
    SK_TEST_ASSERT_ERR(sk_idem_lookup(NULL, "S", "k", HASH_A, &status, NULL), SK_EINVAL, "body");
    SK_TEST_ASSERT_ERR(sk_idem_lookup(NULL, "S", "k", HASH_A, &status, &body), SK_EINVAL, "tx");
    assert_int_equal(status, 0);
    assert_null(body);
    sk_store_close(store);
}

static void test_sk_idem_expire(void **state)
{
    sk_store *store = open_store();
    job j;

    (void)state;
    j = (job){
        .op = OP_SAVE, .scope = "Old", .key = "k", .hash = HASH_A, .http_status = 202, .body = "{}"
    };
    assert_int_equal(do_job(store, &j), SK_OK);
    j = (job){
        .op = OP_SAVE, .scope = "New", .key = "k", .hash = HASH_A, .http_status = 202, .body = "{}"
    };
    assert_int_equal(do_job(store, &j), SK_OK);
    j = (job){ .op = OP_AGE, .scope = "Old" };
    assert_int_equal(do_job(store, &j), SK_OK);

    j = (job){ .op = OP_EXPIRE, .max_age_ms = 24 * 3600 * 1000LL };
    assert_int_equal(do_job(store, &j), SK_OK);
    j = (job){ .op = OP_LOOKUP, .scope = "Old", .key = "k", .hash = HASH_A };
    SK_TEST_ASSERT_ERR(do_job(store, &j), SK_ENOTFOUND, "not seen");
    j = (job){ .op = OP_LOOKUP, .scope = "New", .key = "k", .hash = HASH_A };
    assert_int_equal(do_job(store, &j), SK_OK);
    sk_free(j.got_body);
    /* Expired keys can be used again. */
    j = (job){ .op = OP_SAVE, .scope = "Old", .key = "k", .hash = HASH_B, .http_status = 201 };
    assert_int_equal(do_job(store, &j), SK_OK);
    sk_store_close(store);
}

static void test_sk_idem_lookup_every_alloc_failure(void **state)
{
    sk_store *store = open_store();
    job j;

    (void)state;
    j = (job){ .op = OP_SAVE,
               .scope = "S",
               .key = "k",
               .hash = HASH_A,
               .http_status = 202,
               .body = "{\"a\":1}" };
    assert_int_equal(do_job(store, &j), SK_OK);
    for (long n = 0;; n++) {
        sk_status st;

        j = (job){ .op = OP_LOOKUP, .scope = "S", .key = "k", .hash = HASH_A };
        sk_test_fail_alloc_at(n);
        st = sk_store_read(store, run_job, &j);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK && j.st == SK_OK) {
            assert_string_equal(j.got_body, "{\"a\":1}");
            sk_free(j.got_body);
            break;
        }
        if (st == SK_OK) {
            assert_true(j.st == SK_ENOMEM || j.st == SK_EDB);
            assert_null(j.got_body);
        }
        assert_true(n < 1000);
    }
    sk_store_close(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_cqrs_migrations),
        cmocka_unit_test(test_sk_idem_hash_known_vectors),
        cmocka_unit_test(test_sk_idem_hash_key_order_independent),
        cmocka_unit_test(test_sk_idem_hash_null_args),
        cmocka_unit_test(test_sk_idem_save_and_lookup),
        cmocka_unit_test(test_sk_idem_key_validation),
        cmocka_unit_test(test_sk_idem_bad_args),
        cmocka_unit_test(test_sk_idem_expire),
        cmocka_unit_test(test_sk_idem_lookup_every_alloc_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
