/* SPDX-License-Identifier: MIT */
/*
 * The HTTP edge of a service: turns a routed request into a command or
 * query on the matching bus and the bus's result into the HTTP answer.
 * Nothing here blocks: the answer is sent from whichever thread completes
 * the call.
 */
#include <stdio.h>
#include <string.h>

#include "svc.h"
#include "svc_int.h"

/* One call in flight from the edge: counted until answered, for the drain at SIGTERM. */
typedef struct edge_call {
    svc_app *app;
    sk_http_req *req;
} edge_call;

static void edge_done(const sk_result *res, void *ctx)
{
    edge_call *ec = ctx;
    svc_app *app = ec->app;
    sk_http_req *req = ec->req;
    char location[512];
    const char *headers[2] = { NULL, NULL };

    if (res->location != NULL) {
        snprintf(location, sizeof(location), "Location: %s", res->location);
        headers[0] = location;
    }
    if (res->http_status >= 400) {
        sk_http_req_respond_problem(req, res->http_status, res->title != NULL ? res->title : "Error", "%s",
                                    res->detail != NULL ? res->detail : "");
    } else if (res->body != NULL) {
        sk_http_req_respond_json(req, res->http_status, res->body, headers);
    } else {
        sk_http_req_respond(req, res->http_status, "application/json", "", 0, headers);
    }
    sk_free(ec);
    svc_inflight_leave(app);
}

/* Add a string member; a value that is not valid UTF-8 is refused. */
static sk_status put_string(json_t *payload, const char *name, const char *value)
{
    json_t *s = json_string(value);
    if (s == NULL) {
        return SK_FAIL(SK_EPROTO, "%s: not valid UTF-8", name);
    }
    if (json_object_set_new(payload, name, s) != 0) {
        return SK_FAIL(SK_ENOMEM, "%s: out of memory", name);
    }
    return SK_OK;
}

static void route_to_bus(sk_http_req *req, const svc_params *params, void *ctx)
{
    svc_edge_route *er = ctx;
    json_t *payload = NULL;
    sk_slice body = sk_http_req_body(req);
    sk_status st = SK_OK;

    const char *method = sk_http_req_method(req);
    bool has_body = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "DELETE") != 0;
    if (has_body && body.len > 0) {
        st = sk_json_parse_object(body, &payload);
        if (st != SK_OK) {
            sk_http_req_respond_problem(req, 400, "Bad Request", "body: %s",
                                        sk_error_message());
            return;
        }
    } else {
        payload = json_object();
        if (payload == NULL) {
            sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
            return;
        }
    }
    for (size_t i = 0; i < params->n && st == SK_OK; i++) {
        st = put_string(payload, params->names[i], params->values[i]);
    }
    for (size_t i = 0; er->query_keys != NULL && er->query_keys[i] != NULL && st == SK_OK; i++) {
        const char *v = sk_http_req_query(req, er->query_keys[i]);
        if (v != NULL) {
            st = put_string(payload, er->query_keys[i], v);
        }
    }
    if (st != SK_OK) {
        json_decref(payload);
        sk_http_req_respond_problem(req, 400, "Bad Request", "%s", sk_error_message());
        return;
    }
    const char *token = sk_http_req_header(req, "X-Consistency-Token");
    if (token == NULL) {
        token = sk_http_req_query(req, "consistency_token");
    }
    sk_request r = {
        .type = er->type,
        .payload = payload,
        .idempotency_key = sk_http_req_header(req, "Idempotency-Key"),
        .consistency_token = token,
        .traceparent = sk_http_req_header(req, "traceparent"),
        .request_id = sk_http_req_header(req, "X-Request-Id"),
    };
    edge_call *ec = sk_calloc(1, sizeof(*ec));
    if (ec == NULL) {
        json_decref(payload);
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    ec->app = er->app;
    ec->req = req;
    svc_inflight_enter(er->app);
    st = sk_cqrs_bus_dispatch(er->bus, &r, edge_done, ec);
    json_decref(payload);
    if (st != SK_OK) {
        sk_free(ec);
        svc_inflight_leave(er->app);
        sk_http_req_respond_problem(req, sk_http_status_for(st), "Service Unavailable", "%s", sk_error_message());
    }
}

static sk_status add_route(svc_app *app,
                           const char *bus_name,
                           const char *method,
                           const char *pattern,
                           const char *type,
                           const char *const *query_keys)
{
    svc_router *router = NULL;
    sk_cqrs_bus *bus = NULL;
    sk_status st = svc_get(app, "router", (void **)&router);
    if (st == SK_OK) {
        st = svc_get(app, bus_name, (void **)&bus);
    }
    if (st != SK_OK) {
        return st;
    }
    if (app->n_edges == sizeof(app->edges) / sizeof(app->edges[0])) {
        return SK_FAIL(SK_ELIMIT, "too many routes");
    }
    svc_edge_route *er = sk_calloc(1, sizeof(*er));
    if (er == NULL) {
        return SK_FAIL(SK_ENOMEM, "route %s %s", method, pattern);
    }
    er->app = app;
    er->bus = bus;
    snprintf(er->type, sizeof(er->type), "%s", type);
    er->query_keys = query_keys;
    app->edges[app->n_edges++] = er;
    return svc_router_add(router, method, pattern, route_to_bus, er);
}

sk_status svc_route_command(svc_app *app, const char *method, const char *pattern, const char *type)
{
    return add_route(app, "commands", method, pattern, type, NULL);
}

sk_status svc_route_query(svc_app *app,
                          const char *method,
                          const char *pattern,
                          const char *type,
                          const char *const *query_keys)
{
    return add_route(app, "queries", method, pattern, type, query_keys);
}

void svc__edges_free(svc_app *app)
{
    for (size_t i = 0; i < app->n_edges; i++) {
        sk_free(app->edges[i]);
        app->edges[i] = NULL;
    }
    app->n_edges = 0;
}
