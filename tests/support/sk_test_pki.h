/* SPDX-License-Identifier: MIT */
/*
 * Throwaway PKI for tests: a temporary directory holding a fresh CA and
 * service identities issued by sk_pki_issue (URI SAN
 * SK_SPIFFE_PREFIX<service> plus IP SAN 127.0.0.1). Link with sk_mesh.
 */
#ifndef SK_TEST_PKI_H
#define SK_TEST_PKI_H

#include <skald/mesh.h>

typedef struct sk_test_pki {
    char dir[64]; /* /tmp/skald-test-XXXXXX */
} sk_test_pki;

/** Create the directory and its CA. @return SK_OK or the failing step's status. */
SK_NODISCARD sk_status sk_test_pki_create(sk_test_pki *p);

/**
 * Issue the identity @p service (files DIR/<service>.pem|.key) and fill
 * @p out with its paths (free with sk_tls_files_fini).
 */
SK_NODISCARD sk_status sk_test_pki_issue(sk_test_pki *p, const char *service, sk_tls_files *out);

/** Remove the directory and everything in it. NULL-safe, idempotent. */
void sk_test_pki_destroy(sk_test_pki *p);

#endif /* SK_TEST_PKI_H */
