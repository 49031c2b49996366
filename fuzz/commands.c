/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: what a service's HTTP edge does with a request before any
 * handler runs, plus the payload checks of saga commands. The first input
 * line is "METHOD /path", the rest the body. As services/common/svc_edge.c
 * does: the path is routed (svc_router_match over the services' routes),
 * the body parsed as a JSON object (sk_json_parse_object), the "{x}"
 * captures added as string members, and the route's command/query
 * validator run. Every validator also sees the body alone, and so do the
 * ReserveStock line parser (inventory_lines_parse) and, as a participant's
 * reply, the order sagas' reply readers (the on_reply of each step).
 */
#include <string.h>

#include "customer.h"
#include "fuzz.h"
#include "inventory.h"
#include "order.h"
#include "orderview.h"
#include "psp.h"

typedef sk_status (*validate_fn)(const json_t *payload, void *ctx);

typedef struct fuzz_route {
    const char *method;
    const char *pattern;
    validate_fn validate;
} fuzz_route;

/* The routes the services register (services/<name>/<name>_service.c). */
static const fuzz_route routes[] = {
    { "POST", "/customers", customer_validate_register },
    { "POST", "/products", inventory_validate_create },
    { "POST", "/products/{sku}/restock", inventory_validate_restock },
    { "POST", "/orders", order_validate_create },
    { "POST", "/orders/{id}/cancel", order_validate_cancel },
    { "GET", "/orders/{id}", orderview_validate_get_order },
    { "GET", "/orders", orderview_validate_list_orders },
    { "GET", "/customers/{id}", orderview_validate_get_customer },
    { "GET", "/products/{sku}", orderview_validate_get_product },
    { "POST", "/captures", psp_validate_capture },
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static void noop_route(sk_http_req *req, const svc_params *params, void *ctx)
{
    (void)req;
    (void)params;
    (void)ctx;
}

/* Reply types the order sagas' steps receive. */
static const char *const reply_types[] = { "StockReserved", "StockReservationFailed", "CreditCharged",
                                           "CreditChargeFailed", "CreditRefunded", "ReservationReleased" };

static void check_priced(const json_t *data)
{
    const json_t *priced = json_object_get(data, "priced_items");
    const json_t *item;
    size_t i;
    json_int_t sum = 0;

    SK_FUZZ_CHECK(json_is_array(priced) && json_is_integer(json_object_get(data, "total_cents")));
    json_array_foreach(priced, i, item)
    {
        json_int_t line = json_integer_value(json_object_get(item, "line_total_cents"));
        SK_FUZZ_CHECK(line >= 0 && sum <= INT64_MAX - line);
        sum += line;
    }
    SK_FUZZ_CHECK(sum == json_integer_value(json_object_get(data, "total_cents")));
}

static void fuzz_saga_replies(const json_t *reply)
{
    static order_deps deps;
    static int is_init;

    if (!is_init) {
        order_sagas_init(&deps);
        is_init = 1;
    }
    const sk_saga_def *defs[] = { &deps.create_saga, &deps.cancel_saga };
    for (size_t d = 0; d < 2; d++) {
        for (size_t s = 0; s < defs[d]->n_steps; s++) {
            const sk_saga_step *step = &defs[d]->steps[s];
            for (size_t t = 0; step->on_reply != NULL && t < sizeof(reply_types) / sizeof(reply_types[0]);
                 t++) {
                json_t *data = json_object();
                sk_saga_verdict verdict = SK_SAGA_STEP_FAILED;
                char reason[SK_SAGA_MAX_REASON];
                if (data == NULL) {
                    return;
                }
                memset(reason, 'x', sizeof(reason));
                reason[0] = '\0';
                sk_status st = step->on_reply(data, reply_types[t], reply, &verdict, reason, defs[d]->ctx);
                SK_FUZZ_CHECK(memchr(reason, '\0', sizeof(reason)) != NULL);
                if (st == SK_OK && verdict == SK_SAGA_STEP_OK && json_object_get(data, "priced_items") != NULL) {
                    check_priced(data);
                }
                json_decref(data);
            }
        }
    }
}

static svc_router *router_get(void)
{
    static svc_router *router;

    if (router == NULL) {
        SK_FUZZ_CHECK(svc_router_create(&router) == SK_OK);
        for (size_t i = 0; i < N_ROUTES; i++) {
            SK_FUZZ_CHECK(svc_router_add(router, routes[i].method, routes[i].pattern, noop_route,
                                         (void *)(uintptr_t)&routes[i]) == SK_OK);
        }
    }
    return router;
}

static void run_route(const char *method, const char *path, const json_t *body)
{
    svc_route_fn fn = NULL;
    void *ctx = NULL;
    svc_params params;
    char allow[64];
    json_t *payload = NULL;
    sk_status st;

    st = svc_router_match(router_get(), method, path, &fn, &ctx, &params, allow, sizeof(allow));
    if (st != SK_OK) {
        SK_FUZZ_CHECK(st == SK_ENOTFOUND || st == SK_ESTATE || st == SK_ENOMEM);
        SK_FUZZ_CHECK(params.n == 0);
        return;
    }
    const fuzz_route *rt = ctx;
    SK_FUZZ_CHECK(fn == noop_route && strcmp(rt->method, method) == 0);
    payload = body != NULL ? json_deep_copy(body) : json_object();
    for (size_t i = 0; payload != NULL && i < params.n; i++) {
        SK_FUZZ_CHECK(params.values[i][0] != '\0' && strchr(params.values[i], '/') == NULL);
        json_t *s = json_string(params.values[i]);
        /* svc_edge answers 400 for a capture that is not UTF-8. */
        if (s == NULL || json_object_set_new(payload, params.names[i], s) != 0) {
            json_decref(payload);
            payload = NULL;
        }
    }
    if (payload != NULL) {
        (void)rt->validate(payload, NULL);
    }
    json_decref(payload);
    svc_params_fini(&params);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t line_len = nl != NULL ? (size_t)(nl - data) : size;
    sk_slice body = { nl != NULL ? nl + 1 : data + size, nl != NULL ? size - line_len - 1 : 0 };
    char line[1024];
    json_t *obj = NULL;
    inventory_line lines[INVENTORY_MAX_LINES];
    size_t n_lines = 0;

    sk_fuzz_setup();
    if (sk_json_parse_object(body, &obj) == SK_OK) {
        for (size_t i = 0; i < N_ROUTES; i++) {
            (void)routes[i].validate(obj, NULL);
        }
        if (inventory_lines_parse(obj, lines, &n_lines) == SK_OK) {
            SK_FUZZ_CHECK(n_lines >= 1 && n_lines <= INVENTORY_MAX_LINES);
            for (size_t i = 0; i < n_lines; i++) {
                SK_FUZZ_CHECK(lines[i].quantity >= 1 && lines[i].quantity <= INVENTORY_MAX_QUANTITY);
            }
        }
        fuzz_saga_replies(obj);
    }
    /* The request line as the HTTP server hands it over: NUL-terminated, cut at the first NUL. */
    if (line_len < sizeof(line)) {
        memcpy(line, data, line_len);
        line[line_len] = '\0';
        char *sp = strchr(line, ' ');
        if (sp != NULL) {
            *sp = '\0';
            run_route(line, sp + 1, obj);
        }
    }
    json_decref(obj);
    sk_error_clear();
    return 0;
}
