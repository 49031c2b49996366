/* SPDX-License-Identifier: MIT */
/*
 * System test of several instances per service (skald.yaml runs two of
 * inventory, payment and orderview):
 *   - `skald status` lists inventory-1/2, payment-1/2 and orderview-1/2 ready;
 *   - the gateway balances product reads over both orderview instances
 *     (counted from each instance's /metrics, read over mTLS with the
 *     skald-cli identity);
 *   - orderview-2 killed with SIGKILL leaves the registry within the
 *     discovery TTL (its entry goes, or is replaced by its restarted
 *     process), `skald up` restarts it and it is listed ready again;
 *   - a hung orderview-2 (SIGSTOP) expires from the registry within the
 *     TTL, then skald up's watchdog kills it (no heartbeat for 30 s) and
 *     restarts it, and it rejoins;
 *   - `skald bench --json` runs 2 s at 20 orders/s against the system and
 *     every measured order ends APPROVED;
 *   - orders placed meanwhile (retried on transport errors, 429 and 5xx with
 *     the same Idempotency-Key) all end APPROVED or REJECTED, with the stock
 *     and credit invariants holding for their product and customer.
 * Every condition is polled with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sk_test.h"
#include "sk_test_system.h"
#include <skald/discovery.h>
#include <skald/mesh.h>

#define N_ORDERS  12
#define N_CLIENTS 3
#define STOCK     50
#define PRICE     300
#define LIMIT     1000000
/* Deadlines (ms). */
#define STATUS_MS   20000 /* every instance listed ready */
#define SUBMIT_MS   45000 /* one order's retries until a 202 */
#define RESTART_MS  30000 /* the killed instance is back, ready */
#define WATCHDOG_MS \
    30000 /* skald up's watchdog: silence before SIGKILL (CLI_WATCHDOG_TIMEOUT_MS) */
#define TERMINAL_MS 60000
#define SETTLE_MS   20000
/* Slack over the TTL for polling `skald status` (each run takes a few hundred ms). */
#define STATUS_SLACK_MS 2500

static sk_test_system g_sys;

static void pause_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int64_t jint_or(const json_t *o, const char *k, int64_t fallback)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : fallback;
}

static const char *jstr_or(const json_t *o, const char *k, const char *fallback)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : fallback;
}

static void unique(char *out, size_t len, const char *prefix)
{
    static atomic_int counter;
    char id[SK_UUID_LEN];
    sk_uuid7(id);
    snprintf(out, len, "%s-%d-%.8s", prefix, atomic_fetch_add(&counter, 1) + 1, id + 28);
}

/* ---------------------------------------------------------------- skald status */

typedef struct status_row {
    char instance[64];
    char address[64];
    int pid;
    bool is_ready;
} status_row;

/* Run `skald status` and parse its rows. @return the number of rows, or -1 when it failed. */
static int read_status(status_row *rows, int max_rows)
{
    char cmd[600], line[1024];
    int n = 0;
    snprintf(cmd, sizeof(cmd), "%s/skald status --data %s 2>/dev/null", SK_BIN_DIR, g_sys.data_dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), p) != NULL) {
        char inst[64], svc[64], addr[64], pid[16], health[32];
        if (sscanf(line, "%63s %63s %63s %15s %31s", inst, svc, addr, pid, health) != 5 ||
            strcmp(inst, "INSTANCE") == 0 || strcmp(inst, "-") == 0 || n >= max_rows) {
            continue;
        }
        snprintf(rows[n].instance, sizeof(rows[n].instance), "%s", inst);
        snprintf(rows[n].address, sizeof(rows[n].address), "%s", addr);
        rows[n].pid = atoi(pid);
        rows[n].is_ready = strcmp(health, "ready") == 0;
        n++;
    }
    return pclose(p) == 0 ? n : -1;
}

static const status_row *find_row(const status_row *rows, int n, const char *instance)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].instance, instance) == 0) {
            return &rows[i];
        }
    }
    return NULL;
}

