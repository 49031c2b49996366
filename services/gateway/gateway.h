/* SPDX-License-Identifier: MIT */
/*
 * gateway: the only public listener. Routes the public API of the system
 * file to the services over the mesh (mTLS, discovered instances), answers
 * /readyz only when every service has a ready instance.
 */
#ifndef GATEWAY_H
#define GATEWAY_H

#include "svc.h"

typedef struct gateway_route {
    const sk_sys_route *decl;
    sk_upstream *upstream;
} gateway_route;

typedef struct gateway_deps {
    svc_app *app;
    sk_registry *registry;
    gateway_route routes[64];
    size_t n_routes;
} gateway_deps;

/** Build the internal path of @p route from captured parameters and the query string. */
sk_status gateway_target_path(const sk_sys_route *route, const svc_params *params, const char *query, sk_buf *out);

/** Route handler: forward to the route's upstream service (ctx is a gateway_route). */
void gateway_forward(sk_http_req *req, const svc_params *params, void *ctx);

/** Readiness check: every service of the system file has a ready instance. */
bool gateway_services_ready(char *reason, size_t reason_len, void *ctx);

sk_status gateway_provider_create(sk_di *di, void **out, void *ctx);
void gateway_provider_destroy(void *obj, void *ctx);

#endif /* GATEWAY_H */
