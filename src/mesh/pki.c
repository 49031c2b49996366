/* SPDX-License-Identifier: MIT */
/*
 * Local PKI: a self-signed EC P-256 CA and leaf certificates whose identity is
 * a URI SAN (SPIFFE style) and/or an IP SAN. Every file is written to a
 * temporary name and renamed into place, and private keys are created with
 * mode 0600 from the first byte, so a reader never sees a partial or
 * world-readable key. Thread-safe (no shared state); concurrent issuers of
 * the same name in one directory race benignly (last rename wins).
 */
#include "mesh/mesh_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_DAYS   3650
#define LEAF_DAYS 365
/* A certificate is reissued when it expires within this many seconds. */
#define RENEW_BEFORE_S (24 * 3600)
/* Backdate notBefore so that peers with a slightly slow clock accept the certificate. */
#define BACKDATE_S (5 * 60)

/* Record @p st with @p what and the drained OpenSSL error queue. */
static sk_status ssl_fail(sk_status st, const char *what)
{
    char text[512];
    size_t used = 0;
    unsigned long e;

    text[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (used + 3 < sizeof(text)) {
            if (used > 0) {
                text[used++] = ';';
                text[used++] = ' ';
                text[used] = '\0';
            }
            ERR_error_string_n(e, text + used, sizeof(text) - used);
            used = strlen(text);
        }
    }
    return SK_FAIL(st, "%s: %s", what, used > 0 ? text : "unknown OpenSSL error");
}

bool sk__pki_name_is_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL || name[0] == '.' || name[0] == '\0') {
        return false;
    }
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok || n >= 64) {
            return false;
        }
    }
    return true;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Write @p data to @p path through a temporary file created with @p mode. */
static sk_status write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    sk_status st = SK_OK;
    char *tmp = NULL;
    int fd = -1;
    uint8_t rnd[8];
    const uint8_t *p = data;

    st = sk_random_bytes(rnd, sizeof(rnd));
    if (st != SK_OK) {
        goto out;
    }
    tmp = sk_asprintf("%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2],
                      rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    if (tmp == NULL) {
        st = SK_FAIL(SK_ENOMEM, "writing %s", path);
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        st = SK_FAIL(SK_EIO, "creating %s: %s", tmp, strerror(errno));
        goto out;
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            st = SK_FAIL(SK_EIO, "writing %s: %s", tmp, strerror(errno));
            goto out;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        st = SK_FAIL(SK_EIO, "syncing %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = SK_FAIL(SK_EIO, "closing %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = SK_FAIL(SK_EIO, "renaming %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    if (st != SK_OK && tmp != NULL) {
        unlink(tmp);
    }
    sk_free(tmp);
    return st;
}

static sk_status write_key(const char *path, EVP_PKEY *key)
{
    sk_status st = SK_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    if (bio == NULL) {
        return ssl_fail(SK_ENOMEM, "allocating a BIO");
    }
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        st = ssl_fail(SK_ETLS, "encoding the private key");
        goto out;
    }
    len = BIO_get_mem_data(bio, &data);
    st = write_atomic(path, data, (size_t)len, 0600);
    OPENSSL_cleanse(data, (size_t)len);
out:
    BIO_free(bio);
    return st;
}

static sk_status write_cert(const char *path, X509 *cert)
{
    sk_status st = SK_OK;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;

    if (bio == NULL) {
        return ssl_fail(SK_ENOMEM, "allocating a BIO");
    }
    if (PEM_write_bio_X509(bio, cert) != 1) {
        st = ssl_fail(SK_ETLS, "encoding the certificate");
        goto out;
    }
    len = BIO_get_mem_data(bio, &data);
    st = write_atomic(path, data, (size_t)len, 0644);
out:
    BIO_free(bio);
    return st;
}

static sk_status read_cert(const char *path, X509 **out)
{
    BIO *bio = BIO_new_file(path, "r");

    *out = NULL;
    if (bio == NULL) {
        return ssl_fail(SK_EIO, path);
    }
    *out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (*out == NULL) {
        char what[600];
        snprintf(what, sizeof(what), "%s: not a PEM certificate", path);
        return ssl_fail(SK_EPROTO, what);
    }
    return SK_OK;
}

static sk_status read_key(const char *path, EVP_PKEY **out)
{
    BIO *bio = BIO_new_file(path, "r");

    *out = NULL;
    if (bio == NULL) {
        return ssl_fail(SK_EIO, path);
    }
    *out = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (*out == NULL) {
        char what[600];
        snprintf(what, sizeof(what), "%s: not a PEM private key", path);
        return ssl_fail(SK_EPROTO, what);
    }
    return SK_OK;
}

/* Add one extension given in OpenSSL's configuration syntax (fixed strings only). */
static sk_status add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return ssl_fail(SK_ETLS, "building a certificate extension");
    }
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1) {
        return ssl_fail(SK_ETLS, "adding a certificate extension");
    }
    return SK_OK;
}

