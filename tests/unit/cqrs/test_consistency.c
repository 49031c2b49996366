/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of src/cqrs/consistency.c: token encode/decode (round trips and
 * every malformed form) and waiters (immediate, notify from another thread,
 * timeout, cancellation, limits, and a race stress that checks exactly-once
 * completion), and waiters shared between processes through their slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cqrs/cqrs_int.h"
#include "sk_test.h"

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

/* ---------------------------------------------------------------- tokens */

static void round_trip(const char *id, int64_t version)
{
    char tok[SK_CTOKEN_MAX];
    char id_out[SK_CTOKEN_MAX];
    int64_t v = 0;

    assert_int_equal(sk_ctoken_encode(id, version, tok), SK_OK);
    assert_true(strlen(tok) < SK_CTOKEN_MAX);
    for (const char *p = tok; *p != '\0'; p++) {
        assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
    }
    assert_int_equal(sk_ctoken_decode(sk_slice_from_str(tok), id_out, sizeof(id_out), &v), SK_OK);
    assert_string_equal(id_out, id);
    assert_int_equal(v, version);
}

static void test_sk_ctoken_round_trip(void **state)
{
    char max_id[SK__CTOKEN_ID_MAX + 1];

    (void)state;
    round_trip("order-1", 3);
    round_trip("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 1);
    round_trip("a", 1);
    round_trip("A.b_c:d-e", 1234567890123LL);
    memset(max_id, 'z', SK__CTOKEN_ID_MAX);
    max_id[SK__CTOKEN_ID_MAX] = '\0';
    round_trip(max_id, SK__CTOKEN_VERSION_MAX); /* the longest token */
}

static void test_sk_ctoken_encode_known(void **state)
{
    char tok[SK_CTOKEN_MAX];

    (void)state;
    assert_int_equal(sk_ctoken_encode("order-1", 3, tok), SK_OK);
    assert_string_equal(tok, "djF8b3JkZXItMXwz"); /* base64url("v1|order-1|3") */
}

static void test_sk_ctoken_encode_errors(void **state)
{
    char tok[SK_CTOKEN_MAX];
    char long_id[SK__CTOKEN_ID_MAX + 2];

    (void)state;
    memset(long_id, 'a', SK__CTOKEN_ID_MAX + 1);
    long_id[SK__CTOKEN_ID_MAX + 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("o", 1, NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode(NULL, 1, tok), SK_EINVAL, "id");
    assert_string_equal(tok, "");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("", 1, tok), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode(long_id, 1, tok), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("a|b", 1, tok), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("a b", 1, tok), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("o", 0, tok), SK_EINVAL, "version");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("o", -5, tok), SK_EINVAL, "version");
    SK_TEST_ASSERT_ERR(sk_ctoken_encode("o", SK__CTOKEN_VERSION_MAX + 1, tok), SK_EINVAL,
                       "version");
}

static void expect_malformed(sk_slice s)
{
    char id[SK_CTOKEN_MAX] = "x";
    int64_t v = 42;

    SK_TEST_ASSERT_ERR(sk_ctoken_decode(s, id, sizeof(id), &v), SK_EPROTO,
                       "consistency token: malformed");
    assert_int_equal(v, 0);
    assert_string_equal(id, "");
}

static void expect_malformed_str(const char *s)
{
    expect_malformed(sk_slice_from_str(s));
}

