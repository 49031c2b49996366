/* SPDX-License-Identifier: MIT */
/*
 * The synchronous upstreams a service declares in the system file, each an
 * sk_upstream whose endpoints follow the ready instances that discovery
 * reports. Each upstream is watched with itself as the callback's ctx, so
 * its watch is removed (sk_registry_unwatch waits for a callback in
 * progress) before it is destroyed: the registry outlives the upstreams.
 */
#include <string.h>

#include "svc.h"
#include "svc_int.h"

#define MAX_UPSTREAMS 16

struct svc_upstreams {
    sk_registry *registry; /* borrowed (DI); NULL when there are no upstreams */
    size_t n;
    char *names[MAX_UPSTREAMS];
    sk_upstream *ups[MAX_UPSTREAMS];
};

sk_upstream *svc_upstreams_get(svc_upstreams *u, const char *service)
{
    for (size_t i = 0; u != NULL && i < u->n; i++) {
        if (strcmp(u->names[i], service) == 0) {
            return u->ups[i];
        }
    }
    return NULL;
}

sk_status svc_upstreams_describe(svc_upstreams *u, json_t **out)
{
    json_t *all = NULL;
    sk_status st = SK_OK;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "svc_upstreams_describe: out must not be NULL");
    }
    *out = NULL;
    if (u == NULL) {
        return SK_FAIL(SK_EINVAL, "svc_upstreams_describe: u must not be NULL");
    }
    all = json_object();
    if (all == NULL) {
        return SK_FAIL(SK_ENOMEM, "svc_upstreams_describe: allocating the answer");
    }
    /* names/ups are fixed once created: only the endpoint states change, and
     * sk_upstream_endpoints_describe is thread-safe. */
    for (size_t i = 0; i < u->n && st == SK_OK; i++) {
        json_t *endpoints = NULL;
        st = sk_upstream_endpoints_describe(u->ups[i], &endpoints);
        if (st != SK_OK) {
            st = SK_WRAP(st, "describing upstream %s", u->names[i]);
        } else if (json_object_set_new(all, u->names[i], endpoints) != 0) {
            st = SK_FAIL(SK_ENOMEM, "svc_upstreams_describe: adding upstream %s", u->names[i]);
        }
    }
    if (st != SK_OK) {
        json_decref(all);
        return st;
    }
    *out = all;
    return SK_OK;
}

/* Discovery thread: keep only ready instances as endpoints. */
static void on_instances(const char *service, const sk_instance *instances, size_t n, void *ctx)
{
    sk_upstream *up = ctx;
    const char *addrs[64];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 64; i++) {
        if (instances[i].is_ready) {
            addrs[k++] = instances[i].address;
        }
    }
    if (sk_upstream_set_endpoints(up, addrs, k) != SK_OK) {
        SK_LOG_WARN("upstream %s: updating endpoints: %s", service, sk_error_message());
    }
}

void svc__upstreams_destroy(void *obj, void *ctx)
{
    svc_upstreams *u = obj;
    (void)ctx;
    if (u == NULL) {
        return;
    }
    for (size_t i = 0; i < u->n; i++) {
        /* No on_instances call may touch the upstream once it is freed. A
         * no-op for an upstream whose watch was never added. */
        sk_registry_unwatch(u->registry, on_instances, u->ups[i]);
        sk_upstream_destroy(u->ups[i]);
        sk_free(u->names[i]);
    }
    sk_free(u);
}

sk_status svc__upstreams_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_http_client *client = NULL;
    sk_registry *registry = NULL;
    sk_metrics *metrics = NULL;
    svc_upstreams *u = NULL;
    sk_status st = SK_OK;

    *out = NULL;
    if (app->self->n_upstreams > MAX_UPSTREAMS) {
        return SK_FAIL(SK_ELIMIT, "more than %d upstreams", MAX_UPSTREAMS);
    }
    u = sk_calloc(1, sizeof(*u));
    if (u == NULL) {
        return SK_FAIL(SK_ENOMEM, "upstreams");
    }
    if (app->self->n_upstreams == 0) {
        *out = u;
        return SK_OK;
    }
    st = sk_di_resolve(di, "http_client", (void **)&client);
    if (st == SK_OK) {
        st = sk_di_resolve(di, "registry", (void **)&registry);
        u->registry = registry;
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "metrics", (void **)&metrics);
    }
    for (size_t i = 0; i < app->self->n_upstreams && st == SK_OK; i++) {
        const sk_sys_upstream *decl = &app->self->upstreams[i];
        u->names[i] = sk_strdup(decl->service);
        if (u->names[i] == NULL) {
            st = SK_FAIL(SK_ENOMEM, "upstreams");
            break;
        }
        st = sk_upstream_create(&u->ups[i], client, decl->service, decl->policy, metrics);
        if (st != SK_OK) {
            sk_free(u->names[i]);
            break;
        }
        u->n++;
    }
    /* Watches start last, once every upstream exists: callbacks may fire at once. */
    for (size_t i = 0; i < u->n && st == SK_OK; i++) {
        st = sk_registry_watch(registry, u->names[i], on_instances, u->ups[i]);
    }
    if (st != SK_OK) {
        svc__upstreams_destroy(u, NULL);
        return st;
    }
    *out = u;
    return SK_OK;
}