/* A fresh certificate with a random positive 128-bit serial, validity and subject CN. */
static sk_status cert_new(X509 **out, const char *cn, int days, EVP_PKEY *key)
{
    sk_status st = SK_OK;
    X509 *cert = NULL;
    BIGNUM *bn = NULL;
    X509_NAME *name = NULL;
    uint8_t serial[16];

    *out = NULL;
    st = sk_random_bytes(serial, sizeof(serial));
    if (st != SK_OK) {
        goto out;
    }
    serial[0] &= 0x7f; /* positive, and DER stays 16 bytes or shorter */
    serial[0] |= 0x40; /* never zero */
    cert = X509_new();
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (cert == NULL || bn == NULL) {
        st = ssl_fail(SK_ENOMEM, "allocating a certificate");
        goto out;
    }
    if (X509_set_version(cert, X509_VERSION_3) != 1 ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL ||
        X509_gmtime_adj(X509_getm_notBefore(cert), -BACKDATE_S) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(cert), days, 0, NULL) == NULL ||
        X509_set_pubkey(cert, key) != 1) {
        st = ssl_fail(SK_ETLS, "filling a certificate");
        goto out;
    }
    name = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"skald", -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        st = ssl_fail(SK_ETLS, "setting the certificate subject");
        goto out;
    }
    *out = cert;
    cert = NULL;
out:
    BN_free(bn);
    X509_free(cert);
    return st;
}

static sk_status gen_key(EVP_PKEY **out)
{
    *out = EVP_EC_gen("P-256");
    if (*out == NULL) {
        return ssl_fail(SK_ETLS, "generating an EC P-256 key");
    }
    return SK_OK;
}

sk_status sk_pki_ca_ensure(const char *dir)
{
    sk_status st = SK_OK;
    char *cert_path = NULL;
    char *key_path = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;

    if (dir == NULL || dir[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_pki_ca_ensure: dir must be a non-empty string");
    }
    cert_path = sk_asprintf("%s/ca.pem", dir);
    key_path = sk_asprintf("%s/ca.key", dir);
    if (cert_path == NULL || key_path == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_pki_ca_ensure: building paths");
        goto out;
    }
    if (file_exists(cert_path) && file_exists(key_path)) {
        goto out;
    }
    st = gen_key(&key);
    if (st != SK_OK) {
        goto out;
    }
    st = cert_new(&cert, "skald local CA", CA_DAYS, key);
    if (st != SK_OK) {
        goto out;
    }
    if (X509_set_issuer_name(cert, X509_get_subject_name(cert)) != 1) {
        st = ssl_fail(SK_ETLS, "setting the CA issuer");
        goto out;
    }
    st = add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
    if (st == SK_OK) {
        st = add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (st == SK_OK) {
        st = add_ext(cert, cert, NID_subject_key_identifier, "hash");
    }
    if (st != SK_OK) {
        goto out;
    }
    if (X509_sign(cert, key, EVP_sha256()) <= 0) {
        st = ssl_fail(SK_ETLS, "signing the CA certificate");
        goto out;
    }
    /* Key first: the pair counts as present only once the certificate exists too. */
    st = write_key(key_path, key);
    if (st == SK_OK) {
        st = write_cert(cert_path, cert);
    }
out:
    if (st != SK_OK) {
        st = SK_WRAP(st, "creating the CA in %s", dir);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    sk_free(cert_path);
    sk_free(key_path);
    return st;
}

/* True when @p cert carries exactly the requested SANs. */
static bool sans_match(X509 *cert, const char *uri_san, const uint8_t *ip, int ip_len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool uri_seen = uri_san == NULL;
    bool ip_seen = ip == NULL;
    int n_other = 0;

    if (gens == NULL) {
        return uri_san == NULL && ip == NULL;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI && uri_san != NULL &&
            (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier) == strlen(uri_san) &&
            memcmp(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), uri_san,
                   strlen(uri_san)) == 0) {
            uri_seen = true;
        } else if (g->type == GEN_IPADD && ip != NULL &&
                   ASN1_STRING_length(g->d.iPAddress) == ip_len &&
                   memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, (size_t)ip_len) == 0) {
            ip_seen = true;
        } else {
            n_other++;
        }
    }
    GENERAL_NAMES_free(gens);
    return uri_seen && ip_seen && n_other == 0;
}

