/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/msg/pull.c without a server: the count of what the open
 * request may still deliver (a filled request ends without a status, an end
 * status closes only the open request, an overdue one is dropped and counted
 * as lost) and the parsing of JetStream reply subjects.
 * tests/integration/test_msg_consumer.c runs the requests against a real
 * nats-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

/* A pull whose request @p id is open for @p n messages, counted lost from 1000 ms. */
static void pull_with(sk__pull *p, uint64_t id, int n)
{
    memset(p, 0, sizeof(*p));
    p->last_id = id;
    p->n_requested = n;
    p->lost_after_ms = 1000;
}

static void test_pull_a_filled_request_ends(void **state)
{
    sk__pull p;
    (void)state;

    pull_with(&p, 7, 2);
    sk__pull_on_message(&p);
    assert_true(sk__pull_is_open(&p) && p.last_id == 7);
    assert_int_equal(p.n_requested, 1);
    sk__pull_on_message(&p);
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_requested, 0);
    /* A forgotten request's message: counted against nothing. */
    sk__pull_on_message(&p);
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_requested, 0);
}

static void test_pull_end_status_closes_only_the_open_request(void **state)
{
    sk__pull p;
    (void)state;

    pull_with(&p, 7, 5);
    assert_false(sk__pull_on_end(&p, 6)); /* one given up on earlier */
    assert_false(sk__pull_on_end(&p, 0)); /* not one of ours */
    assert_true(sk__pull_is_open(&p) && p.last_id == 7);
    assert_int_equal(p.n_requested, 5);
    assert_true(sk__pull_on_end(&p, 7));
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_requested, 0);
}

static void test_pull_overdue_request_is_lost(void **state)
{
    sk__pull p;
    (void)state;

    pull_with(&p, 7, 5);
    assert_false(sk__pull_drop_lost(&p, 999));
    assert_true(sk__pull_is_open(&p) && p.last_id == 7);
    assert_true(sk__pull_drop_lost(&p, 1000));
    assert_false(sk__pull_is_open(&p));
    assert_int_equal(p.n_requested, 0);
    assert_int_equal(p.n_lost_in_a_row, 1);
    assert_false(sk__pull_drop_lost(&p, 5000)); /* nothing open */
    pull_with(&p, 8, 5);
    p.n_lost_in_a_row = 1;
    assert_true(sk__pull_drop_lost(&p, 1000));
    assert_int_equal(p.n_lost_in_a_row, 2);
    /* Anything heard from the server resets the count. */
    sk__pull_on_message(&p);
    assert_int_equal(p.n_lost_in_a_row, 0);
    p.n_lost_in_a_row = 1;
    assert_false(sk__pull_on_end(&p, 3));
    assert_int_equal(p.n_lost_in_a_row, 0);
}

static void test_pull_ask_refuses_a_second_request(void **state)
{
    sk__pull p;
    (void)state;

    pull_with(&p, 7, 5);
    assert_int_equal(sk__pull_ask(&p, 10, 1000), SK_EINVAL);
    assert_non_null(strstr(sk_error_message(), "open"));
    sk__pull_forget(&p);
    assert_int_equal(sk__pull_ask(&p, 0, 1000), SK_EINVAL);
    assert_non_null(strstr(sk_error_message(), "batch"));
}

static void test_pull_ack_subject_parse(void **state)
{
    uint64_t n_delivered = 0, seq = 0;
    (void)state;

    assert_true(sk__js_ack_parse("$JS.ACK.ORDERS.order-saga.3.1042.1001.1764250000000000000.17",
                                 &n_delivered, &seq));
    assert_int_equal(n_delivered, 3);
    assert_int_equal(seq, 1042);
    /* With a domain and an account hash, and a random token at the end. */
    assert_true(
        sk__js_ack_parse("$JS.ACK.hub.ACCHASH.ORDERS.order-saga.1.7.5.1764250000000000000.0.x1y2",
                         &n_delivered, &seq));
    assert_int_equal(n_delivered, 1);
    assert_int_equal(seq, 7);
    /* Without the random token (11 tokens). */
    assert_true(sk__js_ack_parse("$JS.ACK.hub.ACCHASH.ORDERS.c.2.9.5.1764250000000000000.0",
                                 &n_delivered, &seq));
    assert_int_equal(n_delivered, 2);
    assert_int_equal(seq, 9);
    /* The largest 19-digit sequence fits. */
    assert_true(sk__js_ack_parse("$JS.ACK.S.C.1.9999999999999999999.1.1.0", &n_delivered, &seq));
    assert_true(seq == 9999999999999999999ULL);

    const char *bad[] = {
        NULL,
        "",
        "_INBOX.abc.1",
        "$JS.ACK.ORDERS.order-saga.3.1042.1001.1764250000000000000", /* 8 tokens */
        "$JS.ACK.ORDERS.order-saga.x.1042.1001.1764250000000000000.17",
        "$JS.ACK.ORDERS.order-saga.3..1001.1764250000000000000.17",
        "$JS.ACK.ORDERS.order-saga.3.99999999999999999999.1.1.17", /* 20 digits */
        "$JS.ACK.a.b.c.d.e.f.g.h",                                 /* 10 tokens */
        "$JS.ACK.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r",             /* too many tokens */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(sk__js_ack_parse(bad[i], &n_delivered, &seq));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_a_filled_request_ends),
        cmocka_unit_test(test_pull_end_status_closes_only_the_open_request),
        cmocka_unit_test(test_pull_overdue_request_is_lost),
        cmocka_unit_test(test_pull_ask_refuses_a_second_request),
        cmocka_unit_test(test_pull_ack_subject_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
