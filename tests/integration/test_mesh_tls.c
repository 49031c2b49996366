/* SPDX-License-Identifier: MIT */
/*
 * Integration test of the mesh over real TLS on 127.0.0.1: a server that
 * requires client certificates, the libcurl client with identities from a
 * throwaway CA, a second CA whose certificates must be refused, raw OpenSSL
 * clients for what the Skald client cannot do on purpose (no certificate,
 * bodies over the limit), keep-alive, timeouts and concurrency.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../unit/mesh/mesh_test_util.h"
#include "mesh/mesh_int.h"
#include "sk_test.h"
#include "sk_test_pki.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct fixture {
    sk_test_pki pki;      /* our CA */
    sk_test_pki other;    /* a CA nobody trusts */
    sk_tls_files order;   /* server identity */
    sk_tls_files payment; /* client identity */
    sk_tls_files rogue;   /* "payment" from the other CA */
    test_srv t;
    sk_http_server *srv;
    sk_http_client *client;
    char base[64];
} fixture;

static fixture *g_f;

static int group_setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(sk_test_pki_create(&f->pki), SK_OK);
    assert_int_equal(sk_test_pki_create(&f->other), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "order", &f->order), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "payment", &f->payment), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->other, "payment", &f->rogue), SK_OK);
    g_f = f;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    sk_tls_files_fini(&f->order);
    sk_tls_files_fini(&f->payment);
    sk_tls_files_fini(&f->rogue);
    sk_test_pki_destroy(&f->pki);
    sk_test_pki_destroy(&f->other);
    sk_free(f);
    return 0;
}

static int setup(void **state)
{
    fixture *f = *state;
    test_srv_init(&f->t);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .tls = &f->order,
                                  .require_client_cert = true,
                                  .n_threads = 2,
                                  .handler = test_srv_handler,
                                  .ctx = &f->t };
    assert_int_equal(sk_http_server_start(&f->srv, &cfg), SK_OK);
    snprintf(f->base, sizeof(f->base), "https://127.0.0.1:%d", sk_http_server_port(f->srv));
    assert_int_equal(sk_http_client_create(&f->client, &f->payment), SK_OK);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_client_destroy(f->client);
    f->client = NULL;
    sk_http_server_stop(f->srv);
    f->srv = NULL;
    test_srv_fini(&f->t);
    return 0;
}

static void
send_wait(sk_http_client *c, done_rec *d, const char *url, const char *expect, int64_t timeout_ms)
{
    int before = atomic_load(&d->n_done);
    sk_http_request r = {
        .method = "GET", .url = url, .expect_service = expect, .timeout_ms = timeout_ms
    };
    assert_int_equal(sk_http_client_send(c, &r, done_rec_cb, d), SK_OK);
    assert_true(done_rec_wait(d, before + 1, 20000));
}

/*
 * Raw TLS exchange with OpenSSL: connect, handshake (with a client identity
 * when @p cert is set), send @p request, read until close. Returns the
 * number of bytes read, or -1 when the handshake itself failed.
 */
static int raw_tls(int port,
                   const char *ca,
                   const char *cert,
                   const char *key,
                   const char *request,
                   char *out,
                   size_t out_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { 0 };
    struct timeval tv = { 5, 0 };
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int total = -1;

    assert_true(fd >= 0);
    assert_non_null(ctx);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert != NULL) {
        assert_int_equal(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
        total = 0;
        if (SSL_write(ssl, request, (int)strlen(request)) > 0) {
            for (;;) {
                int n = SSL_read(ssl, out + total, (int)(out_len - 1 - (size_t)total));
                if (n <= 0) {
                    break;
                }
                total += n;
                if ((size_t)total >= out_len - 1) {
                    break;
                }
            }
        }
        out[total] = '\0';
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return total;
}

static void test_mtls_request_sees_peer_service(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    json_t *o;

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    send_wait(f->client, &d, url, "order", 0);
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 200);
    assert_int_equal(sk_json_parse_object(sk_slice_from_str(d.body), &o), SK_OK);
    assert_string_equal(json_string_value(json_object_get(o, "peer")), "payment");
    json_decref(o);
    done_rec_fini(&d);
}

static void test_mtls_answer_later_from_thread(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/later", f->base);
    send_wait(f->client, &d, url, "order", 0);
    assert_int_equal(d.st, SK_OK);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.body, "later");
    done_rec_fini(&d);
}