static const char *const g_instances[] = { "inventory-1", "inventory-2", "payment-1",
                                           "payment-2",   "orderview-1", "orderview-2" };
#define N_INSTANCES (sizeof(g_instances) / sizeof(g_instances[0]))

/* Poll `skald status` until every instance of g_instances is listed ready; fills @p rows. */
static int await_all_ready(status_row *rows, int max_rows)
{
    int64_t deadline = sk_time_mono_ms() + STATUS_MS;
    char missing[160] = "";
    for (;;) {
        int n = read_status(rows, max_rows);
        missing[0] = '\0';
        for (size_t i = 0; i < N_INSTANCES; i++) {
            const status_row *r = n > 0 ? find_row(rows, n, g_instances[i]) : NULL;
            if (r == NULL || !r->is_ready) {
                snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s%s",
                         g_instances[i], r == NULL ? "(absent)" : "(not ready)");
            }
        }
        if (missing[0] == '\0') {
            return n;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("skald status within %d ms:%s", STATUS_MS, missing);
        }
        pause_ms(200);
    }
}

static void test_status_lists_both_instances_ready(void **state)
{
    (void)state;
    status_row rows[64];
    int n = await_all_ready(rows, 64);
    for (size_t i = 0; i < N_INSTANCES; i++) {
        const status_row *r = find_row(rows, n, g_instances[i]);
        assert_non_null(r);
        assert_true(r->pid > 0);
        /* The PID that `skald status` shows is the process skald up runs under that name. */
        assert_int_equal(r->pid, (int)sk_test_system_instance_pid(&g_sys, g_instances[i]));
    }
    assert_int_not_equal(find_row(rows, n, "orderview-1")->pid, find_row(rows, n, "orderview-2")->pid);
}

/* ---------------------------------------------------------------- metrics over mTLS */

typedef struct sync_get {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_done;
    sk_status st;
    int status;
    char *body;
} sync_get;

static void sync_get_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    sync_get *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->st = st;
    if (st == SK_OK && resp != NULL) {
        g->status = resp->status;
        g->body = sk_malloc(resp->body.len + 1);
        if (g->body != NULL) {
            memcpy(g->body, resp->body.ptr, resp->body.len);
            g->body[resp->body.len] = '\0';
        }
    }
    g->is_done = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/*
 * Sum of sk_cqrs_requests_total for queries of @p type answered 200 by the
 * instance at @p address (its /metrics, mTLS as skald-cli). @return -1 on failure.
 */
static int64_t query_count(sk_http_client *client, const char *address, const char *type)
{
    char type_label[80];
    char url[128];
    sync_get g = { .is_done = false, .st = SK_EINTERNAL, .status = 0, .body = NULL };
    int64_t total = -1;
    snprintf(url, sizeof(url), "https://%s/metrics", address);
    snprintf(type_label, sizeof(type_label), "type=\"%s\"", type);
    sk_http_request req = { .method = "GET", .url = url, .timeout_ms = 5000 };
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    if (sk_http_client_send(client, &req, sync_get_done, &g) != SK_OK) {
        fprintf(stderr, "GET %s: %s\n", url, sk_error_message());
        goto out;
    }
    pthread_mutex_lock(&g.mu);
    while (!g.is_done) {
        pthread_cond_wait(&g.cv, &g.mu); /* done is called exactly once (timeout 5 s) */
    }
    pthread_mutex_unlock(&g.mu);
    if (g.st != SK_OK || g.status != 200 || g.body == NULL) {
        fprintf(stderr, "GET %s: %s, HTTP %d\n", url, sk_status_name(g.st), g.status);
        goto out;
    }
    total = 0;
    for (const char *line = g.body; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) - 1 ? len : sizeof(buf) - 1), line);
        if (strncmp(buf, "sk_cqrs_requests_total{", 23) == 0 && strstr(buf, type_label) != NULL &&
            strstr(buf, "status=\"200\"") != NULL) {
            const char *v = strrchr(buf, ' ');
            total += v != NULL ? (int64_t)strtod(v + 1, NULL) : 0;
        }
        line = end != NULL ? end + 1 : NULL;
    }