static void test_sk_ctoken_decode_malformed(void **state)
{
    static char huge[5001];
    const uint8_t with_nul[] = { 'd', 'j', 'F', '8', 0,   '3', 'J', 'k',
                                 'Z', 'X', 'I', 't', 'M', 'X', 'w', 'z' };

    (void)state;
    expect_malformed_str("");                                   /* empty */
    expect_malformed_str("djF8b3JkZXItMXwz=");                  /* padding */
    expect_malformed_str("djF8b3JkZX+tMXwz");                   /* standard base64 alphabet */
    expect_malformed_str("djF8b3JkZXItMXw!");                   /* not base64 at all */
    expect_malformed_str("djF8b");                              /* impossible length */
    expect_malformed_str("djJ8b3JkZXItMXwz");                   /* v2|order-1|3: wrong prefix */
    expect_malformed_str("b3JkZXI");                            /* "order": no prefix */
    expect_malformed_str("djF8b3JkZXIgMXwz");                   /* v1|order 1|3: bad id char */
    expect_malformed_str("djF8fDM");                            /* v1||3: empty id */
    expect_malformed_str("djF8b3w");                            /* v1|o|: no version */
    expect_malformed_str("djF8bw");                             /* v1|o: no separator */
    expect_malformed_str("djF8b3wtMQ");                         /* v1|o|-1: negative */
    expect_malformed_str("djF8b3ww");                           /* v1|o|0: zero */
    expect_malformed_str("djF8b3wwMQ");                         /* v1|o|01: leading zero */
    expect_malformed_str("djF8b3wrMw");                         /* v1|o|+3 */
    expect_malformed_str("djF8b3wxZTM");                        /* v1|o|1e3 */
    expect_malformed_str("djF8b3wzfDQ");                        /* v1|o|3|4 */
    expect_malformed_str("djF8b3w5MDA3MTk5MjU0NzQwOTkz");       /* 2^53 + 1 */
    expect_malformed_str("djF8b3w5OTk5OTk5OTk5OTk5OTk5OTk5OQ"); /* 20 digits: overflow */
    memset(huge, 'A', sizeof(huge) - 1);
    expect_malformed(sk_slice_from_str(huge));                  /* 5,000 characters */
    expect_malformed((sk_slice){ with_nul, sizeof(with_nul) }); /* embedded NUL */
}

static void test_sk_ctoken_decode_max_version_and_slice(void **state)
{
    char id[SK_CTOKEN_MAX];
    int64_t v = 0;
    const char text[] = "djF8b3w5MDA3MTk5MjU0NzQwOTky#trailing"; /* v1|o|2^53 then junk */

    (void)state;
    /* Only len bytes are read: the slice need not end with a NUL. */
    assert_int_equal(sk_ctoken_decode((sk_slice){ (const uint8_t *)text, 28 }, id, sizeof(id), &v),
                     SK_OK);
    assert_string_equal(id, "o");
    assert_int_equal(v, SK__CTOKEN_VERSION_MAX);
}

static void test_sk_ctoken_decode_bad_args(void **state)
{
    char id[SK_CTOKEN_MAX];
    char small[4];
    int64_t v = 0;
    sk_slice tok = sk_slice_from_str("djF8b3JkZXItMXwz"); /* order-1 */

    (void)state;
    SK_TEST_ASSERT_ERR(sk_ctoken_decode(tok, NULL, sizeof(id), &v), SK_EINVAL, "id_out");
    SK_TEST_ASSERT_ERR(sk_ctoken_decode(tok, id, sizeof(id), NULL), SK_EINVAL, "version");
    SK_TEST_ASSERT_ERR(sk_ctoken_decode((sk_slice){ NULL, 3 }, id, sizeof(id), &v), SK_EINVAL,
                       "ptr");
    SK_TEST_ASSERT_ERR(sk_ctoken_decode(tok, small, sizeof(small), &v), SK_EINVAL, "too small");
    assert_int_equal(v, 0);
    assert_int_equal(sk_ctoken_decode(tok, id, 8, &v), SK_OK); /* exactly id + NUL */
    assert_string_equal(id, "order-1");
}

/* ---------------------------------------------------------------- waiters */

typedef struct wres {
    atomic_int n_calls;
    atomic_int st;
} wres;

static void wres_init(wres *r)
{
    atomic_init(&r->n_calls, 0);
    atomic_init(&r->st, -1);
}

static void on_wait(sk_status st, void *ctx)
{
    wres *r = ctx;
    atomic_store(&r->st, (int)st);
    atomic_fetch_add(&r->n_calls, 1);
}

static bool wres_called(void *ctx)
{
    return atomic_load(&((wres *)ctx)->n_calls) > 0;
}

typedef struct vclock {
    atomic_llong version;
} vclock;

static int64_t current_version(const char *id, void *ctx)
{
    (void)id;
    return atomic_load(&((vclock *)ctx)->version);
}

static sk_waiters *new_waiters(void)
{
    sk_waiters *w = NULL;
    assert_int_equal(sk_waiters_create(&w), SK_OK);
    assert_non_null(w);
    return w;
}

