/* SPDX-License-Identifier: MIT */
/*
 * Chaos test of the reference shop: while a modest load submits orders
 * through the gateway, SIGKILL in turn every service instance, the gateway
 * and nats-server, then two processes at once; `skald up` restarts each.
 * First, nats-server is stopped (SIGSTOP) for longer than the discovery TTL
 * and continued: orders must be accepted throughout the stall.
 *
 * Three client threads submit orders back to back (paced), each POST with
 * its own Idempotency-Key, retried with the same key on a connection failure,
 * 429 or 5xx until a 202 arrives. The kills are driven by the load, not by
 * the clock: the next one happens once KILL_EVERY more orders have been
 * accepted since the previous kill, which also shows that the system accepts
 * orders again after each restart. After the last kill and KILL_EVERY more
 * accepted orders the load stops and the shop checker (sk_test_shop.c)
 * verifies, through the public API:
 *   - every order got a 202 and every accepted order ends APPROVED or
 *     REJECTED with a known reason (no acknowledged order lost or stuck);
 *   - per product: stock + restocked == available + reserved + sold,
 *     reserved == 0, sold == the units of the APPROVED orders;
 *   - per customer: credit_limit - available_credit == the total of its
 *     APPROVED orders; its order list holds exactly its accepted orders;
 *   - replaying each Idempotency-Key returns the order it first created;
 * then stops the system and reads the services' SQLite files read-only:
 * each order once, its saga finished, its key recorded once; one reservation
 * and at most one charge per order, committed/charged exactly when APPROVED;
 * the write models keep the stock and credit invariants; every orderview
 * instance agrees with them. Each broken rule prints one line naming the
 * invariant and the id. Every wait has a deadline; nothing sleeps to let
 * things settle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_shop.h"
#include "sk_test_system.h"

#define N_SKUS      3
#define N_CUSTOMERS 4
#define N_CLIENTS   3
#define MAX_ORDERS  3000
#define STOCK       1000000 /* never OUT_OF_STOCK: the stock rules must hold whatever the load */
/* The next kill happens once this many more orders were accepted since the previous one. */
#define KILL_EVERY 6
/* Pause of a client between two orders: a modest, steady load (~25 orders/s in all). */
#define PACE_MS 100
/* The broker stall, and from when in it orders must still be accepted: past the 6 s discovery TTL.
 */
#define STALL_MS       12000
#define STALL_CHECK_MS 8000
/* Deadlines (ms). */
#define START_MS    60000 /* skald up ready */
#define SEED_MS     20000 /* seeded products and customers visible */
#define SUBMIT_MS   60000 /* one order's retries until a 202 */
#define PROGRESS_MS 45000 /* KILL_EVERY more orders accepted after a kill */
#define RESTART_MS  30000 /* skald up restarts a victim */
#define READY_MS    45000 /* and /readyz is 200 again */
#define TERMINAL_MS 90000 /* every accepted order terminal */
#define SETTLE_MS   30000 /* read models agree with the terminal orders */

/* The victims, in turn; "nats-server" is found by program, the others by instance name. */
typedef struct kill_step {
    const char *victims[2];
    bool is_stall; /* SIGSTOP the one victim for STALL_MS instead of killing it */
} kill_step;

static const kill_step g_steps[] = {
    /* First, while every instance's registration is settled: right after a restart the
     * gateway may not have heard the new address yet, and a stall then would hide it. */
    { { "nats-server", NULL }, true },       { { "customer-1", NULL }, false },
    { { "inventory-1", NULL }, false },      { { "inventory-2", NULL }, false },
    { { "payment-1", NULL }, false },        { { "payment-2", NULL }, false },
    { { "order-1", NULL }, false },          { { "orderview-1", NULL }, false },
    { { "orderview-2", NULL }, false },      { { "psp-1", NULL }, false },
    { { "gateway-1", NULL }, false },        { { "nats-server", NULL }, false },
    { { "order-1", "nats-server" }, false }, { { "inventory-1", "payment-1" }, false },
};
#define N_STEPS (sizeof(g_steps) / sizeof(g_steps[0]))

static const int64_t g_prices[N_SKUS] = { 700, 1300, 2100 };
/* Orders cost 2,000..6,800 cents: customer 0 affords every order, 1 and 2 some (1 about 35, 2
 * about 7), 3 none, so credit runs out under the kills and INSUFFICIENT_CREDIT compensates. */
static const int64_t g_limits[N_CUSTOMERS] = { 1000000000, 150000, 30000, 1500 };