out:
    sk_free(g.body);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
    return total;
}

static void seed_product(char *sku, size_t sku_len, int64_t stock)
{
    char body[256];
    sk_test_http r;
    unique(sku, sku_len, "inst-sku");
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"name\":\"Instances %s\",\"price_cents\":%d,\"stock\":%lld}",
             sku, sku, PRICE, (long long)stock);
    assert_int_equal(sk_test_http_send(&g_sys, "POST", "/api/v1/products", body, strlen(body), NULL, &r), SK_OK);
    if (r.status != 201) {
        fail_msg("POST /products: HTTP %d: %s", r.status, r.body);
    }
    sk_test_http_fini(&r);
}

/* GET @p path until 200 from both read models is likely (@p n_ok answers 200 in a row). */
static void await_get_200(const char *path, int n_ok)
{
    int64_t deadline = sk_time_mono_ms() + SETTLE_MS;
    int in_a_row = 0;
    while (in_a_row < n_ok) {
        sk_test_http r;
        int status = 0;
        if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK) {
            status = r.status;
            sk_test_http_fini(&r);
        }
        in_a_row = status == 200 ? in_a_row + 1 : 0;
        if (in_a_row < n_ok) {
            if (sk_time_mono_ms() > deadline) {
                fail_msg("GET %s: no %d answers 200 in a row within %d ms (last %d)", path, n_ok,
                         SETTLE_MS, status);
            }
            pause_ms(20);
        }
    }
}

static void test_gateway_balances_reads_over_orderview(void **state)
{
    (void)state;
    status_row rows[64];
    int n = await_all_ready(rows, 64);
    char sku[64], path[128], pki[300];
    sk_tls_files tls = { 0 };
    sk_http_client *client = NULL;
    int64_t before[2], after[2];
    const char *names[2] = { "orderview-1", "orderview-2" };

    snprintf(pki, sizeof(pki), "%s/pki", g_sys.data_dir);
    assert_int_equal(sk_tls_files_init(&tls, pki, "skald-cli"), SK_OK);
    assert_int_equal(sk_http_client_create(&client, &tls), SK_OK);

    seed_product(sku, sizeof(sku), STOCK);
    snprintf(path, sizeof(path), "/api/v1/products/%s", sku);
    await_get_200(path, 4); /* both read models have projected ProductCreated */
    for (int i = 0; i < 2; i++) {
        before[i] = query_count(client, find_row(rows, n, names[i])->address, "GetProduct");
        assert_true(before[i] >= 0);
    }
    for (int i = 0; i < 40; i++) {
        sk_test_http r;
        assert_int_equal(sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r), SK_OK);
        assert_int_equal(r.status, 200);
        assert_int_equal(jint_or(r.json, "available", -1), STOCK);
        sk_test_http_fini(&r);
    }
    for (int i = 0; i < 2; i++) {
        after[i] = query_count(client, find_row(rows, n, names[i])->address, "GetProduct");
        assert_true(after[i] >= 0);
    }
    fprintf(stderr, "[balance] 40 GETs: orderview-1 answered %lld, orderview-2 answered %lld\n",
            (long long)(after[0] - before[0]), (long long)(after[1] - before[1]));
    assert_true(after[0] - before[0] > 0);
    assert_true(after[1] - before[1] > 0);
    /* Other tests' reads may land meanwhile, never fewer than ours. */
    assert_true((after[0] - before[0]) + (after[1] - before[1]) >= 40);
    sk_http_client_destroy(client);
    sk_tls_files_fini(&tls);
}

/* ---------------------------------------------------------------- kill orderview-2 under load */

typedef struct order_req {
    int qty;
    char key[96];
    char body[512];
    char order_id[64];
    char last_error[256];
    json_t *view;
} order_req;

typedef struct scenario {
    char sku[64];
    char customer[64];
    order_req orders[N_ORDERS];
    atomic_int n_accepted;
} scenario;

