/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/obs/health.c: adding checks, the exact JSON document for
 * passing and failing checks, reasons that need escaping or cleaning, buffer
 * limits, allocation failures and evaluation from several threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "obs/obs_int.h"
#include "sk_test.h"

/* ---------------------------------------------------------------- fake checks */

typedef struct fake_check {
    bool is_ok;
    const char *reason;     /* written when failing; NULL writes nothing */
    bool fill_unterminated; /* fill the whole buffer without a NUL */
    int n_calls;
} fake_check;

static bool fake_fn(char *reason, size_t reason_len, void *ctx)
{
    fake_check *f = ctx;

    f->n_calls++;
    assert_int_equal(reason_len, SK_HEALTH_REASON_LEN);
    assert_int_equal(reason[0], '\0');
    if (f->fill_unterminated) {
        memset(reason, 'r', reason_len);
        return f->is_ok;
    }
    if (!f->is_ok && f->reason != NULL) {
        snprintf(reason, reason_len, "%s", f->reason);
    }
    return f->is_ok;
}

static int setup(void **state)
{
    (void)state;
    sk_error_clear();
    sk_test_fail_alloc_at(-1);
    return 0;
}

static sk_health *new_health(void)
{
    sk_health *h = NULL;
    assert_int_equal(sk_health_create(&h), SK_OK);
    assert_non_null(h);
    return h;
}

static void assert_msg_contains(const char *needle)
{
    const char *msg = sk_error_message();
    if (strstr(msg, needle) == NULL) {
        fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
    }
}

/* Evaluate into a fresh buffer, check the answer and the exact text. */
static void assert_evaluate(sk_health *h, bool expect_ready, const char *expect_json)
{
    sk_buf b;

    sk_buf_init(&b, 1u << 16);
    assert_int_equal(sk_health_evaluate(h, &b), expect_ready);
    assert_non_null(b.data);
    assert_string_equal(b.data, expect_json);
    sk_buf_fini(&b);
}

/* ---------------------------------------------------------------- create / add */

static void test_sk_health_create_null_out(void **state)
{
    (void)state;
    assert_int_equal(sk_health_create(NULL), SK_EINVAL);
    assert_msg_contains("sk_health_create: out must not be NULL");
    sk_health_destroy(NULL);
}

static void test_sk_health_create_every_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        sk_health *h = (sk_health *)&n;
        sk_test_fail_alloc_at(n);
        sk_status st = sk_health_create(&h);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_health_destroy(h);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(h);
    }
}

static void test_sk_health_add_null_args(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = true };

    assert_int_equal(sk_health_add(NULL, "db", fake_fn, &f), SK_EINVAL);
    assert_msg_contains("sk_health_add: h must not be NULL");
    assert_int_equal(sk_health_add(h, NULL, fake_fn, &f), SK_EINVAL);
    assert_msg_contains("sk_health_add: name must not be NULL");
    assert_int_equal(sk_health_add(h, "db", NULL, &f), SK_EINVAL);
    assert_msg_contains("sk_health_add: fn must not be NULL");
    /* ctx may be NULL. */
    assert_int_equal(sk_health_add(h, "db", fake_fn, &f), SK_OK);
    sk_health_destroy(h);
}

static void test_sk_health_add_names(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = true };
    char name[SK_HEALTH_MAX_NAME + 2];

    assert_int_equal(sk_health_add(h, "", fake_fn, &f), SK_EINVAL);
    assert_msg_contains("name must be 1..64 bytes");
    assert_int_equal(sk_health_add(h, "a", fake_fn, &f), SK_OK);
    assert_int_equal(sk_health_add(h, "nats.js-0:Z_9", fake_fn, &f), SK_OK);
    memset(name, 'n', SK_HEALTH_MAX_NAME);
    name[SK_HEALTH_MAX_NAME] = '\0';
    assert_int_equal(sk_health_add(h, name, fake_fn, &f), SK_OK);
    memset(name, 'o', SK_HEALTH_MAX_NAME + 1);
    name[SK_HEALTH_MAX_NAME + 1] = '\0';
    assert_int_equal(sk_health_add(h, name, fake_fn, &f), SK_EINVAL);
    assert_msg_contains("name must be 1..64 bytes");
    assert_int_equal(sk_health_add(h, "a b", fake_fn, &f), SK_EINVAL);
    assert_msg_contains("got byte 0x20 at 1");
    assert_int_equal(sk_health_add(h, "q\"", fake_fn, &f), SK_EINVAL);
    assert_msg_contains("got byte 0x22 at 1");
    assert_int_equal(sk_health_add(h, "\xc3\xa9", fake_fn, &f), SK_EINVAL);
    assert_msg_contains("got byte 0xc3 at 0");
    sk_health_destroy(h);
}