static void test_sk_waiters_satisfied_immediately(void **state)
{
    sk_waiters *w = new_waiters();
    vclock vc;
    wres r;

    (void)state;
    atomic_init(&vc.version, 5);
    wres_init(&r);
    assert_int_equal(sk_waiters_add(w, "order-1", 5, 2000, current_version, &vc, on_wait, &r),
                     SK_OK);
    assert_int_equal(atomic_load(&r.n_calls), 1); /* before add returned */
    assert_int_equal(atomic_load(&r.st), SK_OK);
    assert_int_equal(sk__waiters_pending(w), 0);
    sk_waiters_destroy(w);
    assert_int_equal(atomic_load(&r.n_calls), 1);
}

typedef struct notifier {
    sk_waiters *w;
    vclock *vc;
} notifier;

static void *notify_main(void *arg)
{
    notifier *n = arg;

    atomic_store(&n->vc->version, 4);
    sk_waiters_notify(n->w, "order-1", 4); /* not enough */
    sk_waiters_notify(n->w, "order-2", 9); /* another aggregate */
    atomic_store(&n->vc->version, 7);
    sk_waiters_notify(n->w, "order-1", 7);
    return NULL;
}

static void test_sk_waiters_satisfied_by_notify_from_thread(void **state)
{
    sk_waiters *w = new_waiters();
    vclock vc;
    wres r6, r8;
    notifier n = { .w = w, .vc = &vc };
    pthread_t t;

    (void)state;
    atomic_init(&vc.version, 0);
    wres_init(&r6);
    wres_init(&r8);
    assert_int_equal(sk_waiters_add(w, "order-1", 6, 10000, current_version, &vc, on_wait, &r6),
                     SK_OK);
    assert_int_equal(sk_waiters_add(w, "order-1", 8, 10000, current_version, &vc, on_wait, &r8),
                     SK_OK);
    assert_int_equal(sk__waiters_pending(w), 2);
    assert_int_equal(pthread_create(&t, NULL, notify_main, &n), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(sk_test_wait_until(wres_called, &r6, 5000));
    assert_int_equal(atomic_load(&r6.st), SK_OK);
    assert_int_equal(atomic_load(&r6.n_calls), 1);
    assert_int_equal(atomic_load(&r8.n_calls), 0); /* version 8 not visible yet */
    assert_int_equal(sk__waiters_pending(w), 1);
    sk_waiters_notify(w, "order-1", 8);
    assert_int_equal(atomic_load(&r8.n_calls), 1);
    assert_int_equal(atomic_load(&r8.st), SK_OK);
    /* Notifying again, or an unknown or invalid id, does nothing. */
    sk_waiters_notify(w, "order-1", 100);
    sk_waiters_notify(w, "nobody", 1);
    sk_waiters_notify(w, "bad id", 1);
    sk_waiters_notify(w, NULL, 1);
    sk_waiters_notify(NULL, "order-1", 1);
    assert_int_equal(atomic_load(&r6.n_calls), 1);
    assert_int_equal(atomic_load(&r8.n_calls), 1);
    sk_waiters_destroy(w);
}

static void test_sk_waiters_timeout(void **state)
{
    sk_waiters *w = new_waiters();
    wres r_short, r_zero, r_long;
    int64_t start = sk_time_mono_ms();

    (void)state;
    wres_init(&r_short);
    wres_init(&r_zero);
    wres_init(&r_long);
    /* Added in an order that makes the timer re-arm for an earlier deadline. */
    assert_int_equal(sk_waiters_add(w, "o-long", 1, 60000, NULL, NULL, on_wait, &r_long), SK_OK);
    assert_int_equal(sk_waiters_add(w, "o-short", 1, 30, NULL, NULL, on_wait, &r_short), SK_OK);
    assert_int_equal(sk_waiters_add(w, "o-zero", 1, 0, NULL, NULL, on_wait, &r_zero), SK_OK);
    assert_true(sk_test_wait_until(wres_called, &r_zero, 5000));
    assert_true(sk_test_wait_until(wres_called, &r_short, 5000));
    assert_true(sk_time_mono_ms() - start >= 30);
    assert_int_equal(atomic_load(&r_short.st), SK_ETIMEDOUT);
    assert_int_equal(atomic_load(&r_zero.st), SK_ETIMEDOUT);
    assert_int_equal(atomic_load(&r_long.n_calls), 0);
    sk_waiters_notify(w, "o-short", 10); /* already timed out: no second call */
    assert_int_equal(atomic_load(&r_short.n_calls), 1);
    sk_waiters_destroy(w);
    assert_int_equal(atomic_load(&r_long.n_calls), 1);
    assert_int_equal(atomic_load(&r_long.st), SK_ECANCELED);
}

static void test_sk_waiters_destroy_cancels(void **state)
{
    sk_waiters *w = new_waiters();
    wres r[5];

    (void)state;
    for (int i = 0; i < 5; i++) {
        char id[16];
        wres_init(&r[i]);
        snprintf(id, sizeof(id), "o-%d", i % 2);
        assert_int_equal(sk_waiters_add(w, id, 1 + i, 60000, NULL, NULL, on_wait, &r[i]), SK_OK);
    }
    sk_waiters_destroy(w);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(atomic_load(&r[i].n_calls), 1);
        assert_int_equal(atomic_load(&r[i].st), SK_ECANCELED);
    }
    sk_waiters_destroy(NULL);
}

