/* SPDX-License-Identifier: MIT */
/*
 * System test of mesh identity and authorization on the running shop:
 * every internal listener requires a certificate from the local CA, and a
 * valid certificate with the wrong identity gets 403 problem+json (deny by
 * default), while the identity the system file allows gets through; and
 * certificates rotate without a restart: on SIGHUP `skald up` re-issues the
 * missing ones and every process re-reads its own (HTTP server, HTTP client
 * and a new NATS connection), after which orders still go through. Also
 * `skald dlq list` / `redrive` through the CLI's NATS identity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include <skald/mesh.h>

#include "msg/msg_int.h"

#include "sk_test.h"
#include "sk_test_system.h"

static sk_test_system g_sys;
static char g_order_addr[64];

/* Find an instance's address in `skald status` output. */
/* Address of @p instance as `skald status` lists it. */
static void find_address(const char *instance, char *out, size_t out_len)
{
    if (sk_test_system_instance_address(&g_sys, instance, out, out_len) != SK_OK) {
        fail_msg("%s", sk_error_message());
    }
}

typedef struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_done;
    sk_status st;
    int status;
    char body[1024];
    char content_type[128];
} answer;

static void on_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    answer *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->st = st;
    if (resp != NULL) {
        a->status = resp->status;
        snprintf(a->body, sizeof(a->body), "%.*s", (int)resp->body.len, (const char *)resp->body.ptr);
        snprintf(a->content_type, sizeof(a->content_type), "%s",
                 resp->content_type != NULL ? resp->content_type : "");
    }
    a->is_done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* One request to the order instance as @p identity (a name in DATA/pki, or NULL for no certificate). */
