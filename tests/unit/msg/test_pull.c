/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/msg/pull.c without a server: the count of what is asked
 * for (messages go to the oldest open request, an end status closes a
 * request and every older one, overdue requests are dropped) and the
 * parsing of JetStream reply subjects. tests/integration/test_msg_consumer.c
 * runs the requests against a real nats-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "msg/msg_int.h"
#include "sk_test.h"

/* A pull with requests of @p sizes open, ids 1.., lost after 1000, 2000, ... ms. */
static void pull_with(sk__pull *p, const int *sizes, int n)
{
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < n; i++) {
        p->req[i] = (sk__pull_request){ .id = (uint64_t)i + 1,
                                        .left = sizes[i],
                                        .lost_after_ms = 1000 * ((int64_t)i + 1) };
        p->n_requested += sizes[i];
    }
    p->n_req = n;
    p->last_id = (uint64_t)n;
}

static void test_pull_messages_fill_the_oldest_request_first(void **state)
{
    const int sizes[] = { 2, 3 };
    sk__pull p;
    (void)state;

    pull_with(&p, sizes, 2);
    sk__pull_on_message(&p);
    assert_int_equal(p.n_requested, 4);
    assert_int_equal(p.req[0].left, 1);
    sk__pull_on_message(&p); /* request 1 is full: closed */
    assert_int_equal(p.n_req, 1);
    assert_int_equal(p.req[0].id, 2);
    assert_int_equal(p.req[0].left, 3);
    assert_int_equal(p.n_requested, 3);
    for (int i = 0; i < 3; i++) {
        sk__pull_on_message(&p);
    }
    assert_int_equal(p.n_req, 0);
    assert_int_equal(p.n_requested, 0);
    /* More than was asked for (a forgotten request's): counted against nothing. */
    sk__pull_on_message(&p);
    assert_int_equal(p.n_req, 0);
    assert_int_equal(p.n_requested, 0);
}

static void test_pull_end_closes_that_request_and_older_ones(void **state)
{
    const int sizes[] = { 5, 6, 7 };
    sk__pull p;
    (void)state;

    pull_with(&p, sizes, 3);
    sk__pull_on_end(&p, 2);
    assert_int_equal(p.n_req, 1);
    assert_int_equal(p.req[0].id, 3);
    assert_int_equal(p.n_requested, 7);
    /* An end for a request already closed changes nothing. */
    sk__pull_on_end(&p, 1);
    assert_int_equal(p.n_req, 1);
    assert_int_equal(p.n_requested, 7);
    sk__pull_on_end(&p, 3);
    assert_int_equal(p.n_req, 0);
    assert_int_equal(p.n_requested, 0);
}

static void test_pull_overdue_requests_are_dropped(void **state)
{
    const int sizes[] = { 5, 6, 7 };
    sk__pull p;
    (void)state;

    pull_with(&p, sizes, 3);
    assert_false(sk__pull_drop_lost(&p, 999));
    assert_int_equal(p.n_req, 3);
    assert_true(sk__pull_drop_lost(&p, 2000)); /* requests 1 and 2 */
    assert_int_equal(p.n_req, 1);
    assert_int_equal(p.req[0].id, 3);
    assert_int_equal(p.n_requested, 7);
    sk__pull_forget(&p);
    assert_int_equal(p.n_req, 0);
    assert_int_equal(p.n_requested, 0);
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

    const char *bad[] = {
        NULL,
        "",
        "_INBOX.abc.1",
        "$JS.ACK.ORDERS.order-saga.3.1042.1001.1764250000000000000", /* 8 tokens */
        "$JS.ACK.ORDERS.order-saga.x.1042.1001.1764250000000000000.17",
        "$JS.ACK.ORDERS.order-saga.3..1001.1764250000000000000.17",
        "$JS.ACK.ORDERS.order-saga.3.99999999999999999999.1.1.17", /* 20 digits */
        "$JS.ACK.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r",             /* too many tokens */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(sk__js_ack_parse(bad[i], &n_delivered, &seq));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_messages_fill_the_oldest_request_first),
        cmocka_unit_test(test_pull_end_closes_that_request_and_older_ones),
        cmocka_unit_test(test_pull_overdue_requests_are_dropped),
        cmocka_unit_test(test_pull_ack_subject_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