/* True when the leaf at @p cert_path / @p key_path can be kept as it is. */
static bool leaf_is_current(const char *cert_path,
                            const char *key_path,
                            X509 *ca_cert,
                            EVP_PKEY *ca_key,
                            const char *uri_san,
                            const uint8_t *ip,
                            int ip_len)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    bool ok = false;
    time_t soon = time(NULL) + RENEW_BEFORE_S;

    if (!file_exists(cert_path) || !file_exists(key_path)) {
        return false;
    }
    if (read_cert(cert_path, &cert) != SK_OK || read_key(key_path, &key) != SK_OK) {
        goto out; /* unreadable files are replaced */
    }
    ok = X509_cmp_time(X509_get0_notAfter(cert), &soon) > 0 &&
         X509_check_issued(ca_cert, cert) == X509_V_OK && X509_verify(cert, ca_key) == 1 &&
         X509_check_private_key(cert, key) == 1 && sans_match(cert, uri_san, ip, ip_len);
out:
    ERR_clear_error();
    sk_error_clear();
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

static sk_status add_sans(X509 *cert, const char *uri_san, const uint8_t *ip, int ip_len)
{
    sk_status st = SK_OK;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = NULL;

    if (gens == NULL) {
        return ssl_fail(SK_ENOMEM, "allocating the SAN list");
    }
    if (uri_san != NULL) {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        g = GENERAL_NAME_new();
        if (s == NULL || g == NULL || ASN1_STRING_set(s, uri_san, (int)strlen(uri_san)) != 1) {
            ASN1_IA5STRING_free(s);
            st = ssl_fail(SK_ENOMEM, "building the URI SAN");
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_URI, s);
        if (sk_GENERAL_NAME_push(gens, g) <= 0) {
            st = ssl_fail(SK_ENOMEM, "building the SAN list");
            goto out;
        }
        g = NULL;
    }
    if (ip != NULL) {
        ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
        g = GENERAL_NAME_new();
        if (s == NULL || g == NULL || ASN1_OCTET_STRING_set(s, ip, ip_len) != 1) {
            ASN1_OCTET_STRING_free(s);
            st = ssl_fail(SK_ENOMEM, "building the IP SAN");
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_IPADD, s);
        if (sk_GENERAL_NAME_push(gens, g) <= 0) {
            st = ssl_fail(SK_ENOMEM, "building the SAN list");
            goto out;
        }
        g = NULL;
    }
    if (X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0, 0) != 1) {
        st = ssl_fail(SK_ETLS, "adding the subjectAltName extension");
        goto out;
    }
out:
    GENERAL_NAME_free(g);
    GENERAL_NAMES_free(gens);
    return st;
}

static bool uri_is_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= 0x20 || c >= 0x7f || n >= 255) {
            return false;
        }
    }
    return n > 0 && strchr(s, ':') != NULL;
}