static void call_order(const char *identity, const char *method, const char *path, const char *body, answer *a)
{
    char pki[300], url[200];
    sk_tls_files tls = { 0 };
    sk_http_client *client = NULL;
    snprintf(pki, sizeof(pki), "%s/pki", g_sys.data_dir);
    assert_int_equal(sk_tls_files_init(&tls, pki, identity != NULL ? identity : "skald-cli"), SK_OK);
    sk_tls_files use = tls;
    if (identity == NULL) {
        /* Trust the CA but present no certificate. */
        use.cert_file = NULL;
        use.key_file = NULL;
    }
    assert_int_equal(sk_http_client_create(&client, &use), SK_OK);
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    snprintf(url, sizeof(url), "https://%s%s", g_order_addr, path);
    const char *headers[] = { "Content-Type: application/json", NULL };
    sk_http_request req = { .method = method,
                            .url = url,
                            .headers = headers,
                            .body = body,
                            .body_len = body != NULL ? strlen(body) : 0,
                            .timeout_ms = 5000,
                            .expect_service = "order" };
    assert_int_equal(sk_http_client_send(client, &req, on_done, a), SK_OK);
    pthread_mutex_lock(&a->mu);
    while (!a->is_done) {
        pthread_cond_wait(&a->cv, &a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    sk_http_client_destroy(client);
    sk_tls_files_fini(&tls);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
}

static int group_setup(void **state)
{
    (void)state;
    if (sk_init("system-test") != SK_OK || sk_test_system_start(&g_sys, 60000) != SK_OK) {
        fprintf(stderr, "system-test: %s\n", sk_error_message());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = sk_test_system_stop(&g_sys);
    if (rc != 0) {
        fprintf(stderr, "system-test: skald up exited with %d (data kept in %s)\n", rc, g_sys.data_dir);
        return -1;
    }
    sk_test_system_cleanup(&g_sys);
    sk_shutdown();
    return 0;
}

static void test_wrong_identity_gets_403_problem_json(void **state)
{
    (void)state;
    answer a;
    find_address("order-1", g_order_addr, sizeof(g_order_addr));
    /* psp holds a valid certificate from the CA, but only the gateway may place orders. */
    call_order("psp", "POST", "/orders", "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"quantity\":1}]}", &a);
    assert_int_equal(a.st, SK_OK);
    assert_int_equal(a.status, 403);
    assert_int_equal(strncmp(a.content_type, "application/problem+json", 24), 0);
    assert_non_null(strstr(a.body, "psp"));
    /* So is the CLI's identity, on a business route. */
    call_order("skald-cli", "POST", "/orders", "{}", &a);
    assert_int_equal(a.status, 403);
}

static void test_allowed_identity_passes_and_operational_paths_are_open_to_the_mesh(void **state)
{
    (void)state;
    answer a;
    /* The gateway's identity reaches the handler: validation answers 400, not 403. */
    call_order("gateway", "POST", "/orders", "{\"customer_id\":\"c\",\"items\":[]}", &a);
    assert_int_equal(a.st, SK_OK);
    assert_int_equal(a.status, 400);
    /* /readyz and /metrics are open to every mesh identity. */
    call_order("skald-cli", "GET", "/readyz", NULL, &a);
    assert_int_equal(a.status, 200);
    call_order("psp", "GET", "/metrics", NULL, &a);
    assert_int_equal(a.status, 200);
}

static void test_no_certificate_is_refused_in_the_handshake(void **state)
{
    (void)state;
    char cmd[700], out[64] = "";
    /* curl without a client certificate: the server refuses it in the TLS handshake, no HTTP status. */
    snprintf(cmd, sizeof(cmd), "curl -sk -o /dev/null -w '%%{http_code}' --max-time 5 https://%s/readyz", g_order_addr);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (fgets(out, sizeof(out), p) == NULL) {
        out[0] = '\0';
    }
    int rc = pclose(p);
    assert_int_not_equal(rc, 0);
    assert_string_equal(out, "000");
}

/* SHA-256 fingerprint line of the certificate `openssl` reads from @p source_cmd's output. */
static void fingerprint(const char *source_cmd, char *out, size_t out_len)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null",
             source_cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (fgets(out, (int)out_len, p) == NULL) {
        out[0] = '\0';
    }
    pclose(p);
}

/* The certificate the order instance presents now, and the one in DATA/pki/order.pem. */
static void order_fingerprints(char served[128], char on_disk[128])
{
    char cmd[1000];
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect %s -CAfile %s/pki/ca.pem -cert %s/pki/skald-cli.pem "
             "-key %s/pki/skald-cli.key </dev/null",
             g_order_addr, g_sys.data_dir, g_sys.data_dir, g_sys.data_dir);
    fingerprint(cmd, served, 128);
    snprintf(cmd, sizeof(cmd), "cat %s/pki/order.pem", g_sys.data_dir);
    fingerprint(cmd, on_disk, 128);
}

typedef struct log_wait {
    const char *instance;
    const char *text;
} log_wait;

static bool log_has(void *ctx)
{
    const log_wait *w = ctx;
    char path[400];
    snprintf(path, sizeof(path), "%s/run/logs/%s.log", g_sys.data_dir, w->instance);
    char *text = sk_test_read_file(path, NULL);
    bool found = text != NULL && strstr(text, w->text) != NULL;
    sk_free(text);
    return found;
}

/* POST through the gateway; the JSON answer's string @p field, copied to @p out. */
static void post(const char *path, const char *body, int want_status, const char *field, char *out, size_t out_len)
{
    sk_test_http r;
    assert_int_equal(sk_test_http_send(&g_sys, "POST", path, body, strlen(body), NULL, &r), SK_OK);
    if (r.status != want_status) {
        fail_msg("POST %s: %d %s", path, r.status, r.body != NULL ? r.body : "");
    }
    if (field != NULL) {
        const char *v = json_string_value(json_object_get(r.json, field));
        assert_non_null(v);
        snprintf(out, out_len, "%s", v);
    }
    sk_test_http_fini(&r);
}

/* An order for one unit, followed until it is approved: HTTP and NATS both carry it. */
static void order_goes_through(void)
{
    char customer[80], order[80], sku[40], body[300], path[160];
    char id[SK_UUID_LEN];

    sk_uuid7(id);
    snprintf(sku, sizeof(sku), "ROT-%.8s", id + 28);
    snprintf(body, sizeof(body), "{\"sku\":\"%s\",\"name\":\"Rotor\",\"price_cents\":100,\"stock\":5}", sku);
    post("/api/v1/products", body, 201, NULL, NULL, 0);
    post("/api/v1/customers", "{\"name\":\"Rota\",\"credit_limit_cents\":1000}", 201, "customer_id", customer,
         sizeof(customer));
    snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
             customer, sku);
    post("/api/v1/orders", body, 202, "order_id", order, sizeof(order));
    snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
    int64_t deadline = sk_time_mono_ms() + 30000;
    char status[32] = "";
    while (sk_time_mono_ms() < deadline) {
        sk_test_http r;
        if (sk_test_http_send(&g_sys, "GET", path, NULL, 0, NULL, &r) == SK_OK && r.status == 200) {
            snprintf(status, sizeof(status), "%s", json_string_value(json_object_get(r.json, "status")));
        }
        sk_test_http_fini(&r);
        if (status[0] != '\0' && strcmp(status, "PENDING") != 0) {
            break;
        }
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL); /* poll pace */
    }
    assert_string_equal(status, "APPROVED");
}

