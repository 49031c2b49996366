/* SPDX-License-Identifier: MIT */
/*
 * Start-up and shutdown of a real service binary (skald-customer, over
 * mTLS, with a real nats-server): started while nats-server is down or its
 * database cannot be opened, it answers /readyz 503 problem+json naming the
 * reason and becomes ready once they are back; at SIGTERM a request in
 * progress gets its answer, new connections are refused (a kept-alive one is
 * answered 503), and the process exits 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sk_test.h"
#include "sk_test_nats.h"
#include "sk_test_pki.h"

static const char system_yaml[] = "system: lifecycle\n"
                                  "services:\n"
                                  "  customer:\n"
                                  "    commands: [RegisterCustomer]\n"
                                  "    emits: [CustomerRegistered]\n";

typedef struct fixture {
    sk_test_pki pki;
    sk_tls_files cli_tls;
    sk_tls_files nats_tls;
    sk_test_nats *nats;
    sk_http_client *client;
    char data[64];
    int port;
    pid_t pid;
} fixture;

/* ---------------------------------------------------------------- HTTP, synchronously */

typedef struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_done;
    sk_status st;
    int status;
    char body[2048];
} answer;

static void on_answer(sk_status st, const sk_http_response *resp, void *ctx)
{
    answer *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->st = st;
    if (st == SK_OK) {
        a->status = resp->status;
        size_t n = resp->body.len < sizeof(a->body) - 1 ? resp->body.len : sizeof(a->body) - 1;
        memcpy(a->body, resp->body.ptr, n);
        a->body[n] = '\0';
    }
    a->is_done = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void send_async(fixture *f, const char *path, answer *a)
{
    char url[256];
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", f->port, path);
    sk_http_request req = {
        .method = "GET", .url = url, .timeout_ms = 5000, .is_reuse_forbidden = true
    };
    assert_int_equal(sk_http_client_send(f->client, &req, on_answer, a), SK_OK);
}

static void wait_answer(answer *a)
{
    pthread_mutex_lock(&a->mu);
    while (!a->is_done) {
        pthread_cond_wait(&a->cv, &a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
}

static void get(fixture *f, const char *path, answer *a)
{
    send_async(f, path, a);
    wait_answer(a);
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    char path[160];
    assert_non_null(f);
    assert_int_equal(sk_init("test-svc-lifecycle"), SK_OK);
    assert_int_equal(sk_test_pki_create(&f->pki), SK_OK);
    sk_tls_files svc_tls;
    assert_int_equal(sk_test_pki_issue(&f->pki, "customer", &svc_tls), SK_OK);
    sk_tls_files_fini(&svc_tls);
    assert_int_equal(sk_test_pki_issue(&f->pki, "skald-cli", &f->cli_tls), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "nats-server", &f->nats_tls), SK_OK);
    sk_test_nats_options no = { .cert_file = f->nats_tls.cert_file,
                                .key_file = f->nats_tls.key_file,
                                .ca_file = f->nats_tls.ca_file,
                                .verify = true };
    assert_int_equal(sk_test_nats_start(&f->nats, &no), SK_OK);
    assert_int_equal(sk_test_tmpdir(f->data, sizeof(f->data)), SK_OK);
    snprintf(path, sizeof(path), "%s/pki", f->data);
    assert_int_equal(symlink(f->pki.dir, path), 0);
    snprintf(path, sizeof(path), "%s/skald.yaml", f->data);
    assert_int_equal(sk_test_write_file(path, system_yaml, sizeof(system_yaml) - 1), SK_OK);
    assert_int_equal(sk_http_client_create(&f->client, &f->cli_tls), SK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    sk_http_client_destroy(f->client);
    sk_test_nats_stop(f->nats);
    sk_tls_files_fini(&f->cli_tls);
    sk_tls_files_fini(&f->nats_tls);
    sk_test_pki_destroy(&f->pki);
    sk_test_rmrf(f->data);
    sk_free(f);
    sk_shutdown();
    return 0;
}

static void service_start(fixture *f)
{
    char config[160], port[16];
    f->port = sk_test_free_port();
    assert_true(f->port > 0);
    snprintf(config, sizeof(config), "%s/skald.yaml", f->data);
    snprintf(port, sizeof(port), "%d", f->port);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        setenv("SKALD_NATS_URL", sk_test_nats_url(f->nats), 1);
        setenv("SKALD_TEST_ROUTES", "1", 1);
        execl(SK_BIN_DIR "/skald-customer", "skald-customer", "--service", "customer", "--instance",
              "customer-1", "--config", config, "--data", f->data, "--port", port, (char *)NULL);
        _exit(127);
    }
}

static int service_wait_exit(fixture *f)
{
    int status = 0;
    assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
    f->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---------------------------------------------------------------- polling */

typedef struct ready_poll {
    fixture *f;
    int want_status;
    const char *want_text; /* in the body, or NULL */
    answer last;
} ready_poll;

static bool readyz_is(void *ctx)
{
    ready_poll *p = ctx;
    get(p->f, "/readyz", &p->last);
    return p->last.st == SK_OK && p->last.status == p->want_status &&
           (p->want_text == NULL || strstr(p->last.body, p->want_text) != NULL);
}

/* A TCP connect to the service is refused (it stopped listening). */
static bool connect_refused(void *ctx)
{
    fixture *f = ctx;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool refused;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    refused = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
              errno == ECONNREFUSED;
    if (fd >= 0) {
        close(fd);
    }
    return refused;
}

static void wait_readyz(fixture *f, int status, const char *text, int64_t timeout_ms)
{
    ready_poll p = { .f = f, .want_status = status, .want_text = text };
    bool ok = sk_test_wait_until(readyz_is, &p, timeout_ms);
    if (!ok) {
        print_error("readyz: wanted %d with \"%s\", last: st %d status %d body %s\n", status,
                    text != NULL ? text : "", (int)p.last.st, p.last.status, p.last.body);
    }
    assert_true(ok);
}

static bool has_in_flight(void *ctx)
{
    answer a;
    get(ctx, "/healthz", &a);
    return a.st == SK_OK && a.status == 200 && strstr(a.body, "\"in_flight\":0") == NULL;
}

/* ---------------------------------------------------------------- tests */

static void test_start_without_nats_then_drain_at_sigterm(void **state)
{
    fixture *f = *state;
    answer a;

    sk_test_nats_kill(f->nats); /* down before the service starts */
    int64_t t0 = sk_time_mono_ms();
    service_start(f);
    wait_readyz(f, 503, "nats: not connected", 10000);
    get(f, "/readyz", &a);
    assert_int_equal(a.status, 503);
    assert_non_null(strstr(a.body, "\"title\":\"Service Unavailable\""));
    get(f, "/healthz", &a);
    assert_int_equal(a.status, 200);
    get(f, "/test/slow?ms=0", &a); /* not wired yet: refused */
    assert_int_equal(a.status, 503);

    assert_int_equal(sk_test_nats_restart(f->nats), SK_OK);
    wait_readyz(f, 200, NULL, 20000);
    print_message("ready %lld ms after start (nats-server started in between)\n",
                  (long long)(sk_time_mono_ms() - t0));
    get(f, "/test/slow?ms=0", &a);
    assert_int_equal(a.status, 200);

    /* SIGTERM while a slow request is in service code. */
    answer slow;
    send_async(f, "/test/slow?ms=1500", &slow);
    assert_true(sk_test_wait_until(has_in_flight, f, 5000));
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    /* The drain: new connections are refused, so callers retry another instance... */
    assert_true(sk_test_wait_until(connect_refused, f, 5000));
    /* ...and a request on a kept-alive connection, if the client has one, gets 503. */
    get(f, "/test/slow?ms=0", &a);
    assert_true(a.st != SK_OK || a.status == 503);
    wait_answer(&slow);
    assert_int_equal(slow.st, SK_OK);
    assert_int_equal(slow.status, 200);
    assert_non_null(strstr(slow.body, "\"slept_ms\":1500"));
    assert_int_equal(service_wait_exit(f), 0);
}

static void test_start_without_database_then_ready(void **state)
{
    fixture *f = *state;
    char dir[160], db[200];

    /* The database file cannot be opened: a directory stands where it should be. */
    snprintf(dir, sizeof(dir), "%s/db", f->data);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(db, sizeof(db), "%s/customer.db", dir);
    assert_int_equal(mkdir(db, 0700), 0);
    service_start(f);
    wait_readyz(f, 503, "database: ", 10000);
    assert_int_equal(rmdir(db), 0);
    wait_readyz(f, 200, NULL, 20000);
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    assert_int_equal(service_wait_exit(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_without_nats_then_drain_at_sigterm, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_start_without_database_then_ready, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