static void test_mtls_client_without_cert_refused(void **state)
{
    fixture *f = *state;
    char out[4096];
    int handled = atomic_load(&f->t.n_handled);

    int n = raw_tls(sk_http_server_port(f->srv), f->pki.dir[0] ? f->order.ca_file : NULL, NULL,
                    NULL, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
    assert_true(n <= 0); /* handshake refused or connection closed: no HTTP answer */
    assert_int_equal(atomic_load(&f->t.n_handled), handled);

    /* The same raw client with a certificate is answered (the probe itself works). */
    n = raw_tls(sk_http_server_port(f->srv), f->order.ca_file, f->payment.cert_file,
                f->payment.key_file, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 200"));
}

static void test_mtls_client_from_other_ca_refused(void **state)
{
    fixture *f = *state;
    sk_http_client *c = NULL;
    done_rec d;
    char url[128];
    sk_tls_files mixed = { f->payment.ca_file, f->rogue.cert_file, f->rogue.key_file };
    int handled = atomic_load(&f->t.n_handled);

    assert_int_equal(sk_http_client_create(&c, &mixed), SK_OK);
    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    send_wait(c, &d, url, "order", 5000);
    assert_int_not_equal(d.st, SK_OK);
    assert_true(d.st == SK_ETLS || d.st == SK_EIO);
    assert_int_equal(d.status, 0);
    assert_int_equal(atomic_load(&f->t.n_handled), handled);
    sk_http_client_destroy(c);
    done_rec_fini(&d);
}

static void test_mtls_wrong_server_identity(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    int handled = atomic_load(&f->t.n_handled);

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    send_wait(f->client, &d, url, "inventory", 0);
    assert_int_equal(d.st, SK_ETLS);
    assert_non_null(strstr(d.err, "identity mismatch"));
    assert_non_null(strstr(d.err, "sa/order"));
    assert_int_equal(atomic_load(&f->t.n_handled), handled);

    /* Also on a connection that is already open and verified for "order". */
    send_wait(f->client, &d, url, "order", 0);
    assert_int_equal(d.status, 200);
    send_wait(f->client, &d, url, "inventory", 0);
    assert_int_equal(d.st, SK_ETLS);
    assert_int_equal(atomic_load(&f->t.n_handled), handled + 1);
    done_rec_fini(&d);
}

static void test_mtls_body_over_limit_413(void **state)
{
    fixture *f = *state;
    char out[4096];
    char head[256];
    int handled = atomic_load(&f->t.n_handled);

    snprintf(head, sizeof(head),
             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %u\r\n\r\n",
             SK_MAX_HTTP_BODY + 1u);
    int n = raw_tls(sk_http_server_port(f->srv), f->order.ca_file, f->payment.cert_file,
                    f->payment.key_file, head, out, sizeof(out));
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    assert_non_null(strstr(out, "application/problem+json"));
    assert_non_null(strstr(out, "\"status\":413"));
    assert_int_equal(atomic_load(&f->t.n_handled), handled);
}

static void test_mtls_keep_alive_100_requests(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    uint64_t before = sk__http_server_connections_total(f->srv);

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    for (int i = 0; i < 100; i++) {
        send_wait(f->client, &d, url, "order", 0);
        assert_int_equal(d.status, 200);
    }
    assert_int_equal(sk__http_server_connections_total(f->srv) - before, 1);
    done_rec_fini(&d);
}

static void test_client_connect_refused_unavailable(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];
    int port = sk_test_free_port();

    assert_true(port > 0);
    done_rec_init(&d);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", port);
    send_wait(f->client, &d, url, "order", 0);
    assert_int_equal(d.st, SK_EUNAVAILABLE);
    assert_non_null(strstr(d.err, "onnect"));
    done_rec_fini(&d);
}

static void test_client_timeout(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/hold", f->base);
    send_wait(f->client, &d, url, "order", 200);
    assert_int_equal(d.st, SK_ETIMEDOUT);
    assert_true(sk_test_wait_until(test_srv_has_held, &f->t, 10000));
    sk_http_req_respond(test_srv_take_held(&f->t), 200, "text/plain", "too late", 8, NULL);
    done_rec_fini(&d);
}

static void test_mtls_200_concurrent(void **state)
{
    fixture *f = *state;
    done_rec d;
    char url[128];

    done_rec_init(&d);
    for (int i = 0; i < 200; i++) {
        snprintf(url, sizeof(url), "%s/%s", f->base, i % 4 == 0 ? "later" : "echo");
        sk_http_request r = { .method = i % 2 ? "POST" : "GET",
                              .url = url,
                              .body = i % 2 ? "{\"n\":1}" : NULL,
                              .body_len = i % 2 ? 7 : 0,
                              .expect_service = "order",
                              .timeout_ms = 30000 };
        assert_int_equal(sk_http_client_send(f->client, &r, done_rec_cb, &d), SK_OK);
    }
    assert_true(done_rec_wait(&d, 200, 60000));
    assert_int_equal(atomic_load(&d.n_ok), 200);
    done_rec_fini(&d);
}

static void test_upstream_over_mtls(void **state)
{
    fixture *f = *state;
    sk_upstream *order = NULL, *wrong = NULL;
    done_rec d;
    char ep[64];
    const char *eps[1] = { ep };
    sk_http_request r = { .method = "GET", .url = "/echo" };

    snprintf(ep, sizeof(ep), "127.0.0.1:%d", sk_http_server_port(f->srv));
    assert_int_equal(sk_upstream_create(&order, f->client, "order", NULL, NULL), SK_OK);
    assert_int_equal(sk_upstream_create(&wrong, f->client, "inventory", NULL, NULL), SK_OK);
    assert_int_equal(sk_upstream_set_endpoints(order, eps, 1), SK_OK);
    assert_int_equal(sk_upstream_set_endpoints(wrong, eps, 1), SK_OK);
    done_rec_init(&d);
    assert_int_equal(sk_upstream_send(order, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 1, 20000));
    assert_int_equal(d.status, 200);
    assert_int_equal(sk_upstream_send(wrong, &r, done_rec_cb, &d), SK_OK);
    assert_true(done_rec_wait(&d, 2, 20000));
    assert_int_equal(d.st, SK_ETLS);
    done_rec_fini(&d);
    sk_upstream_destroy(order);
    sk_upstream_destroy(wrong);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mtls_request_sees_peer_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_answer_later_from_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_client_without_cert_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_client_from_other_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_wrong_server_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_body_over_limit_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_keep_alive_100_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_connect_refused_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_200_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_over_mtls, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
