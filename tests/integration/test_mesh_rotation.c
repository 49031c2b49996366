/* SPDX-License-Identifier: MIT */
/*
 * Certificate rotation without a restart: a mutual-TLS server re-reads its
 * key, certificate and CA on sk_http_server_reload_tls, new handshakes see
 * the new certificate (serial read through curl's CURLINFO_CERTINFO on fresh
 * handles, so no connection or TLS session is reused), a bad file leaves the
 * old credentials in place, and the client's reload stops it from reusing
 * connections made with the old certificate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../unit/mesh/mesh_test_util.h"
#include "mesh/mesh_int.h"
#include "sk_test.h"
#include "sk_test_pki.h"

typedef struct fixture {
    sk_test_pki pki;
    sk_tls_files order;   /* server identity, re-issued by the tests */
    sk_tls_files payment; /* client identity */
    test_srv t;
    sk_http_server *srv;
    char base[64];
} fixture;

static int setup(void **state)
{
    fixture *f = sk_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(sk_test_pki_create(&f->pki), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "order", &f->order), SK_OK);
    assert_int_equal(sk_test_pki_issue(&f->pki, "payment", &f->payment), SK_OK);
    test_srv_init(&f->t);
    sk_http_server_config cfg = { .bind_addr = "127.0.0.1",
                                  .tls = &f->order,
                                  .require_client_cert = true,
                                  .handler = test_srv_handler,
                                  .ctx = &f->t };
    assert_int_equal(sk_http_server_start(&f->srv, &cfg), SK_OK);
    snprintf(f->base, sizeof(f->base), "https://127.0.0.1:%d", sk_http_server_port(f->srv));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_http_server_stop(f->srv);
    test_srv_fini(&f->t);
    sk_tls_files_fini(&f->order);
    sk_tls_files_fini(&f->payment);
    sk_test_pki_destroy(&f->pki);
    sk_free(f);
    return 0;
}

/*
 * GET /echo on a new connection (fresh easy handle: no pooled connection, no
 * cached TLS session) and copy the server certificate's "Serial Number"
 * line into @p serial. @return the HTTP status, 0 when the transfer failed.
 */
static long fetch_serial(const fixture *f, char *serial, size_t serial_cap)
{
    CURL *e = curl_easy_init();
    struct curl_certinfo *ci = NULL;
    char url[128];
    long status = 0;
    FILE *sink = fopen("/dev/null", "w");

    assert_non_null(e);
    assert_non_null(sink);
    serial[0] = '\0';
    snprintf(url, sizeof(url), "%s/echo", f->base);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_SSLCERT, f->payment.cert_file);
    curl_easy_setopt(e, CURLOPT_SSLKEY, f->payment.key_file);
    curl_easy_setopt(e, CURLOPT_CAINFO, f->payment.ca_file);
    curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(e, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
    if (curl_easy_perform(e) == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (curl_easy_getinfo(e, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci != NULL &&
            ci->num_of_certs > 0) {
            for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next) {
                if (strncmp(s->data, "Serial Number:", 14) == 0) {
                    snprintf(serial, serial_cap, "%s", s->data + 14);
                }
            }
        }
    }
    fclose(sink);
    curl_easy_cleanup(e);
    return status;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static char *read_all(const char *path)
{
    char *text = NULL;
    assert_int_equal(sk__mesh_pem_read("file", path, &text), SK_OK);
    return text;
}

/* Delete the server identity and let sk_pki_issue issue it again (new key, new serial). */
static void reissue_order(fixture *f)
{
    assert_int_equal(unlink(f->order.cert_file), 0);
    assert_int_equal(unlink(f->order.key_file), 0);
    assert_int_equal(sk_pki_issue(f->pki.dir, "order", SK_SPIFFE_PREFIX "order", "127.0.0.1"),
                     SK_OK);
}

static void test_sk_http_server_reload_tls_new_handshakes_see_new_cert(void **state)
{
    fixture *f = *state;
    char serial_a[128];
    char serial_b[128];
    char serial_c[128];

    assert_int_equal(fetch_serial(f, serial_a, sizeof(serial_a)), 200);
    assert_true(serial_a[0] != '\0');

    /* Re-issued files are not used until the reload. */
    reissue_order(f);
    assert_int_equal(fetch_serial(f, serial_b, sizeof(serial_b)), 200);
    assert_string_equal(serial_b, serial_a);

    assert_int_equal(sk_http_server_reload_tls(f->srv), SK_OK);
    assert_int_equal(fetch_serial(f, serial_b, sizeof(serial_b)), 200);
    assert_true(serial_b[0] != '\0');
    assert_string_not_equal(serial_b, serial_a);
    /* Client certificates are still verified against the (re-read) CA: the request got in. */
    assert_true(atomic_load(&f->t.n_handled) >= 3);

    /* Twice in a row is fine and changes nothing. */
    assert_int_equal(sk_http_server_reload_tls(f->srv), SK_OK);
    assert_int_equal(fetch_serial(f, serial_c, sizeof(serial_c)), 200);
    assert_string_equal(serial_c, serial_b);
}

static void test_sk_http_server_reload_tls_bad_files_keep_old(void **state)
{
    fixture *f = *state;
    char before[128];
    char after[128];
    char *cert_good = read_all(f->order.cert_file);
    char *key_good = read_all(f->order.key_file);
    char *ca_good = read_all(f->order.ca_file);

    assert_int_equal(fetch_serial(f, before, sizeof(before)), 200);

    write_file(f->order.cert_file, "garbage, not a certificate\n");
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_EPROTO, "not a PEM file");
    assert_int_equal(fetch_serial(f, after, sizeof(after)), 200);
    assert_string_equal(after, before);

    write_file(f->order.cert_file,
               "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n");
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_ETLS, "cert_file");
    assert_int_equal(fetch_serial(f, after, sizeof(after)), 200);
    assert_string_equal(after, before);

    /* A valid certificate with the key of another identity. */
    write_file(f->order.cert_file, cert_good);
    {
        char *other_key = read_all(f->payment.key_file);
        write_file(f->order.key_file, other_key);
        sk_free(other_key);
    }
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_ETLS, "does not belong to cert_file");
    assert_int_equal(fetch_serial(f, after, sizeof(after)), 200);
    assert_string_equal(after, before);

    write_file(f->order.key_file, key_good);
    assert_int_equal(unlink(f->order.ca_file), 0);
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_EIO, "ca_file");
    write_file(f->order.ca_file, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    SK_TEST_ASSERT_ERR(sk_http_server_reload_tls(f->srv), SK_ETLS, "ca_file");
    write_file(f->order.ca_file, ca_good);
    assert_int_equal(fetch_serial(f, after, sizeof(after)), 200);
    assert_string_equal(after, before);

    /* Good files again: the reload succeeds. */
    assert_int_equal(sk_http_server_reload_tls(f->srv), SK_OK);
    assert_int_equal(fetch_serial(f, after, sizeof(after)), 200);
    assert_string_equal(after, before);
    sk_free(cert_good);
    sk_free(key_good);
    sk_free(ca_good);
}

