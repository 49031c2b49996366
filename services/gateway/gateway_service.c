/* SPDX-License-Identifier: MIT */
/* gateway: routes from the system file, readiness over discovery. */
#include <stdio.h>
#include <string.h>

#include "gateway.h"

bool gateway_services_ready(char *reason, size_t reason_len, void *ctx)
{
    gateway_deps *deps = ctx;
    sk_instance *list = NULL;
    size_t n = 0;
    if (sk_registry_list(deps->registry, &list, &n) != SK_OK) {
        snprintf(reason, reason_len, "discovery: %s", sk_error_message());
        return false;
    }
    bool ok = true;
    const sk_system *sys = deps->app->sys;
    for (size_t s = 0; s < sys->n_services && ok; s++) {
        const sk_sys_service *svc = &sys->services[s];
        if (svc->is_gateway) {
            continue;
        }
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) {
            found = list[i].is_ready && strcmp(list[i].service, svc->name) == 0;
        }
        if (!found) {
            snprintf(reason, reason_len, "no ready instance of %s", svc->name);
            ok = false;
        }
    }
    sk_registry_list_free(list, n);
    return ok;
}

sk_status gateway_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    svc_router *router = NULL;
    svc_upstreams *ups = NULL;
    sk_health *health = NULL;
    gateway_deps *deps = sk_calloc(1, sizeof(*deps));
    sk_status st = SK_OK;

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "gateway");
    }
    deps->app = app;
    if (app->sys->n_routes > sizeof(deps->routes) / sizeof(deps->routes[0])) {
        sk_free(deps);
        return SK_FAIL(SK_ELIMIT, "gateway: more than 64 routes");
    }
    st = sk_di_resolve(di, "router", (void **)&router);
    if (st == SK_OK) {
        st = sk_di_resolve(di, "upstreams", (void **)&ups);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "registry", (void **)&deps->registry);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "health", (void **)&health);
    }
    for (size_t i = 0; i < app->sys->n_routes && st == SK_OK; i++) {
        const sk_sys_route *r = &app->sys->routes[i];
        gateway_route *gr = &deps->routes[deps->n_routes];
        gr->decl = r;
        gr->upstream = svc_upstreams_get(ups, r->service);
        if (gr->upstream == NULL) {
            st = SK_FAIL(SK_EPROTO, "gateway: route %s %s targets %s, which is not among the gateway's upstreams",
                         r->method, r->path, r->service);
            break;
        }
        deps->n_routes++;
        st = svc_router_add(router, r->method, r->path, gateway_forward, gr);
    }
    if (st == SK_OK) {
        st = sk_health_add(health, "services", gateway_services_ready, deps);
    }
    if (st != SK_OK) {
        sk_free(deps);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void gateway_provider_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_free(obj);
}
