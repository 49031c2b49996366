/* SPDX-License-Identifier: MIT */
/* orderview: schema, projections over every context's events, queries and routes. */
#include <stdio.h>

#include "orderview.h"

const sk_migration orderview_migrations[] = {
    { "orderview", 1,
      "CREATE TABLE customers_v (id TEXT PRIMARY KEY, name TEXT, credit_limit_cents INTEGER NOT NULL,"
      " available_credit_cents INTEGER NOT NULL, credit_version INTEGER NOT NULL);"
      "CREATE TABLE products_v (sku TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,"
      " available INTEGER NOT NULL, reserved INTEGER NOT NULL, sold INTEGER NOT NULL, version INTEGER NOT NULL);"
      "CREATE TABLE orders_v (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,"
      " reject_reason TEXT, items TEXT NOT NULL, priced_items TEXT, total_cents INTEGER,"
      " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL, applied_ms INTEGER);"
      "CREATE INDEX orders_v_customer ON orders_v (customer_id, id);"
      "CREATE INDEX orders_v_status ON orders_v (status, id)" },
};
const size_t orderview_n_migrations = sizeof(orderview_migrations) / sizeof(orderview_migrations[0]);

static const char *const list_keys[] = { "customer_id", "status", "limit", "cursor", NULL };

sk_status orderview_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *queries = NULL;
    orderview_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { orderview_migrations, orderview_n_migrations, false };
    sk_status st = SK_OK;
    static const char *const streams[4][2] = {
        { "CUSTOMER_EVENTS", "customer.events.>" },
        { "PAYMENT_EVENTS", "payment.events.>" },
        { "INVENTORY_EVENTS", "inventory.events.>" },
        { "ORDER_EVENTS", "order.events.>" },
    };

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "orderview");
    }
    deps->app = app;
    st = sk_waiters_create(&deps->waiters);
    if (st == SK_OK) {
        st = svc_platform_resolve(app, &schema, &deps->platform);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "queries", (void **)&queries);
    }
    struct {
        const char *type;
        sk_validate_fn validate;
        sk_handler_fn handler;
    } handlers[] = {
        { "GetOrder", orderview_validate_get_order, orderview_get_order },
        { "ListOrders", orderview_validate_list_orders, orderview_list_orders },
        { "GetCustomer", orderview_validate_get_customer, orderview_get_customer },
        { "GetProduct", orderview_validate_get_product, orderview_get_product },
    };
    for (size_t i = 0; i < 4 && st == SK_OK; i++) {
        st = sk_cqrs_bus_register(queries, handlers[i].type, handlers[i].validate, handlers[i].handler, deps);
    }
    if (st == SK_OK) {
        st = svc_route_query(app, "GET", "/orders/{id}", "GetOrder", NULL);
    }
    if (st == SK_OK) {
        st = svc_route_query(app, "GET", "/orders", "ListOrders", list_keys);
    }
    if (st == SK_OK) {
        st = svc_route_query(app, "GET", "/customers/{id}", "GetCustomer", NULL);
    }
    if (st == SK_OK) {
        st = svc_route_query(app, "GET", "/products/{sku}", "GetProduct", NULL);
    }
    /* Each instance keeps its own read model, so its projections are its own durable consumers. */
    for (size_t i = 0; i < 4 && st == SK_OK; i++) {
        sk_projection_config pc = {
            .name = app->args.instance,
            .stream = streams[i][0],
            .filter_subject = streams[i][1],
            .apply = orderview_apply,
            .ctx = deps,
        };
        st = sk_projection_start(&deps->projections[i], deps->platform.bus, deps->platform.store,
                                 deps->platform.metrics, &pc);
    }
    if (st != SK_OK) {
        orderview_provider_destroy(deps, NULL);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void orderview_provider_destroy(void *obj, void *ctx)
{
    orderview_deps *deps = obj;
    (void)ctx;
    if (deps == NULL) {
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        sk_projection_stop(deps->projections[i]);
    }
    svc_store_flush(deps->platform.store);
    sk_waiters_destroy(deps->waiters);
    sk_free(deps);
}