static void test_sk_waiters_bad_args(void **state)
{
    sk_waiters *w = new_waiters();
    char long_id[SK__CTOKEN_ID_MAX + 2];
    wres r;

    (void)state;
    wres_init(&r);
    memset(long_id, 'i', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    SK_TEST_ASSERT_ERR(sk_waiters_create(NULL), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_waiters_add(NULL, "o", 1, 10, NULL, NULL, on_wait, &r), SK_EINVAL, "w");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "o", 1, 10, NULL, NULL, NULL, &r), SK_EINVAL, "fn");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, NULL, 1, 10, NULL, NULL, on_wait, &r), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "", 1, 10, NULL, NULL, on_wait, &r), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "a/b", 1, 10, NULL, NULL, on_wait, &r), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, long_id, 1, 10, NULL, NULL, on_wait, &r), SK_EINVAL, "id");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "o", 0, 10, NULL, NULL, on_wait, &r), SK_EINVAL,
                       "version");
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "o", 1, -1, NULL, NULL, on_wait, &r), SK_EINVAL,
                       "timeout_ms");
    SK_TEST_ASSERT_ERR(
        sk_waiters_add(w, "o", 1, SK_WAITERS_MAX_TIMEOUT_MS + 1, NULL, NULL, on_wait, &r),
        SK_EINVAL, "timeout_ms");
    assert_int_equal(atomic_load(&r.n_calls), 0);
    assert_int_equal(sk__waiters_pending(w), 0);
    sk_waiters_destroy(w);
    assert_int_equal(atomic_load(&r.n_calls), 0);
}