static void test_sk_health_add_duplicate(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = true };

    assert_int_equal(sk_health_add(h, "db", fake_fn, &f), SK_OK);
    assert_int_equal(sk_health_add(h, "db", fake_fn, &f), SK_EEXIST);
    assert_msg_contains("check \"db\" is already registered");
    assert_evaluate(h, true, "{\"status\":\"ready\",\"checks\":{\"db\":{\"ok\":true}}}");
    assert_int_equal(f.n_calls, 1);
    sk_health_destroy(h);
}

static void test_sk_health_add_limit(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = true };
    char name[16];

    for (int i = 0; i < SK_HEALTH_MAX_CHECKS; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(sk_health_add(h, name, fake_fn, &f), SK_OK);
    }
    assert_int_equal(sk_health_add(h, "one_more", fake_fn, &f), SK_ELIMIT);
    assert_msg_contains("at most 64 checks");
    assert_true(sk_health_evaluate(h, NULL));
    assert_int_equal(f.n_calls, SK_HEALTH_MAX_CHECKS);
    sk_health_destroy(h);
}

static void test_sk_health_add_every_alloc_failure(void **state)
{
    (void)state;
    fake_check f = { .is_ok = true };

    for (long n = 0;; n++) {
        sk_health *h = new_health();
        sk_test_fail_alloc_at(n);
        sk_status st = sk_health_add(h, "db", fake_fn, &f);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            assert_evaluate(h, true, "{\"status\":\"ready\",\"checks\":{\"db\":{\"ok\":true}}}");
            sk_health_destroy(h);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_evaluate(h, true, "{\"status\":\"ready\",\"checks\":{}}");
        sk_health_destroy(h);
    }
}

/* ---------------------------------------------------------------- evaluate */