static scenario g_sc;

static void submit(order_req *o)
{
    char header[160];
    const char *headers[] = { header, NULL };
    snprintf(header, sizeof(header), "Idempotency-Key: %s", o->key);
    int64_t deadline = sk_time_mono_ms() + SUBMIT_MS;
    while (sk_time_mono_ms() < deadline) {
        sk_test_http r;
        if (sk_test_http_send(&g_sys, "POST", "/api/v1/orders", o->body, strlen(o->body), headers, &r) != SK_OK) {
            snprintf(o->last_error, sizeof(o->last_error), "transport: %s", sk_error_message());
            pause_ms(50);
            continue;
        }
        int status = r.status;
        if (status == 202) {
            snprintf(o->order_id, sizeof(o->order_id), "%s", jstr_or(r.json, "order_id", ""));
            atomic_fetch_add(&g_sc.n_accepted, 1);
            sk_test_http_fini(&r);
            return;
        }
        snprintf(o->last_error, sizeof(o->last_error), "HTTP %d: %.200s", status, r.body);
        sk_test_http_fini(&r);
        if (status != 429 && status < 500) {
            return;
        }
        pause_ms(50);
    }
}

static void *client_main(void *arg)
{
    int index = (int)(intptr_t)arg;
    for (int i = index; i < N_ORDERS; i += N_CLIENTS) {
        submit(&g_sc.orders[i]);
        pause_ms(100); /* spread the orders over the kill and the restart */
    }
    return NULL;
}

static void seed_customer(char *id, size_t id_len)
{
    char body[160], path[160], name[64];
    sk_test_http r;
    unique(name, sizeof(name), "Instances");
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"credit_limit_cents\":%d}", name, LIMIT);
    assert_int_equal(sk_test_http_send(&g_sys, "POST", "/api/v1/customers", body, strlen(body), NULL, &r), SK_OK);
    if (r.status != 201) {
        fail_msg("POST /customers: HTTP %d: %s", r.status, r.body);
    }
    snprintf(id, id_len, "%s", jstr_or(r.json, "customer_id", ""));
    sk_test_http_fini(&r);
    snprintf(path, sizeof(path), "/api/v1/customers/%s", id);
    await_get_200(path, 4);
}

/* Poll `skald status` until orderview-2 is no longer listed with @p old_pid; @return ms taken. */
static int64_t await_gone(pid_t old_pid, int64_t t_kill, bool *was_absent)
{
    int64_t deadline = t_kill + SK_DISCOVERY_DEFAULT_TTL_MS + STATUS_SLACK_MS;
    *was_absent = false;
    for (;;) {
        status_row rows[64];
        int n = read_status(rows, 64);
        if (n >= 0) {
            const status_row *r = find_row(rows, n, "orderview-2");
            if (r == NULL || r->pid != (int)old_pid) {
                *was_absent = r == NULL;
                return sk_time_mono_ms() - t_kill;
            }
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("orderview-2 (pid %d) still in skald status %lld ms after SIGKILL (TTL %d ms)", (int)old_pid,
                     (long long)(sk_time_mono_ms() - t_kill), SK_DISCOVERY_DEFAULT_TTL_MS);
        }
        pause_ms(100);
    }
}

