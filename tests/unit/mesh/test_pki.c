/* SPDX-License-Identifier: MIT */
/* Unit tests for src/mesh/pki.c: CA creation, leaf issuance, reissue rules, file modes, paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mesh/mesh_int.h"
#include "sk_test.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int setup(void **state)
{
    char *dir = sk_malloc(64);
    assert_non_null(dir);
    assert_int_equal(sk_test_tmpdir(dir, 64), SK_OK);
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    sk_test_rmrf(*state);
    sk_free(*state);
    return 0;
}

static char *path_of(const char *dir, const char *file)
{
    char *p = sk_asprintf("%s/%s", dir, file);
    assert_non_null(p);
    return p;
}

static X509 *load_cert(const char *dir, const char *file)
{
    char *p = path_of(dir, file);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    sk_free(p);
    assert_non_null(x);
    return x;
}

static mode_t mode_of(const char *dir, const char *file)
{
    struct stat sb;
    char *p = path_of(dir, file);
    assert_int_equal(stat(p, &sb), 0);
    sk_free(p);
    return sb.st_mode & 0777;
}

static char *read_all(const char *dir, const char *file)
{
    char *p = path_of(dir, file);
    char *s = sk_test_read_file(p, NULL);
    sk_free(p);
    assert_non_null(s);
    return s;
}

static void test_sk_pki_ca_ensure_creates_ca(void **state)
{
    const char *dir = *state;

    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    assert_int_equal(mode_of(dir, "ca.key"), 0600);
    X509 *ca = load_cert(dir, "ca.pem");
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    EVP_PKEY *pub = X509_get0_pubkey(ca);
    assert_int_equal(EVP_PKEY_get_bits(pub), 256);
    assert_int_equal(X509_verify(ca, pub), 1);
    /* Valid for about ten years. */
    time_t in9y = time(NULL) + (time_t)9 * 365 * 24 * 3600;
    assert_true(X509_cmp_time(X509_get0_notAfter(ca), &in9y) > 0);
    X509_free(ca);

    /* A second call keeps the CA. */
    char *before = read_all(dir, "ca.pem");
    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    char *after = read_all(dir, "ca.pem");
    assert_string_equal(before, after);
    sk_free(before);
    sk_free(after);
}

static void test_sk_pki_ca_ensure_errors(void **state)
{
    (void)state;
    SK_TEST_ASSERT_ERR(sk_pki_ca_ensure(NULL), SK_EINVAL, "dir");
    SK_TEST_ASSERT_ERR(sk_pki_ca_ensure(""), SK_EINVAL, "dir");
    SK_TEST_ASSERT_ERR(sk_pki_ca_ensure("/nonexistent/dir"), SK_EIO, "/nonexistent/dir");
}

static void test_sk_pki_issue_leaf(void **state)
{
    const char *dir = *state;
    unsigned char ip[4];

    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order", "127.0.0.1"), SK_OK);
    assert_int_equal(mode_of(dir, "order.key"), 0600);
    X509 *ca = load_cert(dir, "ca.pem");
    X509 *leaf = load_cert(dir, "order.pem");
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_check_issued(ca, leaf), X509_V_OK);

    char cn[64];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "order");
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER);
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT);
    assert_non_null(X509_get0_authority_key_id(leaf));

    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    const GENERAL_NAME *g0 = sk_GENERAL_NAME_value(gens, 0);
    const GENERAL_NAME *g1 = sk_GENERAL_NAME_value(gens, 1);
    assert_int_equal(g0->type, GEN_URI);
    assert_memory_equal(ASN1_STRING_get0_data(g0->d.uniformResourceIdentifier),
                        SK_SPIFFE_PREFIX "order", strlen(SK_SPIFFE_PREFIX "order"));
    assert_int_equal(g1->type, GEN_IPADD);
    assert_int_equal(ASN1_STRING_length(g1->d.iPAddress), 4);
    ip[0] = 127, ip[1] = 0, ip[2] = 0, ip[3] = 1;
    assert_memory_equal(ASN1_STRING_get0_data(g1->d.iPAddress), ip, 4);
    GENERAL_NAMES_free(gens);
    X509_free(leaf);
    X509_free(ca);

    /* Only a URI SAN, only an IP SAN (v6). */
    assert_int_equal(sk_pki_issue(dir, "svc-a", SK_SPIFFE_PREFIX "svc-a", NULL), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "nats", NULL, "::1"), SK_OK);
}