sk_status sk_pki_issue(const char *dir, const char *name, const char *uri_san, const char *ip_san)
{
    sk_status st = SK_OK;
    char *ca_cert_path = NULL, *ca_key_path = NULL, *cert_path = NULL, *key_path = NULL;
    X509 *ca_cert = NULL, *cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    uint8_t ip[16];
    int ip_len = 0;

    if (dir == NULL || dir[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_pki_issue: dir must be a non-empty string");
    }
    if (!sk__pki_name_is_valid(name)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_pki_issue: name must be 1..64 characters of [A-Za-z0-9._-] not "
                       "starting with '.', got \"%.64s\"",
                       name != NULL ? name : "(null)");
    }
    if (strcmp(name, "ca") == 0) {
        return SK_FAIL(SK_EINVAL, "sk_pki_issue: name \"ca\" is reserved for the CA");
    }
    if (uri_san == NULL && ip_san == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_pki_issue: uri_san and ip_san must not both be NULL");
    }
    if (uri_san != NULL && !uri_is_valid(uri_san)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_pki_issue: uri_san must be an absolute URI of 1..255 printable ASCII "
                       "characters without spaces");
    }
    if (ip_san != NULL) {
        if (inet_pton(AF_INET, ip_san, ip) == 1) {
            ip_len = 4;
        } else if (inet_pton(AF_INET6, ip_san, ip) == 1) {
            ip_len = 16;
        } else {
            return SK_FAIL(SK_EINVAL,
                           "sk_pki_issue: ip_san must be an IPv4 or IPv6 address, got \"%.64s\"",
                           ip_san);
        }
    }
    ca_cert_path = sk_asprintf("%s/ca.pem", dir);
    ca_key_path = sk_asprintf("%s/ca.key", dir);
    cert_path = sk_asprintf("%s/%s.pem", dir, name);
    key_path = sk_asprintf("%s/%s.key", dir, name);
    if (ca_cert_path == NULL || ca_key_path == NULL || cert_path == NULL || key_path == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_pki_issue: building paths");
        goto out;
    }
    st = read_cert(ca_cert_path, &ca_cert);
    if (st == SK_OK) {
        st = read_key(ca_key_path, &ca_key);
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "loading the CA (run sk_pki_ca_ensure first)");
        goto out;
    }
    if (X509_check_private_key(ca_cert, ca_key) != 1) {
        st = ssl_fail(SK_EPROTO, "the CA key does not match the CA certificate");
        goto out;
    }
    if (leaf_is_current(cert_path, key_path, ca_cert, ca_key, uri_san, ip_len > 0 ? ip : NULL,
                        ip_len)) {
        goto out;
    }
    st = gen_key(&key);
    if (st == SK_OK) {
        st = cert_new(&cert, name, LEAF_DAYS, key);
    }
    if (st != SK_OK) {
        goto out;
    }
    if (X509_set_issuer_name(cert, X509_get_subject_name(ca_cert)) != 1) {
        st = ssl_fail(SK_ETLS, "setting the issuer");
        goto out;
    }
    st = add_ext(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE");
    if (st == SK_OK) {
        st = add_ext(cert, ca_cert, NID_key_usage, "critical,digitalSignature,keyAgreement");
    }
    if (st == SK_OK) {
        st = add_ext(cert, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (st == SK_OK) {
        st = add_ext(cert, ca_cert, NID_subject_key_identifier, "hash");
    }
    if (st == SK_OK) {
        st = add_ext(cert, ca_cert, NID_authority_key_identifier, "keyid:always");
    }
    if (st == SK_OK) {
        st = add_sans(cert, uri_san, ip_len > 0 ? ip : NULL, ip_len);
    }
    if (st != SK_OK) {
        goto out;
    }
    if (X509_sign(cert, ca_key, EVP_sha256()) <= 0) {
        st = ssl_fail(SK_ETLS, "signing the certificate");
        goto out;
    }
    st = write_key(key_path, key);
    if (st == SK_OK) {
        st = write_cert(cert_path, cert);
    }
out:
    if (st != SK_OK) {
        st = SK_WRAP(st, "issuing %s in %s", name, dir);
    }
    X509_free(ca_cert);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    sk_free(ca_cert_path);
    sk_free(ca_key_path);
    sk_free(cert_path);
    sk_free(key_path);
    return st;
}

sk_status sk_tls_files_init(sk_tls_files *out, const char *dir, const char *name)
{
    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_tls_files_init: out must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (dir == NULL || dir[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_tls_files_init: dir must be a non-empty string");
    }
    if (!sk__pki_name_is_valid(name)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_tls_files_init: name must be 1..64 characters of [A-Za-z0-9._-] not "
                       "starting with '.'");
    }
    out->ca_file = sk_asprintf("%s/ca.pem", dir);
    out->cert_file = sk_asprintf("%s/%s.pem", dir, name);
    out->key_file = sk_asprintf("%s/%s.key", dir, name);
    if (out->ca_file == NULL || out->cert_file == NULL || out->key_file == NULL) {
        sk_tls_files_fini(out);
        return SK_FAIL(SK_ENOMEM, "sk_tls_files_init: building paths");
    }
    return SK_OK;
}

void sk_tls_files_fini(sk_tls_files *f)
{
    if (f == NULL) {
        return;
    }
    /* The strings were allocated by sk_tls_files_init; the const only protects readers. */
    sk_free((void *)f->ca_file);
    sk_free((void *)f->cert_file);
    sk_free((void *)f->key_file);
    memset(f, 0, sizeof(*f));
}

sk_status sk_tls_default_trust_set(const char *dir)
{
    char *ca_file = NULL;
    sk_status st = SK_OK;

    if (dir == NULL || dir[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_tls_default_trust_set: dir must be a non-empty string");
    }
    ca_file = sk_asprintf("%s/ca.pem", dir);
    if (ca_file == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_tls_default_trust_set: building the CA path");
    }
    /*
     * Overwritten even when set (hosts often point them at the system
     * bundle): the mesh's connections must trust the mesh CA only. No
     * directory of anchors: /dev/null holds none, for OpenSSL and for Go
     * (nats-server inherits this from skald up), and unlike a path under
     * DIR it cannot be split at a ':' in DIR (the variable is a list).
     */
    const char *const vars[][2] = { { "SSL_CERT_FILE", ca_file }, { "SSL_CERT_DIR", "/dev/null" } };
    for (size_t i = 0; i < 2 && st == SK_OK; i++) {
        if (setenv(vars[i][0], vars[i][1], 1) != 0) {
            st = SK_FAIL(errno == ENOMEM ? SK_ENOMEM : SK_EINVAL,
                         "sk_tls_default_trust_set: setting %s: %s", vars[i][0], strerror(errno));
        }
    }
    sk_free(ca_file);
    return st;
}