static sk_test_system g_sys;
static sk_test_shop g_shop;
static atomic_bool g_stop_load;
static bool g_failed = true; /* keep the data dir for a post-mortem */

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- load */

static void *client_main(void *arg)
{
    sk_test_shop *shop = arg;
    while (!atomic_load(&g_stop_load)) {
        sk_test_shop_order *o = sk_test_shop_order_next(shop);
        if (o == NULL) {
            break;
        }
        (void)sk_test_shop_submit(shop, o, SUBMIT_MS); /* check_accepted reports a failure */
        pause_ms(PACE_MS);
    }
    return NULL;
}

/* Wait until at least @p want orders were accepted. */
static bool await_accepted(sk_test_shop *shop, int want, int64_t timeout_ms)
{
    int64_t deadline = sk_time_mono_ms() + timeout_ms;
    while (atomic_load(&shop->n_accepted) < want) {
        if (sk_time_mono_ms() > deadline) {
            return false;
        }
        pause_ms(5);
    }
    return true;
}

/* ---------------------------------------------------------------- kills */

static bool is_program(const char *victim)
{
    return strcmp(victim, "nats-server") == 0;
}

static pid_t victim_pid(const char *victim)
{
    return is_program(victim) ? sk_test_system_program_pid(&g_sys, victim)
                              : sk_test_system_instance_pid(&g_sys, victim);
}

static sk_status await_victim(const char *victim, pid_t old_pid, pid_t *new_pid)
{
    return is_program(victim)
               ? sk_test_system_await_program(&g_sys, victim, old_pid, RESTART_MS, new_pid)
               : sk_test_system_await_instance(&g_sys, victim, old_pid, RESTART_MS, new_pid);
}

/*
 * After a restart: an order accepted from now on reaches a terminal status,
 * so the restarted process (or the reconnected services, after nats-server)
 * carry sagas through again, not only accept orders. Reports through violations.
 */
static bool await_order_completes(sk_test_shop *shop, const char *names, int64_t t0)
{
    int64_t started = sk_time_mono_ms();
    int since = atomic_load(&shop->n_accepted);
    if (!await_accepted(shop, since + 1, PROGRESS_MS)) {
        sk_test_shop_violation(shop, "no order accepted within %d s after restarting %s",
                               PROGRESS_MS / 1000, names);
        return false;
    }
    /* order_id was written before last_accepted was stored, and is never written again. */
    const sk_test_shop_order *o = &shop->orders[atomic_load(&shop->last_accepted)];
    char path[160], last[256] = "no answer";
    snprintf(path, sizeof(path), "/api/v1/orders/%s", o->order_id);
    int64_t deadline = sk_time_mono_ms() + PROGRESS_MS;
    for (;;) {
        sk_test_http r;
        if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK) {
            const char *status = json_string_value(json_object_get(r.json, "status"));
            snprintf(last, sizeof(last), "HTTP %d %s", r.status, status != NULL ? status : "");
            bool is_done = r.status == 200 && status != NULL && strcmp(status, "PENDING") != 0;
            if (is_done) {
                fprintf(stderr, "[chaos] %6.1f s: order %s accepted after the restart is %s\n",
                        (double)(sk_time_mono_ms() - t0) / 1000.0, o->order_id, status);
            }
            sk_test_http_fini(&r);
            if (is_done) {
                return true;
            }
        }
        if (sk_time_mono_ms() > deadline) {
            sk_test_shop_violation(shop,
                                   "order %s, accepted after restarting %s, not terminal within "
                                   "%lld ms (last answer %s): sagas do not resume",
                                   o->order_id, names, (long long)(sk_time_mono_ms() - started),
                                   last);
            return false;
        }
        pause_ms(20);
    }
}

/*
 * SIGKILL every victim of @p step at once, then wait until skald up has
 * restarted each, the gateway is ready and an order accepted afterwards
 * completes. Reports through violations.
 * @return false when the system did not come back (the run stops there).
 */