static void test_sk_pki_issue_keeps_current_and_reissues(void **state)
{
    const char *dir = *state;

    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order", NULL), SK_OK);
    char *first = read_all(dir, "order.pem");

    /* Still valid and signed by the CA: kept. */
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order", NULL), SK_OK);
    char *second = read_all(dir, "order.pem");
    assert_string_equal(first, second);
    sk_free(second);

    /* Another identity requested: reissued. */
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order2", NULL), SK_OK);
    second = read_all(dir, "order.pem");
    assert_string_not_equal(first, second);
    sk_free(first);
    first = second;

    /* A new CA: reissued and signed by it. */
    char *ca_pem = path_of(dir, "ca.pem");
    char *ca_key = path_of(dir, "ca.key");
    assert_int_equal(unlink(ca_pem), 0);
    assert_int_equal(unlink(ca_key), 0);
    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order2", NULL), SK_OK);
    second = read_all(dir, "order.pem");
    assert_string_not_equal(first, second);
    X509 *ca = load_cert(dir, "ca.pem");
    X509 *leaf = load_cert(dir, "order.pem");
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
    X509_free(leaf);
    sk_free(first);
    first = second;

    /* Expiring within a day: reissued. Forge one with the CA key, valid for one more hour. */
    FILE *fp = fopen(ca_key, "r");
    EVP_PKEY *cak = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    leaf = load_cert(dir, "order.pem");
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(leaf), 0, 3600, NULL));
    assert_true(X509_sign(leaf, cak, EVP_sha256()) > 0);
    char *leaf_path = path_of(dir, "order.pem");
    fp = fopen(leaf_path, "w");
    assert_int_equal(PEM_write_X509(fp, leaf), 1);
    fclose(fp);
    X509_free(leaf);
    char *forged = read_all(dir, "order.pem");
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order2", NULL), SK_OK);
    second = read_all(dir, "order.pem");
    assert_string_not_equal(forged, second);
    leaf = load_cert(dir, "order.pem");
    time_t in300d = time(NULL) + (time_t)300 * 24 * 3600;
    assert_true(X509_cmp_time(X509_get0_notAfter(leaf), &in300d) > 0);
    X509_free(leaf);

    /* Garbage in the certificate file: reissued. */
    assert_int_equal(sk_test_write_file(leaf_path, "garbage", 7), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order2", NULL), SK_OK);
    leaf = load_cert(dir, "order.pem");
    X509_free(leaf);

    EVP_PKEY_free(cak);
    X509_free(ca);
    sk_free(forged);
    sk_free(first);
    sk_free(second);
    sk_free(leaf_path);
    sk_free(ca_pem);
    sk_free(ca_key);
}

static void test_sk_pki_issue_errors(void **state)
{
    const char *dir = *state;

    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order", NULL), SK_EIO,
                       "sk_pki_ca_ensure first");
    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    SK_TEST_ASSERT_ERR(sk_pki_issue(NULL, "x", "spiffe://x", NULL), SK_EINVAL, "dir");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, NULL, "spiffe://x", NULL), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "", "spiffe://x", NULL), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "../etc", "spiffe://x", NULL), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "a/b", "spiffe://x", NULL), SK_EINVAL, "name");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "ca", "spiffe://x", NULL), SK_EINVAL, "reserved");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "x", NULL, NULL), SK_EINVAL, "both be NULL");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "x", "not a uri", NULL), SK_EINVAL, "uri_san");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "x", "", NULL), SK_EINVAL, "uri_san");
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "x", NULL, "300.1.1.1"), SK_EINVAL, "ip_san");
    char name[66];
    memset(name, 'a', sizeof(name));
    name[64] = '\0';
    assert_int_equal(sk_pki_issue(dir, name, "spiffe://x", NULL), SK_OK);
    name[64] = 'a';
    name[65] = '\0';
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, name, "spiffe://x", NULL), SK_EINVAL, "name");
    /* A CA key that does not match the CA certificate. */
    char *ca_key = path_of(dir, "ca.key");
    char *other_key = path_of(dir, "svc2.key");
    assert_int_equal(sk_pki_issue(dir, "svc2", "spiffe://y", NULL), SK_OK);
    char *k = sk_test_read_file(other_key, NULL);
    assert_non_null(k);
    assert_int_equal(sk_test_write_file(ca_key, k, strlen(k)), SK_OK);
    SK_TEST_ASSERT_ERR(sk_pki_issue(dir, "svc3", "spiffe://z", NULL), SK_EPROTO, "does not match");
    sk_free(k);
    sk_free(other_key);
    sk_free(ca_key);
}

