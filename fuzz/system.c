/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the system file. The input is parsed as skald.yaml
 * (sk_system_parse: the YAML reader of src/core/yaml.c, then field-by-field
 * validation in src/core/system.c); when it is accepted, every upstream's
 * mesh policy is read as the mesh would read it (sk__upstream_policy_parse)
 * and every service is looked up by name.
 */
#include "fuzz.h"
#include "mesh/mesh_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sk_system *sys = NULL;

    sk_fuzz_setup();
    if (sk_system_parse((sk_slice){ data, size }, "fuzz.yaml", &sys) == SK_OK) {
        SK_FUZZ_CHECK(sys != NULL);
        for (size_t i = 0; i < sys->n_services; i++) {
            const sk_sys_service *svc = &sys->services[i];
            SK_FUZZ_CHECK(sk_system_service_find(sys, svc->name) == svc);
            for (size_t u = 0; u < svc->n_upstreams; u++) {
                sk__upstream_policy p;
                if (sk__upstream_policy_parse(svc->upstreams[u].policy, &p) == SK_OK) {
                    sk__upstream_policy_fini(&p);
                }
            }
        }
        sk_system_destroy(sys);
    } else {
        SK_FUZZ_CHECK(sys == NULL);
    }
    sk_error_clear();
    return 0;
}