static void check_orders(void)
{
    int64_t want_sold = 0, want_spent = 0;
    char path[160];
    int64_t deadline = sk_time_mono_ms() + TERMINAL_MS;
    int n_approved = 0;

    for (int i = 0; i < N_ORDERS; i++) {
        order_req *o = &g_sc.orders[i];
        if (o->order_id[0] == '\0') {
            fail_msg("order %d (key %s) never accepted: %s", i, o->key, o->last_error);
        }
        snprintf(path, sizeof(path), "/api/v1/orders/%s", o->order_id);
        while (o->view == NULL) {
            sk_test_http r;
            if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK) {
                if (r.status == 200 && strcmp(jstr_or(r.json, "status", "PENDING"), "PENDING") != 0) {
                    o->view = json_incref(r.json);
                }
                sk_test_http_fini(&r);
            }
            if (o->view == NULL) {
                if (sk_time_mono_ms() > deadline) {
                    fail_msg("order %s not terminal within %d ms", o->order_id, TERMINAL_MS);
                }
                pause_ms(50);
            }
        }
        const char *status = jstr_or(o->view, "status", "");
        if (strcmp(status, "APPROVED") == 0) {
            want_sold += o->qty;
            want_spent += (int64_t)o->qty * PRICE;
            n_approved++;
        } else if (strcmp(status, "REJECTED") != 0) {
            fail_msg("order %s ended %s", o->order_id, status);
        }
    }
    fprintf(stderr, "[kill orderview-2] %d orders: %d APPROVED\n", N_ORDERS, n_approved);

    /* Product: stock == available + reserved + sold, reserved 0, sold == approved quantities. */
    int64_t available = -1, reserved = -1, sold = -1, credit = -1;
    snprintf(path, sizeof(path), "/api/v1/products/%s", g_sc.sku);
    deadline = sk_time_mono_ms() + SETTLE_MS;
    for (;;) {
        sk_test_http r;
        if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK) {
            if (r.status == 200) {
                available = jint_or(r.json, "available", -1);
                reserved = jint_or(r.json, "reserved", -1);
                sold = jint_or(r.json, "sold", -1);
            }
            sk_test_http_fini(&r);
        }
        if (available + reserved + sold == STOCK && reserved == 0 && sold == want_sold) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("product %s: available %lld reserved %lld sold %lld; want sum %d, reserved 0, sold %lld",
                     g_sc.sku, (long long)available, (long long)reserved, (long long)sold, STOCK,
                     (long long)want_sold);
        }
        pause_ms(50);
    }
    /* Customer: limit - available credit == the approved totals. */
    snprintf(path, sizeof(path), "/api/v1/customers/%s", g_sc.customer);
    deadline = sk_time_mono_ms() + SETTLE_MS;
    for (;;) {
        sk_test_http r;
        if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK) {
            if (r.status == 200) {
                credit = jint_or(r.json, "available_credit_cents", -1);
            }
            sk_test_http_fini(&r);
        }
        if (credit == LIMIT - want_spent) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("customer %s: available credit %lld, want %lld", g_sc.customer, (long long)credit,
                     (long long)(LIMIT - want_spent));
        }
        pause_ms(50);
    }
}