static void count_call(sk_status st, void *ctx)
{
    (void)st;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

static void test_sk_waiters_limit_and_many_ids(void **state)
{
    sk_waiters *w = new_waiters();
    atomic_int n_calls;
    wres r;

    (void)state;
    atomic_init(&n_calls, 0);
    wres_init(&r);
    for (int i = 0; i < SK_WAITERS_MAX; i++) {
        char id[32];
        snprintf(id, sizeof(id), "order-%d", i % 5000); /* many ids: the map grows */
        assert_int_equal(
            sk_waiters_add(w, id, 1 + i / 5000, 600000, NULL, NULL, count_call, &n_calls), SK_OK);
    }
    SK_TEST_ASSERT_ERR(sk_waiters_add(w, "one-more", 1, 1000, NULL, NULL, on_wait, &r), SK_ELIMIT,
                       "pending");
    /* Waiters of order-7 were added with versions 1..14: version 3 releases 3 of them. */
    sk_waiters_notify(w, "order-7", 3);
    assert_int_equal(atomic_load(&n_calls), 3);
    assert_int_equal(sk__waiters_pending(w), SK_WAITERS_MAX - 3);
    sk_waiters_destroy(w);
    assert_int_equal(atomic_load(&n_calls), SK_WAITERS_MAX);
    assert_int_equal(atomic_load(&r.n_calls), 0);
}

/* A callback that re-enters the waiters: must not deadlock (callbacks run without the lock). */
typedef struct reenter {
    sk_waiters *w;
    wres inner;
    atomic_int n_calls;
} reenter;

static void on_reenter(sk_status st, void *ctx)
{
    reenter *re = ctx;

    assert_int_equal(st, SK_OK);
    atomic_fetch_add(&re->n_calls, 1);
    assert_int_equal(sk_waiters_add(re->w, "inner", 1, 60000, NULL, NULL, on_wait, &re->inner),
                     SK_OK);
    sk_waiters_notify(re->w, "inner", 1);
}

static void test_sk_waiters_callback_reenters(void **state)
{
    reenter re;

    (void)state;
    re.w = new_waiters();
    wres_init(&re.inner);
    atomic_init(&re.n_calls, 0);
    assert_int_equal(sk_waiters_add(re.w, "outer", 2, 60000, NULL, NULL, on_reenter, &re), SK_OK);
    sk_waiters_notify(re.w, "outer", 2);
    assert_int_equal(atomic_load(&re.n_calls), 1);
    assert_int_equal(atomic_load(&re.inner.n_calls), 1);
    assert_int_equal(atomic_load(&re.inner.st), SK_OK);
    sk_waiters_destroy(re.w);
}

static void test_sk_waiters_add_every_alloc_failure(void **state)
{
    sk_waiters *w = new_waiters();

    (void)state;
    for (long n = 0;; n++) {
        wres r;
        sk_status st;

        wres_init(&r);
        sk_test_fail_alloc_at(n);
        st = sk_waiters_add(w, "fresh-id", 1, 60000, NULL, NULL, on_wait, &r);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_waiters_notify(w, "fresh-id", 1);
            assert_int_equal(atomic_load(&r.n_calls), 1);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_int_equal(atomic_load(&r.n_calls), 0);
        assert_int_equal(sk__waiters_pending(w), 0);
        assert_true(n < 100);
    }
    sk_waiters_destroy(w);

    for (long n = 0;; n++) {
        sk_waiters *w2 = NULL;
        sk_status st;

        sk_test_fail_alloc_at(n);
        st = sk_waiters_create(&w2);
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_waiters_destroy(w2);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(w2);
        assert_true(n < 100);
    }
}

/* ---------------------------------------------------------------- race stress */

#define RACE_ADDERS    4
#define RACE_PER_ADDER 250
#define RACE_IDS       8

typedef struct race {
    sk_waiters *w;
    atomic_llong versions[RACE_IDS];
    wres results[RACE_ADDERS * RACE_PER_ADDER];
    atomic_bool is_adding_done;
} race;

typedef struct race_arg {
    race *r;
    int adder;
} race_arg;

static int64_t race_current(const char *id, void *ctx)
{
    race *r = ctx;
    int k = id[1] - '0';
    return atomic_load(&r->versions[k]);
}

static void *race_adder(void *arg)
{
    race_arg *a = arg;
    race *r = a->r;

    for (int i = 0; i < RACE_PER_ADDER; i++) {
        int idx = a->adder * RACE_PER_ADDER + i;
        int k = idx % RACE_IDS;
        char id[4] = { 'r', (char)('0' + k), '\0', '\0' };
        /* Wait for the next version: usually not visible yet, sometimes just published. */
        int64_t want = atomic_load(&r->versions[k]) + 1;
        assert_int_equal(
            sk_waiters_add(r->w, id, want, 60000, race_current, r, on_wait, &r->results[idx]),
            SK_OK);
    }
    return NULL;
}

static void *race_notifier(void *arg)
{
    race *r = arg;
    int round = 0;

    /* Publish versions as a writer would: make visible, then notify. */
    while (!atomic_load(&r->is_adding_done) || round < 50) {
        int k = round % RACE_IDS;
        char id[4] = { 'r', (char)('0' + k), '\0', '\0' };
        int64_t v = atomic_fetch_add(&r->versions[k], 1) + 1;
        sk_waiters_notify(r->w, id, v);
        round++;
    }
    return NULL;
}

static bool race_all_called(void *ctx)
{
    race *r = ctx;
    for (int i = 0; i < RACE_ADDERS * RACE_PER_ADDER; i++) {
        if (atomic_load(&r->results[i].n_calls) == 0) {
            return false;
        }
    }
    return true;
}

static void test_sk_waiters_race_exactly_once(void **state)
{
    static race r;
    race_arg args[RACE_ADDERS];
    pthread_t adders[RACE_ADDERS];
    pthread_t notifier_thread;

    (void)state;
    r.w = new_waiters();
    atomic_init(&r.is_adding_done, false);
    for (int k = 0; k < RACE_IDS; k++) {
        atomic_init(&r.versions[k], 0);
    }
    for (int i = 0; i < RACE_ADDERS * RACE_PER_ADDER; i++) {
        wres_init(&r.results[i]);
    }
    assert_int_equal(pthread_create(&notifier_thread, NULL, race_notifier, &r), 0);
    for (int i = 0; i < RACE_ADDERS; i++) {
        args[i] = (race_arg){ .r = &r, .adder = i };
        assert_int_equal(pthread_create(&adders[i], NULL, race_adder, &args[i]), 0);
    }
    for (int i = 0; i < RACE_ADDERS; i++) {
        assert_int_equal(pthread_join(adders[i], NULL), 0);
    }
    atomic_store(&r.is_adding_done, true);
    assert_int_equal(pthread_join(notifier_thread, NULL), 0);
    /* Every waiter asked for at most (version when added) + 1; release any stragglers. */
    for (int k = 0; k < RACE_IDS; k++) {
        char id[4] = { 'r', (char)('0' + k), '\0', '\0' };
        int64_t v = atomic_fetch_add(&r.versions[k], 1) + 1;
        sk_waiters_notify(r.w, id, v);
    }
    assert_true(sk_test_wait_until(race_all_called, &r, 10000));
    sk_waiters_destroy(r.w);
    for (int i = 0; i < RACE_ADDERS * RACE_PER_ADDER; i++) {
        assert_int_equal(atomic_load(&r.results[i].n_calls), 1);
        assert_int_equal(atomic_load(&r.results[i].st), SK_OK);
    }
}

/*
 * The query a waiter answers owns the id (the service borrows it from the
 * request), and another thread may complete the waiter, freeing the query,
 * while sk_waiters_add is still checking the current version. Here the
 * version check itself notifies (as a commit on another thread would at
 * that moment) and then reads the id it was given: that must not be the
 * caller's, which the callback freed (AddressSanitizer would say so).
 */
typedef struct owned_query {
    sk_waiters *w;
    char *id; /* freed by the callback */
    int n_calls;
} owned_query;

static void on_wait_free_id(sk_status st, void *ctx)
{
    owned_query *q = ctx;
    assert_int_equal(st, SK_OK);
    sk_free(q->id);
    q->id = NULL;
    q->n_calls++;
}

static int64_t version_after_commit(const char *id, void *ctx)
{
    owned_query *q = ctx;
    sk_waiters_notify(q->w, id, 3); /* completes the waiter: q->id is freed */
    assert_string_equal(id, "order-9");
    return 3;
}

static void test_sk_waiters_add_id_outlives_the_query(void **state)
{
    owned_query q = { .w = new_waiters(), .id = sk_malloc(8), .n_calls = 0 };

    (void)state;
    assert_non_null(q.id);
    memcpy(q.id, "order-9", 8);
    assert_int_equal(
        sk_waiters_add(q.w, q.id, 3, 2000, version_after_commit, &q, on_wait_free_id, &q), SK_OK);
    assert_int_equal(q.n_calls, 1);
    assert_null(q.id);
    assert_int_equal(sk__waiters_pending(q.w), 0);
    sk_waiters_destroy(q.w);
}

/* Send @p text to every slot of @p key, as any process on the machine could. */
static void send_to_every_slot(const char *key, const char *text, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    for (int i = 0; i < SK__WAITERS_SHARE_SLOTS; i++) {
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int n = sk__waiters_share_name(key, i, addr.sun_path + 1, sizeof(addr.sun_path) - 1);
        SK_IGNORE(sendto(fd, text, len, MSG_DONTWAIT, (const struct sockaddr *)&addr,
                         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)));
    }
    close(fd);
}

