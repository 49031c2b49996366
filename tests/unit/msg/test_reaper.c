/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/msg/reaper.c: settled messages are held until a batch
 * (by count or by bytes) is full, then destroyed together; flush and fini
 * destroy what is held, flush_stale only what was held long enough. Leaks (a message never
 * destroyed) fail the sanitizer build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

static natsMsg *make_msg(size_t data_len)
{
    static char data[SK__REAPER_MAX_BYTES];
    natsMsg *m = NULL;
    assert_true(data_len <= sizeof(data));
    assert_int_equal(natsMsg_Create(&m, "x.events.E", NULL, data, (int)data_len), NATS_OK);
    return m;
}

static void test_reaper_destroys_a_full_batch(void **state)
{
    sk__reaper r;
    (void)state;

    assert_int_equal(sk__reaper_init(&r), SK_OK);
    for (int i = 0; i < SK__REAPER_BATCH - 1; i++) {
        sk__reaper_add(&r, make_msg(10));
    }
    assert_int_equal(r.n, SK__REAPER_BATCH - 1);
    assert_int_equal(r.bytes, 10 * (SK__REAPER_BATCH - 1));
    sk__reaper_add(&r, make_msg(10));
    assert_int_equal(r.n, 0);
    assert_int_equal(r.bytes, 0);
    sk__reaper_add(&r, NULL); /* ignored */
    assert_int_equal(r.n, 0);
    sk__reaper_fini(&r);
}

static void test_reaper_destroys_at_the_byte_bound(void **state)
{
    sk__reaper r;
    (void)state;

    assert_int_equal(sk__reaper_init(&r), SK_OK);
    sk__reaper_add(&r, make_msg(SK__REAPER_MAX_BYTES / 2));
    assert_int_equal(r.n, 1);
    sk__reaper_add(&r, make_msg(SK__REAPER_MAX_BYTES / 2));
    assert_int_equal(r.n, 0); /* the two reached the bound */
    sk__reaper_add(&r, make_msg(SK__REAPER_MAX_BYTES));
    assert_int_equal(r.n, 0); /* one large message goes at once */
    sk__reaper_fini(&r);
}

static void test_reaper_flush_and_fini_destroy_what_is_held(void **state)
{
    sk__reaper r;
    sk__reaper never = { .has_mu = false };
    (void)state;

    assert_int_equal(sk__reaper_init(&r), SK_OK);
    sk__reaper_add(&r, make_msg(1));
    sk__reaper_add(&r, make_msg(1));
    sk__reaper_flush(&r);
    assert_int_equal(r.n, 0);
    sk__reaper_add(&r, make_msg(1));
    sk__reaper_fini(&r); /* destroys the one held */
    assert_false(r.has_mu);
    sk__reaper_fini(&r); /* twice is harmless */

    /* Never initialised: destroys at once; flush and fini do nothing. */
    sk__reaper_add(&never, make_msg(1));
    assert_int_equal(never.n, 0);
    sk__reaper_flush(&never);
    sk__reaper_fini(&never);
}

static void test_reaper_flush_stale_waits_for_the_first_messages_age(void **state)
{
    sk__reaper r;
    sk__reaper never = { .has_mu = false };
    (void)state;

    assert_int_equal(sk__reaper_init(&r), SK_OK);
    sk__reaper_flush_stale(&r); /* nothing held: nothing to do */
    sk__reaper_add(&r, make_msg(1));
    int64_t first = r.first_ms;
    sk__reaper_add(&r, make_msg(1));
    assert_int_equal(r.first_ms, first); /* the age is the first message's */
    sk__reaper_flush_stale(&r);
    assert_int_equal(r.n, 2); /* young: kept for a fuller batch */
    r.first_ms = sk_time_mono_ms() - SK__REAPER_MAX_AGE_MS / 2; /* held half the bound */
    sk__reaper_flush_stale(&r);
    assert_int_equal(r.n, 2);
    r.first_ms = sk_time_mono_ms() - SK__REAPER_MAX_AGE_MS;
    sk__reaper_flush_stale(&r);
    assert_int_equal(r.n, 0);
    assert_int_equal(r.bytes, 0);
    sk__reaper_add(&r, make_msg(1)); /* a new batch starts its own clock */
    assert_true(r.first_ms >= first);
    sk__reaper_fini(&r);

    sk__reaper_flush_stale(&never); /* never initialised: nothing to do */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reaper_destroys_a_full_batch),
        cmocka_unit_test(test_reaper_destroys_at_the_byte_bound),
        cmocka_unit_test(test_reaper_flush_and_fini_destroy_what_is_held),
        cmocka_unit_test(test_reaper_flush_stale_waits_for_the_first_messages_age),
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