static void test_killed_orderview_leaves_registry_and_rejoins(void **state)
{
    (void)state;
    pthread_t clients[N_CLIENTS];
    status_row rows[64];

    (void)await_all_ready(rows, 64);
    memset(&g_sc, 0, sizeof(g_sc));
    seed_product(g_sc.sku, sizeof(g_sc.sku), STOCK);
    seed_customer(g_sc.customer, sizeof(g_sc.customer));
    for (int i = 0; i < N_ORDERS; i++) {
        order_req *o = &g_sc.orders[i];
        o->qty = 1 + i % 3;
        unique(o->key, sizeof(o->key), "inst-key");
        snprintf(o->body, sizeof(o->body), "{\"customer_id\":\"%s\",\"items\":[{\"sku\":\"%s\",\"quantity\":%d}]}",
                 g_sc.customer, g_sc.sku, o->qty);
    }
    pid_t pid = sk_test_system_instance_pid(&g_sys, "orderview-2");
    assert_true(pid > 0);
    for (int i = 0; i < N_CLIENTS; i++) {
        assert_int_equal(pthread_create(&clients[i], NULL, client_main, (void *)(intptr_t)i), 0);
    }
    while (atomic_load(&g_sc.n_accepted) < 2) {
        pause_ms(10); /* the kill lands mid-burst; the clients give up after SUBMIT_MS */
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    int64_t t_kill = sk_time_mono_ms();
    fprintf(stderr, "[kill orderview-2] SIGKILL pid %d after %d accepted orders\n", (int)pid,
            atomic_load(&g_sc.n_accepted));

    bool was_absent = false;
    int64_t gone_ms = await_gone(pid, t_kill, &was_absent);
    fprintf(stderr, "[kill orderview-2] pid %d gone from skald status after %lld ms (%s)\n", (int)pid,
            (long long)gone_ms, was_absent ? "entry expired" : "entry replaced by the restarted process");

    pid_t new_pid = 0;
    assert_int_equal(sk_test_system_await_instance(&g_sys, "orderview-2", pid, RESTART_MS, &new_pid), SK_OK);
    int64_t deadline = sk_time_mono_ms() + RESTART_MS;
    for (;;) {
        int n = read_status(rows, 64);
        const status_row *r = n > 0 ? find_row(rows, n, "orderview-2") : NULL;
        if (r != NULL && r->is_ready && r->pid == (int)new_pid) {
            break;
        }
        if (sk_time_mono_ms() > deadline) {
            fail_msg("orderview-2 (new pid %d) not listed ready within %d ms", (int)new_pid, RESTART_MS);
        }
        pause_ms(200);
    }
    fprintf(stderr, "[kill orderview-2] restarted as pid %d, listed ready after %lld ms\n", (int)new_pid,
            (long long)(sk_time_mono_ms() - t_kill));

    for (int i = 0; i < N_CLIENTS; i++) {
        assert_int_equal(pthread_join(clients[i], NULL), 0);
    }
    check_orders();
    for (int i = 0; i < N_ORDERS; i++) {
        json_decref(g_sc.orders[i].view);
        g_sc.orders[i].view = NULL;
    }
    /* The restarted instance serves again and the others are all still ready. */
    (void)await_all_ready(rows, 64);
}

/*
 * A hung instance (SIGSTOP: alive for the kernel, silent for everyone else)
 * stops heartbeating to discovery, so its entry expires within the TTL (6 s),
 * before skald up's watchdog (30 s without its heartbeat on the pipe) kills
 * it; then skald up restarts it, and it is listed ready again, with nothing
 * done by hand.
 */
static void test_hung_orderview_expires_and_is_restarted(void **state)
{
    (void)state;
    status_row rows[64];
    char log_path[320];

    (void)await_all_ready(rows, 64);
    pid_t pid = sk_test_system_instance_pid(&g_sys, "orderview-2");
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int64_t t_stop = sk_time_mono_ms();
    bool was_absent = false;
    int64_t gone_ms = await_gone(pid, t_stop, &was_absent);
    fprintf(stderr, "[stop orderview-2] pid %d gone from skald status after %lld ms (TTL %d ms)\n", (int)pid,
            (long long)gone_ms, SK_DISCOVERY_DEFAULT_TTL_MS);
    assert_true(was_absent); /* its entry expired; the watchdog had not acted yet */

    pid_t new_pid = 0;
    assert_int_equal(sk_test_system_await_instance(&g_sys, "orderview-2", pid,
                                                   WATCHDOG_MS + RESTART_MS, &new_pid),
                     SK_OK);
    int64_t restarted_ms = sk_time_mono_ms() - t_stop;
    assert_true(restarted_ms >=
                WATCHDOG_MS - 1000); /* not before the watchdog's silence (less a beat) */
    int n = await_all_ready(rows, 64);
    assert_int_equal(find_row(rows, n, "orderview-2")->pid, (int)new_pid);
    fprintf(stderr,
            "[stop orderview-2] restarted by the watchdog as pid %d after %lld ms, listed ready "
            "after %lld ms\n",
            (int)new_pid, (long long)restarted_ms, (long long)(sk_time_mono_ms() - t_stop));
    snprintf(log_path, sizeof(log_path), "%s/skald-up.log", g_sys.data_dir);
    char *log = sk_test_read_file(log_path, NULL);
    char line[96];
    snprintf(line, sizeof(line), "orderview-2 (pid %d) sent no watchdog heartbeat for", (int)pid);
    assert_non_null(log);
    assert_non_null(strstr(log, line));
    sk_free(log);
}

/* ---------------------------------------------------------------- fixture */

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-instances") != SK_OK) {
        return -1;
    }
    if (sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-instances: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-instances: skald up exited with %d (data kept in %s)\n", rc, g_sys.data_dir);
        return -1;
    }
    sk_test_system_cleanup(&g_sys);
    sk_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- skald bench */