/* A database file the sharing waiters have in common (as the instances of a service do). */
typedef struct shared_db {
    char dir[64];
    sk_store *store;
    char *key; /* what sk_waiters_share derives from it for "test" */
} shared_db;

static void shared_db_open(shared_db *db)
{
    char url[128];

    assert_int_equal(sk_test_tmpdir(db->dir, sizeof(db->dir)), SK_OK);
    snprintf(url, sizeof(url), "sqlite:%s/w.db", db->dir);
    sk_store_config cfg = { .url = url };
    assert_int_equal(sk_store_open(&db->store, &cfg), SK_OK);
    assert_int_equal(sk_store_lock_path(db->store, "waiters-test", &db->key), SK_OK);
    assert_non_null(db->key);
}

static void shared_db_close(shared_db *db)
{
    sk_free(db->key);
    sk_store_close(db->store);
    sk_test_rmrf(db->dir);
}

/* Waiters of two processes (here two sk_waiters) sharing a key: a notify in one completes the
 * other's. */
static void test_sk_waiters_shared_between_peers(void **state)
{
    sk_waiters *a = new_waiters(), *b = new_waiters();
    sk_waiters *more[SK__WAITERS_SHARE_SLOTS - 1] = { NULL };
    shared_db db;
    char tok[SK_CTOKEN_MAX];
    vclock vc;
    wres r, r5;

    (void)state;
    shared_db_open(&db);
    const char *key = db.key;
    assert_int_equal(sk_waiters_share(a, db.store, "test"), SK_OK);
    assert_int_equal(sk_waiters_share(b, db.store, "test"), SK_OK);
    SK_TEST_ASSERT_ERR(sk_waiters_share(b, db.store, "test"), SK_ESTATE, "already shared");
    SK_TEST_ASSERT_ERR(sk_waiters_share(NULL, db.store, "test"), SK_EINVAL, "w must not be NULL");
    SK_TEST_ASSERT_ERR(sk_waiters_share(a, NULL, "test"), SK_EINVAL, "store must not be NULL");
    SK_TEST_ASSERT_ERR(sk_waiters_share(a, db.store, ""), SK_EINVAL, "name must be");
    /* A database in memory has nobody to share with: nothing happens, so nothing is "already"
     * shared. */
    sk_waiters *alone = new_waiters();
    sk_store *mem = NULL;
    sk_store_config mem_cfg = { .url = "sqlite::memory:" };
    assert_int_equal(sk_store_open(&mem, &mem_cfg), SK_OK);
    assert_int_equal(sk_waiters_share(alone, mem, "test"), SK_OK);
    assert_int_equal(sk_waiters_share(alone, mem, "test"), SK_OK);
    sk_waiters_destroy(alone);
    sk_store_close(mem);

    wres_init(&r);
    wres_init(&r5);
    atomic_init(&vc.version, 0);
    assert_int_equal(sk_waiters_add(b, "order-1", 3, 10000, NULL, NULL, on_wait, &r), SK_OK);
    /* With a version function, a peer's notify completes the wait only once it agrees. */
    assert_int_equal(sk_waiters_add(b, "order-5", 4, 10000, current_version, &vc, on_wait, &r5),
                     SK_OK);
    assert_int_equal(sk_ctoken_encode("order-5", 9, tok), SK_OK);
    send_to_every_slot(key, tok, strlen(tok));
    /* Anything on the machine may write to the slots: none of this completes the waiter. */
    send_to_every_slot(key, "", 0);
    send_to_every_slot(key, "junk", 4);
    assert_int_equal(sk_ctoken_encode("order-2", 9, tok), SK_OK);
    send_to_every_slot(key, tok, strlen(tok));
    sk_waiters_notify(a, "order-1", 2);
    assert_int_equal(sk_ctoken_encode("order-1", 2, tok), SK_OK);
    send_to_every_slot(key, tok, strlen(tok));
    nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 }, NULL);
    assert_int_equal(atomic_load(&r.n_calls), 0);
    assert_int_equal(atomic_load(&r5.n_calls), 0);
    assert_int_equal(sk__waiters_pending(b), 2);

    sk_waiters_notify(a, "order-1", 3);
    assert_true(sk_test_wait_until(wres_called, &r, 5000));
    assert_int_equal(atomic_load(&r.st), SK_OK);
    atomic_store(&vc.version, 4);
    sk_waiters_notify(a, "order-5", 4);
    assert_true(sk_test_wait_until(wres_called, &r5, 5000));
    assert_int_equal(atomic_load(&r5.st), SK_OK);
    assert_int_equal(sk__waiters_pending(b), 0);

    /* Eight processes share a key at most. */
    for (size_t i = 0; i < SK__WAITERS_SHARE_SLOTS - 2; i++) {
        more[i] = new_waiters();
        assert_int_equal(sk_waiters_share(more[i], db.store, "test"), SK_OK);
    }
    more[SK__WAITERS_SHARE_SLOTS - 2] = new_waiters();
    SK_TEST_ASSERT_ERR(sk_waiters_share(more[SK__WAITERS_SHARE_SLOTS - 2], db.store, "test"),
                       SK_ELIMIT, "slots");
    for (size_t i = 0; i < SK__WAITERS_SHARE_SLOTS - 1; i++) {
        sk_waiters_destroy(more[i]);
    }
    sk_waiters_destroy(b);
    /* A peer gone: sending to it fails, and the notify still completes this process's waiters. */
    wres_init(&r);
    assert_int_equal(sk_waiters_add(a, "order-1", 4, 10000, NULL, NULL, on_wait, &r), SK_OK);
    sk_waiters_notify(a, "order-1", 4);
    assert_true(sk_test_wait_until(wres_called, &r, 5000));
    assert_int_equal(atomic_load(&r.st), SK_OK);
    sk_waiters_destroy(a);
    shared_db_close(&db);
}