static bool kill_step_run(sk_test_shop *shop, const kill_step *step, int64_t t0)
{
    pid_t pids[2] = { 0, 0 };
    char names[128] = "";
    int64_t killed_at = sk_time_mono_ms();
    for (int v = 0; v < 2 && step->victims[v] != NULL; v++) {
        const char *victim = step->victims[v];
        pids[v] = victim_pid(victim);
        if (pids[v] <= 0 || pids[v] == g_sys.pid) {
            sk_test_shop_violation(shop, "no running process of %s under skald up (pid %d)", victim,
                                   (int)g_sys.pid);
            return false;
        }
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s (pid %d)",
                 v > 0 ? " + " : "", victim, (int)pids[v]);
    }
    for (int v = 0; v < 2 && step->victims[v] != NULL; v++) {
        if (kill(pids[v], SIGKILL) != 0) {
            sk_test_shop_violation(shop, "kill(%d, SIGKILL) of %s failed", (int)pids[v],
                                   step->victims[v]);
            return false;
        }
    }
    fprintf(stderr, "[chaos] %6.1f s: SIGKILL %s after %d accepted orders\n",
            (double)(killed_at - t0) / 1000.0, names, atomic_load(&shop->n_accepted));
    for (int v = 0; v < 2 && step->victims[v] != NULL; v++) {
        pid_t new_pid = 0;
        if (await_victim(step->victims[v], pids[v], &new_pid) != SK_OK) {
            sk_test_shop_violation(shop, "%s was not restarted by skald up: %s", step->victims[v],
                                   sk_error_message());
            return false;
        }
    }
    if (sk_test_system_await_ready(&g_sys, READY_MS) != SK_OK) {
        sk_test_shop_violation(shop, "after restarting %s: %s", names, sk_error_message());
        return false;
    }
    fprintf(stderr, "[chaos] %6.1f s: %s restarted, gateway ready after %lld ms\n",
            (double)(sk_time_mono_ms() - t0) / 1000.0, names,
            (long long)(sk_time_mono_ms() - killed_at));
    return await_order_completes(shop, names, t0);
}

/*
 * Stop nats-server (SIGSTOP) for STALL_MS, then continue it: a broker that
 * stops answering without closing any connection. Nobody's discovery
 * heartbeat arrives for longer than the TTL, and the gateway must go on
 * routing to the instances it knows: orders are still accepted at the end
 * of the stall (they wait in the outboxes), and one accepted after it
 * completes. Reports through violations.
 */
static bool stall_step_run(sk_test_shop *shop, const kill_step *step, int64_t t0)
{
    const char *victim = step->victims[0];
    pid_t pid = victim_pid(victim);
    if (pid <= 0 || pid == g_sys.pid) {
        sk_test_shop_violation(shop, "no running process of %s under skald up (pid %d)", victim,
                               (int)g_sys.pid);
        return false;
    }
    int64_t stopped_at = sk_time_mono_ms();
    if (kill(pid, SIGSTOP) != 0) {
        sk_test_shop_violation(shop, "kill(%d, SIGSTOP) of %s failed", (int)pid, victim);
        return false;
    }
    fprintf(stderr, "[chaos] %6.1f s: SIGSTOP %s (pid %d) for %d ms after %d accepted orders\n",
            (double)(stopped_at - t0) / 1000.0, victim, (int)pid, STALL_MS,
            atomic_load(&shop->n_accepted));
    pause_ms(STALL_CHECK_MS);
    int at_check = atomic_load(&shop->n_accepted);
    pause_ms(STALL_MS - STALL_CHECK_MS);
    int late = atomic_load(&shop->n_accepted) - at_check;
    if (kill(pid, SIGCONT) != 0) {
        sk_test_shop_violation(shop, "kill(%d, SIGCONT) of %s failed", (int)pid, victim);
        return false;
    }
    fprintf(stderr, "[chaos] %6.1f s: SIGCONT %s; %d orders accepted in the stall's last %d ms\n",
            (double)(sk_time_mono_ms() - t0) / 1000.0, victim, late, STALL_MS - STALL_CHECK_MS);
    if (late == 0) {
        sk_test_shop_violation(shop,
                               "no order accepted from %d ms to %d ms into a stall of %s: the "
                               "gateway lost the instances it knew",
                               STALL_CHECK_MS, STALL_MS, victim);
    }
    return await_order_completes(shop, victim, t0);
}

/* ---------------------------------------------------------------- the test */