static void test_sighup_rotates_certificates_without_restart(void **state)
{
    (void)state;
    static const char *const instances[] = { "customer-1", "inventory-1", "inventory-2", "payment-1", "payment-2",
                                             "order-1",    "orderview-1", "orderview-2", "gateway-1" };
    enum { N = sizeof(instances) / sizeof(instances[0]) };
    static const char *const identities[] = { "customer", "inventory", "payment", "order", "orderview", "gateway" };
    pid_t pids[N];
    char served[128], on_disk[128], old_disk[128];

    find_address("order-1", g_order_addr, sizeof(g_order_addr));
    for (size_t i = 0; i < N; i++) {
        pids[i] = sk_test_system_instance_pid(&g_sys, instances[i]);
        assert_true(pids[i] > 0);
    }
    order_fingerprints(served, old_disk);
    assert_string_equal(served, old_disk);

    /* Retire the services' certificates: skald up issues new ones on SIGHUP. */
    for (size_t i = 0; i < sizeof(identities) / sizeof(identities[0]); i++) {
        char path[400];
        snprintf(path, sizeof(path), "%s/pki/%s.pem", g_sys.data_dir, identities[i]);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof(path), "%s/pki/%s.key", g_sys.data_dir, identities[i]);
        assert_int_equal(unlink(path), 0);
    }
    assert_int_equal(kill(g_sys.pid, SIGHUP), 0);
    for (size_t i = 0; i < N; i++) {
        log_wait w = { instances[i], "NATS client certificate reloaded" };
        if (!sk_test_wait_until(log_has, &w, 30000)) {
            fail_msg("%s never reloaded its NATS certificate", instances[i]);
        }
    }
    /* The order instance serves the new certificate, in the same process. */
    order_fingerprints(served, on_disk);
    assert_string_not_equal(on_disk, old_disk);
    assert_string_equal(served, on_disk);
    order_goes_through();
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(sk_test_system_instance_pid(&g_sys, instances[i]), pids[i]);
    }
}

/* `skald ARGS`; its output (caller frees) and exit code. */
static char *cli(const char *args, int *code)
{
    char *out = NULL;
    if (sk_test_system_cli(&g_sys, args, &out, code) != SK_OK) {
        fail_msg("skald %s: %s", args, sk_error_message());
    }
    return out;
}

typedef struct dlq_wait {
    const char *aggregate;
    const char *state;    /* wanted state of the entry */
    const char *redrive_of; /* NULL, or the entry must be a redrive of this id */
    char id[64];          /* found entry */
    char error[512];
} dlq_wait;

/* `skald dlq list --all --json` has an entry for the aggregate in the wanted state. */
static bool dlq_has(void *ctx)
{
    dlq_wait *w = ctx;
    int code = -1;
    char *out = cli("dlq list --all --json", &code);
    json_t *arr = code == 0 && out != NULL ? json_loads(out, 0, NULL) : NULL;
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *agg = json_string_value(json_object_get(e, "aggregate"));
        const char *state = json_string_value(json_object_get(e, "state"));
        const char *of = json_string_value(json_object_get(e, "redrive_of"));
        if (agg != NULL && state != NULL && strcmp(agg, w->aggregate) == 0 && strcmp(state, w->state) == 0 &&
            (w->redrive_of == NULL || (of != NULL && strcmp(of, w->redrive_of) == 0))) {
            snprintf(w->id, sizeof(w->id), "%s", json_string_value(json_object_get(e, "id")));
            snprintf(w->error, sizeof(w->error), "%s", json_string_value(json_object_get(e, "error")));
            found = true;
        }
    }
    json_decref(arr);
    sk_free(out);
    return found;
}