typedef struct counted {
    atomic_int n_ok;
} counted;

static void on_counted(sk_status st, void *ctx)
{
    counted *c = ctx;
    if (st == SK_OK) {
        atomic_fetch_add(&c->n_ok, 1);
    }
}

static bool all_counted(void *ctx)
{
    return atomic_load(&((counted *)ctx)->n_ok) == 300;
}

/*
 * A burst of notifies (one group commit's after-commit hooks) reaches the
 * peer whole, although Linux queues only ~10 datagrams per socket; and a
 * waiter whose version shows up with no notify at all is found by the
 * periodic re-check.
 */
static void test_sk_waiters_shared_burst_and_recheck(void **state)
{
    sk_waiters *a = new_waiters(), *b = new_waiters();
    shared_db db;
    counted c;
    vclock vc;
    wres r;

    (void)state;
    shared_db_open(&db);
    assert_int_equal(sk_waiters_share(a, db.store, "test"), SK_OK);
    assert_int_equal(sk_waiters_share(b, db.store, "test"), SK_OK);
    atomic_init(&c.n_ok, 0);
    for (int i = 0; i < 300; i++) {
        char id[32];
        snprintf(id, sizeof(id), "order-%d", i);
        /* No version function: only the peer's notify completes these. */
        assert_int_equal(sk_waiters_add(b, id, 1, 10000, NULL, NULL, on_counted, &c), SK_OK);
    }
    for (int i = 0; i < 300; i++) {
        char id[32];
        snprintf(id, sizeof(id), "order-%d", i);
        sk_waiters_notify(a, id, 1);
    }
    assert_true(sk_test_wait_until(all_counted, &c, 5000));

    atomic_init(&vc.version, 0);
    wres_init(&r);
    assert_int_equal(sk_waiters_add(b, "order-x", 2, 10000, current_version, &vc, on_wait, &r),
                     SK_OK);
    atomic_store(&vc.version, 2); /* visible, but nobody says so */
    assert_true(sk_test_wait_until(wres_called, &r, 5000));
    assert_int_equal(atomic_load(&r.st), SK_OK);
    sk_waiters_destroy(b);
    sk_waiters_destroy(a);
    shared_db_close(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_ctoken_round_trip),
        cmocka_unit_test(test_sk_ctoken_encode_known),
        cmocka_unit_test(test_sk_ctoken_encode_errors),
        cmocka_unit_test(test_sk_ctoken_decode_malformed),
        cmocka_unit_test(test_sk_ctoken_decode_max_version_and_slice),
        cmocka_unit_test(test_sk_ctoken_decode_bad_args),
        cmocka_unit_test(test_sk_waiters_satisfied_immediately),
        cmocka_unit_test(test_sk_waiters_satisfied_by_notify_from_thread),
        cmocka_unit_test(test_sk_waiters_timeout),
        cmocka_unit_test(test_sk_waiters_destroy_cancels),
        cmocka_unit_test(test_sk_waiters_bad_args),
        cmocka_unit_test(test_sk_waiters_limit_and_many_ids),
        cmocka_unit_test(test_sk_waiters_callback_reenters),
        cmocka_unit_test(test_sk_waiters_add_every_alloc_failure),
        cmocka_unit_test(test_sk_waiters_race_exactly_once),
        cmocka_unit_test(test_sk_waiters_add_id_outlives_the_query),
        cmocka_unit_test(test_sk_waiters_shared_between_peers),
        cmocka_unit_test(test_sk_waiters_shared_burst_and_recheck),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