static void test_chaos_kill_every_process_under_load(void **state)
{
    (void)state;
    sk_test_shop *shop = &g_shop;
    assert_int_equal(sk_test_shop_init(shop, &g_sys, "chaos", MAX_ORDERS), SK_OK);
    shop->n_skus = N_SKUS;
    for (int j = 0; j < N_SKUS; j++) {
        shop->prices[j] = g_prices[j];
        shop->stock[j] = STOCK;
    }
    shop->n_customers = N_CUSTOMERS;
    for (int c = 0; c < N_CUSTOMERS; c++) {
        shop->limits[c] = g_limits[c];
    }
    if (sk_test_shop_seed(shop, "CHAOS", SEED_MS) != SK_OK) {
        fail_msg("chaos: %s", sk_error_message());
    }

    int64_t t0 = sk_time_mono_ms();
    pthread_t threads[N_CLIENTS];
    atomic_store(&g_stop_load, false);
    for (int t = 0; t < N_CLIENTS; t++) {
        assert_int_equal(pthread_create(&threads[t], NULL, client_main, shop), 0);
    }
    int n_kills = 0, n_stalls = 0;
    int since = 0; /* accepted orders at the previous kill */
    bool is_up = true;
    for (size_t s = 0; s <= N_STEPS && is_up; s++) {
        /* The load must make progress before each kill, and after the last one. */
        if (!await_accepted(shop, since + KILL_EVERY, PROGRESS_MS)) {
            sk_test_shop_violation(shop,
                                   "the load stalled: %d orders accepted, none of the %d more "
                                   "expected within %d s %s",
                                   atomic_load(&shop->n_accepted), KILL_EVERY, PROGRESS_MS / 1000,
                                   s == 0 ? "from the start" : "after the previous kill");
            break;
        }
        if (s == N_STEPS) {
            break;
        }
        since = atomic_load(&shop->n_accepted);
        if (g_steps[s].is_stall) {
            is_up = stall_step_run(shop, &g_steps[s], t0);
            n_stalls++;
            continue;
        }
        is_up = kill_step_run(shop, &g_steps[s], t0);
        n_kills += g_steps[s].victims[1] != NULL ? 2 : 1;
    }
    atomic_store(&g_stop_load, true);
    for (int t = 0; t < N_CLIENTS; t++) {
        pthread_join(threads[t], NULL);
    }
    int64_t load_ms = sk_time_mono_ms() - t0;
    fprintf(stderr, "[chaos] load stopped after %.1f s: %d orders accepted, %d processes killed\n",
            (double)load_ms / 1000.0, atomic_load(&shop->n_accepted), n_kills);

    sk_test_shop_check_accepted(shop);
    sk_test_shop_check_terminal(shop, TERMINAL_MS);
    if (atomic_load(&shop->n_violations) == 0) {
        /* Views are final now, so the expected sums are known. */
        sk_test_shop_check_products(shop, SETTLE_MS);
        sk_test_shop_check_customers(shop, SETTLE_MS);
        sk_test_shop_check_idempotency(shop);
    } else {
        fprintf(stderr, "[chaos] stock, credit and idempotency checks skipped: orders not final\n");
    }

    /* The databases are read once every saga has finished and every writer is gone. */
    sk_test_shop_await_sagas(shop, g_sys.data_dir, SETTLE_MS);
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        sk_test_shop_violation(shop, "skald up exited with %d%s", rc,
                               rc == -2 ? " (a sanitizer report in a log)" : "");
    }
    sk_test_shop_check_databases(shop, g_sys.data_dir);

    sk_test_shop_counts n;
    sk_test_shop_summary(shop, &n);
    fprintf(stderr, "[chaos] %d kills, %.1f s under load, %.1f s in all\n", n_kills,
            (double)load_ms / 1000.0, (double)(sk_time_mono_ms() - t0) / 1000.0);
    int n_violations = atomic_load(&shop->n_violations);
    if (n_violations > 0) {
        fail_msg("chaos: %d invariant(s) broken (see above; data dir %s)", n_violations,
                 g_sys.data_dir);
    }
    assert_int_equal(n_kills, 15);
    assert_int_equal(n_stalls, 1);
    /* Both outcomes, or the compensations were never exercised under the kills. */
    assert_true(n.n_approved > 0);
    assert_true(n.n_insufficient_credit > 0);
    g_failed = false;
}

/* ---------------------------------------------------------------- fixture */

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-chaos") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, START_MS) != SK_OK) {
        fprintf(stderr, "system-chaos: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sk_test_shop_fini(&g_shop);
    if (g_sys.pid > 0) { /* the test failed before it stopped the system */
        int rc = sk_test_system_stop(&g_sys);
        if (rc != 0) {
            fprintf(stderr, "system-chaos: skald up exited with %d\n", rc);
        }
    }
    if (g_failed) {
        fprintf(stderr, "system-chaos: data kept in %s\n", g_sys.data_dir);
    } else {
        sk_test_system_cleanup(&g_sys);
    }
    sk_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_kill_every_process_under_load),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