static void test_dlq_cli_lists_and_redrives_a_dead_letter(void **state)
{
    (void)state;
    char pki[300], url_file[300], aggregate[64], id[SK_UUID_LEN];
    sk_tls_files tls = { 0 };
    sk_bus *bus = NULL;
    natsMsg *m = NULL;
    sk_envelope env;
    int code = -1;

    /* A command inventory can never handle (no order_id), sent with the CLI's NATS identity. */
    snprintf(pki, sizeof(pki), "%s/pki", g_sys.data_dir);
    snprintf(url_file, sizeof(url_file), "%s/run/nats.url", g_sys.data_dir);
    char *servers = sk_test_read_file(url_file, NULL);
    assert_non_null(servers);
    servers[strcspn(servers, "\n")] = '\0';
    assert_int_equal(sk_tls_files_init(&tls, pki, "skald-cli"), SK_OK);
    sk_bus_config bc = { .servers = servers,
                         .ca_file = tls.ca_file,
                         .cert_file = tls.cert_file,
                         .key_file = tls.key_file,
                         .name = "system-test",
                         .inbox_prefix = "_INBOX.skald-cli" };
    assert_int_equal(sk_bus_open(&bus, &bc), SK_OK);
    sk_uuid7(id);
    snprintf(aggregate, sizeof(aggregate), "dlq-%.8s", id + 28);
    sk_envelope_init(&env, "Bogus", "system-test", aggregate, NULL);
    assert_int_equal(natsMsg_Create(&m, "inventory.commands.Bogus", NULL, "{}", 2), NATS_OK);
    assert_int_equal(sk__envelope_encode(&env, m), SK_OK);
    assert_int_equal(js_PublishMsg(NULL, sk__bus_js(bus), m, NULL, NULL), NATS_OK);
    natsMsg_Destroy(m);
    sk_bus_close(bus);
    sk_tls_files_fini(&tls);
    sk_free(servers);

    /* `skald dlq list` shows it with the reason; the table form works too. */
    dlq_wait w = { .aggregate = aggregate, .state = "open" };
    if (!sk_test_wait_until(dlq_has, &w, 30000)) {
        fail_msg("dead letter for %s never listed", aggregate);
    }
    if (strstr(w.error, "order_id") == NULL) {
        fail_msg("dead letter reason does not name the missing field: %s", w.error);
    }
    char *table = cli("dlq list", &code);
    assert_int_equal(code, 0);
    assert_non_null(strstr(table, w.id));
    sk_free(table);

    /* Redrive: it fails again the same way, so a new dead letter supersedes the first. */
    char args[200], first[64];
    snprintf(first, sizeof(first), "%s", w.id);
    snprintf(args, sizeof(args), "dlq redrive %s", first);
    sk_free(cli(args, &code));
    assert_int_equal(code, 0);
    dlq_wait again = { .aggregate = aggregate, .state = "open", .redrive_of = first };
    if (!sk_test_wait_until(dlq_has, &again, 30000)) {
        fail_msg("redrive of %s never came back as a dead letter", first);
    }
    dlq_wait old = { .aggregate = aggregate, .state = "superseded" };
    assert_true(sk_test_wait_until(dlq_has, &old, 30000));
    assert_string_equal(old.id, first);
    /* An unknown id is refused. */
    sk_free(cli("dlq redrive 00000000-0000-7000-8000-000000000000", &code));
    assert_int_not_equal(code, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_identity_gets_403_problem_json),
        cmocka_unit_test(test_allowed_identity_passes_and_operational_paths_are_open_to_the_mesh),
        cmocka_unit_test(test_no_certificate_is_refused_in_the_handshake),
        cmocka_unit_test(test_dlq_cli_lists_and_redrives_a_dead_letter),
        cmocka_unit_test(test_sighup_rotates_certificates_without_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
