/* SPDX-License-Identifier: MIT */
/*
 * Crash test of the reference shop: a saga resumes after its process is
 * killed mid-step, and no acknowledged order is lost.
 *
 * For each victim service (order, inventory, payment, orderview) the test
 * seeds fresh products and customers, submits a burst of orders from several
 * client threads (each POST carries an Idempotency-Key and is retried with the
 * same key on a transport error, 429 or 5xx until a 202 arrives), SIGKILLs the
 * victim's process while the sagas are in flight, waits for `skald up` to
 * restart it and then checks the business rules of CONTRACT.md:
 *   - every accepted order reaches APPROVED or REJECTED (with a known reason);
 *   - per product: stock + restocked == available + reserved + sold,
 *     reserved == 0 and sold == the quantities of the APPROVED orders;
 *   - per customer: credit_limit - available_credit == the total of its
 *     APPROVED orders, and its order list holds exactly the accepted orders;
 *   - replaying an Idempotency-Key returns the order it first created.
 * Every violation is printed with the invariant and the id before the test
 * fails. Read models are eventually consistent, so every check polls with a
 * deadline; nothing sleeps a fixed time to let things settle. The checks
 * live in tests/support/sk_test_shop.c, shared with test_chaos.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_shop.h"
#include "sk_test_system.h"

#define N_SKUS      3
#define N_CUSTOMERS 4
#define N_ORDERS    30
#define N_CLIENTS   4
#define STOCK       50
/* The victim dies once this many orders of the burst have been accepted. */
#define KILL_AFTER 8
/* Deadlines (ms). */
#define SEED_MS     15000 /* seeded products and customers visible */
#define SUBMIT_MS   45000 /* one order's retries until a 202 */
#define RESTART_MS  20000 /* skald up restarts the victim and /readyz is 200 again */
#define TERMINAL_MS 60000 /* every accepted order terminal */
#define SETTLE_MS   20000 /* read models agree with the terminal orders */

static sk_test_system g_sys;
static bool g_failed; /* keep the data dir for a post-mortem */

static const int64_t g_prices[N_SKUS] = { 700, 1300, 2100 };
/*
 * Orders cost 2,000..6,800 cents: customer 0 affords every order, 1 and 2
 * only some, 3 none (so INSUFFICIENT_CREDIT rejections run the compensation
 * ReleaseReservation in every scenario).
 */
static const int64_t g_limits[N_CUSTOMERS] = { 10000000, 20000, 9000, 1500 };

/* One scenario at a time; static so that a failing assertion leaks nothing (see test_teardown). */
static sk_test_shop g_shop;

/* ---------------------------------------------------------------- clients */

/* Each client takes the next order of the burst until none is left. */
static void *client_main(void *arg)
{
    sk_test_shop *shop = arg;
    sk_test_shop_order *o;
    while ((o = sk_test_shop_order_next(shop)) != NULL) {
        (void)sk_test_shop_submit(shop, o, SUBMIT_MS); /* check_accepted reports a failure */
    }
    return NULL;
}

/* ---------------------------------------------------------------- the crash */

/* Runs while the client threads do: reports through violations, never fails the test directly. */
static void kill_and_await_restart(sk_test_shop *shop, const char *victim)
{
    pid_t pid = sk_test_system_service_pid(&g_sys, victim);
    if (pid <= 0 || pid == g_sys.pid) {
        sk_test_shop_violation(shop, "no running process of %s under skald up (pid %d)", victim,
                               (int)g_sys.pid);
        return;
    }
    if (kill(pid, SIGKILL) != 0) {
        sk_test_shop_violation(shop, "kill(%d, SIGKILL) of %s failed", (int)pid, victim);
        return;
    }
    fprintf(stderr, "[victim %s] SIGKILL pid %d after %d accepted orders\n", victim, (int)pid,
            atomic_load(&shop->n_accepted));
    pid_t new_pid = 0;
    if (sk_test_system_await_service(&g_sys, victim, pid, RESTART_MS, &new_pid) != SK_OK) {
        sk_test_shop_violation(shop, "%s was not restarted: %s", victim, sk_error_message());
        return;
    }
    if (sk_test_system_await_ready(&g_sys, RESTART_MS) != SK_OK) {
        sk_test_shop_violation(shop, "after restarting %s (pid %d): %s", victim, (int)new_pid,
                               sk_error_message());
        return;
    }
    fprintf(stderr, "[victim %s] restarted as pid %d, gateway ready\n", victim, (int)new_pid);
}

