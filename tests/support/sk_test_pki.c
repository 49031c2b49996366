/* SPDX-License-Identifier: MIT */
/*
 * Throwaway PKI for tests (see sk_test_pki.h): everything lives under one
 * temporary directory that sk_test_pki_destroy removes.
 */
#include "sk_test_pki.h"

#include <stdio.h>
#include <string.h>

#include "sk_test.h"

sk_status sk_test_pki_create(sk_test_pki *p)
{
    sk_status st;

    if (p == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_pki_create: p must not be NULL");
    }
    memset(p, 0, sizeof(*p));
    st = sk_test_tmpdir(p->dir, sizeof(p->dir));
    if (st != SK_OK) {
        return st;
    }
    st = sk_pki_ca_ensure(p->dir);
    if (st != SK_OK) {
        sk_test_pki_destroy(p);
    }
    return st;
}

sk_status sk_test_pki_issue(sk_test_pki *p, const char *service, sk_tls_files *out)
{
    sk_status st;
    char uri[128];

    if (p == NULL || service == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_test_pki_issue: arguments must not be NULL");
    }
    snprintf(uri, sizeof(uri), "%s%s", SK_SPIFFE_PREFIX, service);
    st = sk_pki_issue(p->dir, service, uri, "127.0.0.1");
    if (st != SK_OK) {
        return st;
    }
    return sk_tls_files_init(out, p->dir, service);
}

void sk_test_pki_destroy(sk_test_pki *p)
{
    if (p == NULL || p->dir[0] == '\0') {
        return;
    }
    sk_test_rmrf(p->dir);
    p->dir[0] = '\0';
}