static void send_wait(sk_http_client *c, done_rec *d, const char *url)
{
    int before = atomic_load(&d->n_done);
    sk_http_request r = { .method = "GET", .url = url, .expect_service = "order" };
    assert_int_equal(sk_http_client_send(c, &r, done_rec_cb, d), SK_OK);
    assert_true(done_rec_wait(d, before + 1, 20000));
    assert_int_equal(d->st, SK_OK);
    assert_int_equal(d->status, 200);
}

static void test_sk_http_client_reload_tls_no_reuse_of_old_connections(void **state)
{
    fixture *f = *state;
    sk_http_client *c = NULL;
    done_rec d;
    char url[128];
    uint64_t n;

    done_rec_init(&d);
    snprintf(url, sizeof(url), "%s/echo", f->base);
    assert_int_equal(sk_http_client_create(&c, &f->payment), SK_OK);
    send_wait(c, &d, url);
    n = sk__http_server_connections_total(f->srv);
    send_wait(c, &d, url); /* pooled connection reused */
    assert_int_equal(sk__http_server_connections_total(f->srv), n);

    /* Rotate both sides. */
    reissue_order(f);
    assert_int_equal(sk_http_server_reload_tls(f->srv), SK_OK);
    assert_int_equal(unlink(f->payment.cert_file), 0);
    assert_int_equal(unlink(f->payment.key_file), 0);
    assert_int_equal(sk_pki_issue(f->pki.dir, "payment", SK_SPIFFE_PREFIX "payment", "127.0.0.1"),
                     SK_OK);
    assert_int_equal(sk_http_client_reload_tls(c), SK_OK);
    send_wait(c, &d, url); /* a new handshake with the new certificates */
    assert_int_equal(sk__http_server_connections_total(f->srv), n + 1);
    send_wait(c, &d, url); /* which is pooled in turn */
    assert_int_equal(sk__http_server_connections_total(f->srv), n + 1);

    /* A failed reload keeps the current credentials. */
    write_file(f->payment.key_file, "garbage\n");
    SK_TEST_ASSERT_ERR(sk_http_client_reload_tls(c), SK_EPROTO, "key_file");
    send_wait(c, &d, url);
    assert_int_equal(sk__http_server_connections_total(f->srv), n + 1);

    sk_http_client_destroy(c);
    done_rec_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_http_server_reload_tls_new_handshakes_see_new_cert,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_server_reload_tls_bad_files_keep_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_http_client_reload_tls_no_reuse_of_old_connections,
                                        setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