/* ---------------------------------------------------------------- the scenario */

static void run_scenario(const char *victim)
{
    sk_test_shop *shop = &g_shop;
    char label[64];
    snprintf(label, sizeof(label), "victim %s", victim);
    sk_test_shop_fini(shop);
    assert_int_equal(sk_test_shop_init(shop, &g_sys, label, N_ORDERS), SK_OK);
    shop->n_skus = N_SKUS;
    for (int j = 0; j < N_SKUS; j++) {
        shop->prices[j] = g_prices[j];
        shop->stock[j] = STOCK; /* at most ~30 units of a sku are ordered: never out of stock */
    }
    shop->n_customers = N_CUSTOMERS;
    for (int c = 0; c < N_CUSTOMERS; c++) {
        shop->limits[c] = g_limits[c];
    }
    g_failed = true; /* until the scenario passes */
    if (sk_test_shop_seed(shop, "CRASH", SEED_MS) != SK_OK) {
        fail_msg("victim %s: %s", victim, sk_error_message());
    }

    pthread_t threads[N_CLIENTS];
    for (int t = 0; t < N_CLIENTS; t++) {
        assert_int_equal(pthread_create(&threads[t], NULL, client_main, shop), 0);
    }
    /* Kill while sagas are in flight: once the first few orders were accepted. */
    int64_t deadline = sk_time_mono_ms() + SUBMIT_MS;
    while (atomic_load(&shop->n_accepted) < KILL_AFTER && sk_time_mono_ms() < deadline) {
        struct timespec ts = { 0, 1000000L };
        nanosleep(&ts, NULL);
    }
    kill_and_await_restart(shop, victim);
    for (int t = 0; t < N_CLIENTS; t++) {
        pthread_join(threads[t], NULL);
    }

    /* No acknowledged order may be lost, and every order must have been acknowledged eventually. */
    sk_test_shop_check_accepted(shop);
    if (atomic_load(&shop->n_violations) == 0) {
        sk_test_shop_check_terminal(shop, TERMINAL_MS);
    }
    if (atomic_load(&shop->n_violations) == 0) {
        /* Views are final now, so the expected sums are known. */
        sk_test_shop_check_products(shop, SETTLE_MS);
        sk_test_shop_check_customers(shop, SETTLE_MS);
        sk_test_shop_check_idempotency(shop);
    } else {
        fprintf(stderr,
                "[victim %s] stock, credit and idempotency checks skipped: orders not final\n",
                victim);
    }

    sk_test_shop_counts n;
    sk_test_shop_summary(shop, &n);
    int n_violations = atomic_load(&shop->n_violations);
    sk_test_shop_fini(shop);
    if (n_violations > 0) {
        fail_msg("victim %s: %d invariant(s) broken (see above; data dir %s)", victim, n_violations,
                 g_sys.data_dir);
    }
    /* The scenario must have exercised both outcomes, or it proved nothing about compensations. */
    assert_true(n.n_approved > 0);
    assert_true(n.n_insufficient_credit > 0);
    g_failed = false;
}

static void test_kill_order(void **state)
{
    (void)state;
    run_scenario("order");
}

static void test_kill_inventory(void **state)
{
    (void)state;
    run_scenario("inventory");
}

static void test_kill_payment(void **state)
{
    (void)state;
    run_scenario("payment");
}

static void test_kill_orderview(void **state)
{
    (void)state;
    run_scenario("orderview");
}

/* ---------------------------------------------------------------- fixture */

static bool g_any_failed;

static int test_teardown(void **state)
{
    (void)state;
    sk_test_shop_fini(&g_shop);
    g_any_failed = g_any_failed || g_failed;
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-crash") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-crash: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-crash: skald up exited with %d (data kept in %s)\n", rc,
                g_sys.data_dir);
        return -1;
    }
    if (g_any_failed) {
        fprintf(stderr, "system-crash: a scenario failed; data kept in %s\n", g_sys.data_dir);
    } else {
        sk_test_system_cleanup(&g_sys);
    }
    sk_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill_order, test_teardown),
        cmocka_unit_test_teardown(test_kill_inventory, test_teardown),
        cmocka_unit_test_teardown(test_kill_payment, test_teardown),
        cmocka_unit_test_teardown(test_kill_orderview, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