static void test_sk_health_evaluate_empty(void **state)
{
    (void)state;
    sk_health *h = new_health();
    assert_evaluate(h, true, "{\"status\":\"ready\",\"checks\":{}}");
    assert_true(sk_health_evaluate(h, NULL));
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_all_pass(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check db = { .is_ok = true };
    fake_check bus = { .is_ok = true };

    assert_int_equal(sk_health_add(h, "db", fake_fn, &db), SK_OK);
    assert_int_equal(sk_health_add(h, "bus", fake_fn, &bus), SK_OK);
    assert_evaluate(
        h, true, "{\"status\":\"ready\",\"checks\":{\"db\":{\"ok\":true},\"bus\":{\"ok\":true}}}");
    assert_int_equal(db.n_calls, 1);
    assert_int_equal(bus.n_calls, 1);
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_failing(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check db = { .is_ok = true };
    fake_check bus = { .is_ok = false, .reason = "nats: connection refused" };
    fake_check disk = { .is_ok = false }; /* no reason given */
    fake_check last = { .is_ok = true };

    assert_int_equal(sk_health_add(h, "db", fake_fn, &db), SK_OK);
    assert_int_equal(sk_health_add(h, "bus", fake_fn, &bus), SK_OK);
    assert_int_equal(sk_health_add(h, "disk", fake_fn, &disk), SK_OK);
    assert_int_equal(sk_health_add(h, "last", fake_fn, &last), SK_OK);
    assert_evaluate(h, false,
                    "{\"status\":\"not ready\",\"checks\":{"
                    "\"db\":{\"ok\":true},"
                    "\"bus\":{\"ok\":false,\"reason\":\"nats: connection refused\"},"
                    "\"disk\":{\"ok\":false,\"reason\":\"check failed\"},"
                    "\"last\":{\"ok\":true}}}");
    /* Every check ran, even after the first failure. */
    assert_int_equal(last.n_calls, 1);
    assert_false(sk_health_evaluate(h, NULL));
    assert_int_equal(last.n_calls, 2);

    /* Recovering flips the answer. */
    bus.is_ok = true;
    disk.is_ok = true;
    assert_true(sk_health_evaluate(h, NULL));
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_reason_escaping(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check quoted = { .is_ok = false, .reason = "say \"hi\"\\\n\tend" };
    fake_check bad_utf8 = { .is_ok = false, .reason = "caf\xc3\xa9 \xff\xfe end" };
    fake_check good_utf8 = { .is_ok = false, .reason = "caf\xc3\xa9" };

    assert_int_equal(sk_health_add(h, "q", fake_fn, &quoted), SK_OK);
    assert_int_equal(sk_health_add(h, "u", fake_fn, &bad_utf8), SK_OK);
    assert_int_equal(sk_health_add(h, "v", fake_fn, &good_utf8), SK_OK);
    assert_evaluate(h, false,
                    "{\"status\":\"not ready\",\"checks\":{"
                    "\"q\":{\"ok\":false,\"reason\":\"say \\\"hi\\\"\\\\\\n\\tend\"},"
                    "\"u\":{\"ok\":false,\"reason\":\"caf?? ?? end\"},"
                    "\"v\":{\"ok\":false,\"reason\":\"caf\xc3\xa9\"}}}");
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_unterminated_reason(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = false, .fill_unterminated = true };
    char expect[512];
    char rs[SK_HEALTH_REASON_LEN];

    memset(rs, 'r', sizeof(rs) - 1);
    rs[sizeof(rs) - 1] = '\0';
    snprintf(expect, sizeof(expect),
             "{\"status\":\"not ready\",\"checks\":{\"x\":{\"ok\":false,\"reason\":\"%s\"}}}", rs);
    assert_int_equal(sk_health_add(h, "x", fake_fn, &f), SK_OK);
    assert_evaluate(h, false, expect);
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_appends(void **state)
{
    (void)state;
    sk_health *h = new_health();
    sk_buf b;

    sk_buf_init(&b, 1024);
    assert_int_equal(sk_buf_append_str(&b, "pre:"), SK_OK);
    assert_true(sk_health_evaluate(h, &b));
    assert_string_equal(b.data, "pre:{\"status\":\"ready\",\"checks\":{}}");
    sk_buf_fini(&b);
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_buffer_limit(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check f = { .is_ok = true };
    sk_buf b;

    assert_int_equal(sk_health_add(h, "db", fake_fn, &f), SK_OK);
    sk_buf_init(&b, 20);
    assert_int_equal(sk_buf_append_str(&b, "keep"), SK_OK);
    /* The checks pass, but the answer cannot be written: not ready, buffer untouched. */
    assert_false(sk_health_evaluate(h, &b));
    assert_int_equal(sk_error_status(), SK_ELIMIT);
    assert_msg_contains("sk_health_evaluate: writing the health document");
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    assert_int_equal(f.n_calls, 1);
    sk_buf_fini(&b);
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_null_args(void **state)
{
    (void)state;
    sk_buf b;

    sk_buf_init(&b, 1024);
    assert_false(sk_health_evaluate(NULL, &b));
    assert_msg_contains("sk_health_evaluate: h must not be NULL");
    assert_int_equal(b.len, 0);
    assert_false(sk_health_evaluate(NULL, NULL));
    sk_buf_fini(&b);
}

static void test_sk_health_evaluate_every_alloc_failure(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check db = { .is_ok = true };
    fake_check bus = { .is_ok = false, .reason = "down" };
    const char *expect = "{\"status\":\"not ready\",\"checks\":{\"db\":{\"ok\":true},"
                         "\"bus\":{\"ok\":false,\"reason\":\"down\"}}}";

    assert_int_equal(sk_health_add(h, "db", fake_fn, &db), SK_OK);
    assert_int_equal(sk_health_add(h, "bus", fake_fn, &bus), SK_OK);
    for (long n = 0;; n++) {
        sk_buf b;
        sk_buf_init(&b, 1024);
        assert_int_equal(sk_buf_append_str(&b, "x"), SK_OK);
        sk_error_clear();
        sk_test_fail_alloc_at(n);
        bool is_ready = sk_health_evaluate(h, &b);
        sk_test_fail_alloc_at(-1);
        assert_false(is_ready); /* bus fails either way */
        if (sk_error_status() == SK_OK) {
            assert_string_equal(b.data + 1, expect);
            sk_buf_fini(&b);
            break;
        }
        assert_int_equal(sk_error_status(), SK_ENOMEM);
        assert_string_equal(b.data, "x");
        sk_buf_fini(&b);
    }
    sk_health_destroy(h);
}

static void test_sk_health_evaluate_all_pass_every_alloc_failure(void **state)
{
    (void)state;
    sk_health *h = new_health();
    fake_check db = { .is_ok = true };

    assert_int_equal(sk_health_add(h, "db", fake_fn, &db), SK_OK);
    for (long n = 0;; n++) {
        sk_buf b;
        sk_buf_init(&b, 1024);
        sk_test_fail_alloc_at(n);
        bool is_ready = sk_health_evaluate(h, &b);
        sk_test_fail_alloc_at(-1);
        if (is_ready) {
            assert_string_equal(b.data, "{\"status\":\"ready\",\"checks\":{\"db\":{\"ok\":true}}}");
            sk_buf_fini(&b);
            break;
        }
        /* Could not write the answer: not ready, nothing appended. */
        assert_int_equal(b.len, 0);
        sk_buf_fini(&b);
    }
    sk_health_destroy(h);
}

/* ---------------------------------------------------------------- threads */

static _Atomic int g_calls;

static bool counting_fn(char *reason, size_t reason_len, void *ctx)
{
    (void)reason;
    (void)reason_len;
    (void)ctx;
    g_calls++;
    return true;
}

static void *evaluator(void *arg)
{
    sk_health *h = arg;
    for (int i = 0; i < 200; i++) {
        sk_buf b;
        sk_buf_init(&b, 1u << 16);
        if (!sk_health_evaluate(h, &b)) {
            sk_buf_fini(&b);
            return (void *)1;
        }
        sk_buf_fini(&b);
    }
    return NULL;
}

static void test_sk_health_concurrent_evaluate_and_add(void **state)
{
    (void)state;
    sk_health *h = new_health();
    pthread_t t[2];
    char name[16];

    g_calls = 0;
    assert_int_equal(sk_health_add(h, "first", counting_fn, NULL), SK_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, evaluator, h), 0);
    }
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(sk_health_add(h, name, counting_fn, NULL), SK_OK);
    }
    for (int i = 0; i < 2; i++) {
        void *rv = (void *)2;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    assert_true(g_calls >= 400);
    sk_health_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sk_health_create_null_out, setup),
        cmocka_unit_test_setup(test_sk_health_create_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_health_add_null_args, setup),
        cmocka_unit_test_setup(test_sk_health_add_names, setup),
        cmocka_unit_test_setup(test_sk_health_add_duplicate, setup),
        cmocka_unit_test_setup(test_sk_health_add_limit, setup),
        cmocka_unit_test_setup(test_sk_health_add_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_empty, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_all_pass, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_failing, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_reason_escaping, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_unterminated_reason, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_appends, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_buffer_limit, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_null_args, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_health_evaluate_all_pass_every_alloc_failure, setup),
        cmocka_unit_test_setup(test_sk_health_concurrent_evaluate_and_add, setup),
    };
    return cmocka_run_group_tests_name("obs_health", tests, sk_test_group_setup,
                                       sk_test_group_teardown);
}