static int64_t jint_at(const json_t *o, const char *k)
{
    return jint_or(o, k, -1);
}

/* Run `skald bench --data DATA --json @p args` against the system; its JSON (its text in @p out). */
static json_t *bench_json(const char *args, sk_buf *out)
{
    char cmd[700];
    char line[4096];
    json_error_t jerr;

    /* Proxies named by the environment lead nowhere: the bench must go to the gateway itself. */
    snprintf(cmd, sizeof(cmd),
             "http_proxy=http://127.0.0.1:1 all_proxy=http://127.0.0.1:1 "
             "%s/skald bench --data %s --json %s",
             SK_BIN_DIR, g_sys.data_dir, args);
    sk_buf_init(out, 1024 * 1024);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p) != NULL) {
        assert_int_equal(sk_buf_append_str(out, line), SK_OK);
    }
    assert_int_equal(pclose(p), 0);
    json_t *r = json_loadb(out->data != NULL ? out->data : "", out->len, 0, &jerr);
    if (r == NULL) {
        fail_msg("skald bench --json: %s in: %.300s", jerr.text, out->data != NULL ? out->data : "");
    }
    return r;
}

/*
 * JetStream per order, on skald.yaml's happy path: 12 messages (2 order
 * events, 3 replies to the order saga, 2 inventory commands and 2 events,
 * 1 payment command and 2 events) and 12 deliveries (the two orderview
 * instances share one read model, which takes each of the 6 events once).
 * A change that adds a hop to every order shows here.
 */
static void assert_jetstream_per_order(const json_t *r, const sk_buf *out)
{
    const json_t *js = json_object_get(r, "jetstream");
    if (!json_is_object(js)) {
        fail_msg("skald bench --json: no jetstream figures in: %.600s", out->data);
    }
    double published = json_number_value(json_object_get(js, "published_per_order"));
    double delivered = json_number_value(json_object_get(js, "delivered_per_order"));
    if (published < 11.5 || published > 12.5 || delivered < 11.5 || delivered > 12.5) {
        fail_msg("JetStream per order: %.2f published, %.2f delivered; expected 12 and 12",
                 published, delivered);
    }
}

/*
 * `skald bench --json` against the running system: 2 s at 20 orders/s
 * after its 1 s warm-up; every measured order accepted and followed to
 * APPROVED (the bench seeds enough stock and credit), no error, and the
 * percentiles in order.
 */
/* GetOrder queries both orderview instances answered 200, over mTLS; -1 on failure. */
static int64_t get_order_count(void)
{
    status_row rows[64];
    int n = await_all_ready(rows, 64);
    char pki[300];
    sk_tls_files tls = { 0 };
    sk_http_client *client = NULL;
    int64_t total = 0;
    const char *names[2] = { "orderview-1", "orderview-2" };

    snprintf(pki, sizeof(pki), "%s/pki", g_sys.data_dir);
    assert_int_equal(sk_tls_files_init(&tls, pki, "skald-cli"), SK_OK);
    assert_int_equal(sk_http_client_create(&client, &tls), SK_OK);
    for (int i = 0; i < 2 && total >= 0; i++) {
        int64_t c = query_count(client, find_row(rows, n, names[i])->address, "GetOrder");
        total = c >= 0 ? total + c : -1;
    }
    sk_http_client_destroy(client);
    sk_tls_files_fini(&tls);
    return total;
}

