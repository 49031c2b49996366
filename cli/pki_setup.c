/* SPDX-License-Identifier: MIT */
/*
 * First-start PKI of `skald up`: the local CA in DATA/pki and one
 * certificate per identity — every service of the system file (URI SAN
 * spiffe://skald.local/ns/default/sa/<service>), the CLI itself, and
 * nats-server (IP SAN 127.0.0.1 only, since clients reach it by address).
 * Existing, still valid certificates are kept, so restarts are cheap.
 */
#include <stdio.h>

#include "cli.h"

sk_status cli_pki_setup(const char *pki_dir, const sk_system *sys)
{
    sk_status st;
    char uri[sizeof(SK_SPIFFE_PREFIX) + SK_MESH_MAX_SERVICE + 16];

    if (pki_dir == NULL || sys == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_pki_setup: %s must not be NULL",
                       pki_dir == NULL ? "pki_dir" : "sys");
    }
    st = sk_pki_ca_ensure(pki_dir);
    if (st != SK_OK) {
        return SK_WRAP(st, "creating the CA in %s", pki_dir);
    }
    for (size_t i = 0; i < sys->n_services; i++) {
        const char *name = sys->services[i].name;
        snprintf(uri, sizeof(uri), "%s%s", SK_SPIFFE_PREFIX, name);
        st = sk_pki_issue(pki_dir, name, uri, NULL);
        if (st != SK_OK) {
            return SK_WRAP(st, "issuing the certificate of service %s", name);
        }
    }
    st = sk_pki_issue(pki_dir, CLI_IDENTITY, SK_SPIFFE_PREFIX CLI_IDENTITY, NULL);
    if (st != SK_OK) {
        return SK_WRAP(st, "issuing the certificate of %s", CLI_IDENTITY);
    }
    st = sk_pki_issue(pki_dir, CLI_NATS_IDENTITY, NULL, "127.0.0.1");
    if (st != SK_OK) {
        return SK_WRAP(st, "issuing the certificate of %s", CLI_NATS_IDENTITY);
    }
    return SK_OK;
}