static void test_sk_pki_issue_every_alloc_failure(void **state)
{
    const char *dir = *state;

    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk_pki_issue(dir, "svc", SK_SPIFFE_PREFIX "svc", "127.0.0.1");
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
    }
}

static void test_sk_tls_files_init_fini(void **state)
{
    (void)state;
    sk_tls_files f;

    assert_int_equal(sk_tls_files_init(&f, "/d", "order"), SK_OK);
    assert_string_equal(f.ca_file, "/d/ca.pem");
    assert_string_equal(f.cert_file, "/d/order.pem");
    assert_string_equal(f.key_file, "/d/order.key");
    sk_tls_files_fini(&f);
    assert_null(f.ca_file);
    sk_tls_files_fini(&f); /* idempotent */
    sk_tls_files_fini(NULL);
    SK_TEST_ASSERT_ERR(sk_tls_files_init(NULL, "/d", "x"), SK_EINVAL, "out");
    SK_TEST_ASSERT_ERR(sk_tls_files_init(&f, NULL, "x"), SK_EINVAL, "dir");
    SK_TEST_ASSERT_ERR(sk_tls_files_init(&f, "/d", "../x"), SK_EINVAL, "name");
    assert_null(f.cert_file);
    for (long n = 0;; n++) {
        sk_test_fail_alloc_at(n);
        sk_status st = sk_tls_files_init(&f, "/d", "x");
        sk_test_fail_alloc_at(-1);
        if (st == SK_OK) {
            sk_tls_files_fini(&f);
            break;
        }
        assert_int_equal(st, SK_ENOMEM);
        assert_null(f.ca_file);
    }
}

/*
 * After sk_tls_default_trust_set, OpenSSL's default verify paths (what
 * nats.c loads into every context) hold the mesh CA and nothing else, and a
 * leaf it issued verifies against them.
 */
static void test_sk_tls_default_trust_set(void **state)
{
    const char *dir = *state;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    X509 *leaf = NULL;

    assert_non_null(store);
    assert_non_null(vctx);
    setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt", 1); /* what hosts often set */
    assert_int_equal(sk_pki_ca_ensure(dir), SK_OK);
    assert_int_equal(sk_pki_issue(dir, "order", SK_SPIFFE_PREFIX "order", NULL), SK_OK);
    assert_int_equal(sk_tls_default_trust_set(dir), SK_OK);
    char *ca = path_of(dir, "ca.pem");
    assert_string_equal(getenv("SSL_CERT_FILE"), ca);
    assert_string_equal(getenv("SSL_CERT_DIR"), "/dev/null");
    sk_free(ca);

    assert_int_equal(X509_STORE_set_default_paths(store), 1);
    assert_int_equal(sk_X509_OBJECT_num(X509_STORE_get0_objects(store)), 1);
    leaf = load_cert(dir, "order.pem");
    assert_int_equal(X509_STORE_CTX_init(vctx, store, leaf, NULL), 1);
    assert_int_equal(X509_verify_cert(vctx), 1);

    X509_free(leaf);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    SK_TEST_ASSERT_ERR(sk_tls_default_trust_set(NULL), SK_EINVAL, "dir");
    SK_TEST_ASSERT_ERR(sk_tls_default_trust_set(""), SK_EINVAL, "dir");
    unsetenv("SSL_CERT_FILE");
    unsetenv("SSL_CERT_DIR");
}

static void test_sk__pki_name_is_valid(void **state)
{
    (void)state;
    assert_true(sk__pki_name_is_valid("order"));
    assert_true(sk__pki_name_is_valid("a.b-c_d"));
    assert_false(sk__pki_name_is_valid(NULL));
    assert_false(sk__pki_name_is_valid(""));
    assert_false(sk__pki_name_is_valid(".hidden"));
    assert_false(sk__pki_name_is_valid("a b"));
    assert_false(sk__pki_name_is_valid("a/b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_pki_ca_ensure_creates_ca, setup, teardown),
        cmocka_unit_test(test_sk_pki_ca_ensure_errors),
        cmocka_unit_test_setup_teardown(test_sk_pki_issue_leaf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_pki_issue_keeps_current_and_reissues, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_pki_issue_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_pki_issue_every_alloc_failure, setup, teardown),
        cmocka_unit_test(test_sk_tls_files_init_fini),
        cmocka_unit_test(test_sk__pki_name_is_valid),
        cmocka_unit_test_setup_teardown(test_sk_tls_default_trust_set, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