static void test_bench_json_against_running_system(void **state)
{
    sk_buf out;
    (void)state;

    int64_t gets_before = get_order_count();
    assert_true(gets_before >= 0);
    json_t *r = bench_json("--duration 2 --rate 20 --timeout 20", &out);
    /*
     * One GET per order: the bench sends it with a consistency token for the
     * version in the terminal event, so the read model answers once it shows
     * it. 60 orders: the 1 s warm-up's 20 and the measured 40; a few retries
     * allowed (a token wait that ended without the version).
     */
    int64_t gets = get_order_count() - gets_before;
    fprintf(stderr, "[bench] 60 orders, %lld GetOrder answered\n", (long long)gets);
    assert_true(gets >= 40 && gets <= 66);
    assert_string_equal(jstr_or(r, "mode", ""), "open");
    assert_true(json_real_value(json_object_get(r, "offered_rate")) == 20.0);
    assert_int_equal(jint_at(r, "sent"), 40);
    assert_int_equal(jint_at(r, "accepted"), 40);
    assert_int_equal(jint_at(r, "completed"), 40);
    assert_int_equal(jint_at(r, "approved"), 40);
    assert_int_equal(json_object_size(json_object_get(r, "errors")), 0);
    assert_int_equal(json_object_size(json_object_get(r, "rejected")), 0);
    assert_true(json_number_value(json_object_get(r, "achieved_rate")) > 0);
    const char *const lats[] = { "post_ms", "end_to_end_ms" };
    for (size_t i = 0; i < 2; i++) {
        const json_t *l = json_object_get(r, lats[i]);
        double p50 = json_number_value(json_object_get(l, "p50"));
        double p99 = json_number_value(json_object_get(l, "p99"));
        double max = json_number_value(json_object_get(l, "max"));
        assert_int_equal(jint_at(l, "count"), 40);
        assert_true(p50 > 0 && p50 <= p99 && p99 <= max);
    }
    /* End to end includes the POST. */
    assert_true(json_number_value(json_object_get(json_object_get(r, "end_to_end_ms"), "p50")) >=
                json_number_value(json_object_get(json_object_get(r, "post_ms"), "p50")));
    /* The system's own cost: every child of skald up, nats-server among them. */
    const json_t *sys = json_object_get(r, "system");
    if (!json_is_object(sys)) {
        fail_msg("skald bench --json: no system figures in: %.600s", out.data);
    }
    assert_true(jint_at(sys, "processes") >= 3);
    assert_true(json_number_value(json_object_get(sys, "cpu_ms_per_order")) > 0);
    assert_true(json_number_value(json_object_get(sys, "broker_cpu_ms_per_order")) > 0);
    assert_true(json_number_value(json_object_get(sys, "client_cpu_ms_per_order")) > 0);
    assert_true(jint_at(sys, "largest_rss_kb") >= jint_at(sys, "largest_pss_kb"));
    assert_true(jint_at(sys, "largest_pss_kb") > 0);
    assert_true(jint_at(sys, "services_rss_kb") >= jint_at(sys, "largest_rss_kb"));
    assert_true(jint_at(sys, "broker_rss_kb") > 0);
    assert_true(strlen(jstr_or(sys, "largest_service", "")) > 0);
    assert_jetstream_per_order(r, &out);
    json_decref(r);
    sk_buf_fini(&out);
}

/* Following orders by polling (no event subscription) still counts JetStream. */
static void test_bench_follow_poll_counts_jetstream(void **state)
{
    sk_buf out;
    (void)state;

    json_t *r = bench_json("--duration 1 --rate 20 --timeout 20 --follow poll", &out);
    assert_int_equal(jint_at(r, "completed"), 20);
    assert_int_equal(jint_at(r, "approved"), 20);
    assert_int_equal(jint_at(r, "followed_by_polling"), 20);
    assert_jetstream_per_order(r, &out);
    json_decref(r);
    sk_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_lists_both_instances_ready),
        cmocka_unit_test(test_bench_json_against_running_system),
        cmocka_unit_test(test_bench_follow_poll_counts_jetstream),
        cmocka_unit_test(test_gateway_balances_reads_over_orderview),
        cmocka_unit_test(test_killed_orderview_leaves_registry_and_rejoins),
        cmocka_unit_test(test_hung_orderview_expires_and_is_restarted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
