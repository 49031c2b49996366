/* SPDX-License-Identifier: MIT */
/* order: schema, saga engine, handlers and routes. */
#include "order.h"

const sk_migration order_migrations[] = {
    { "order", 1,
      "CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,"
      " reject_reason TEXT, items TEXT NOT NULL, priced_items TEXT, total_cents INTEGER,"
      " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, version INTEGER NOT NULL)" },
};
const size_t order_n_migrations = sizeof(order_migrations) / sizeof(order_migrations[0]);

sk_status order_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *commands = NULL;
    order_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { order_migrations, order_n_migrations, true };

    if (deps == NULL) {
        return SK_FAIL(SK_ENOMEM, "order");
    }
    deps->app = app;
    order_sagas_init(deps);
    sk_status st = svc_platform_resolve(app, &schema, &deps->platform);
    if (st == SK_OK) {
        st = sk_di_resolve(di, "commands", (void **)&commands);
    }
    if (st == SK_OK) {
        st = sk_saga_engine_create(&deps->sagas, deps->platform.store, deps->platform.bus, deps->platform.metrics,
                                   app->source,
                                   "ORDER_REPLIES");
    }
    if (st == SK_OK) {
        st = sk_saga_engine_register(deps->sagas, &deps->create_saga);
    }
    if (st == SK_OK) {
        st = sk_saga_engine_register(deps->sagas, &deps->cancel_saga);
    }
    if (st == SK_OK) {
        st = sk_saga_engine_start(deps->sagas);
    }
    if (st == SK_OK) {
        deps->create_order = (svc_tx_handler){ deps->platform.store, order_create_tx, deps };
        st = sk_cqrs_bus_register(commands, "CreateOrder", order_validate_create, svc_tx_handle, &deps->create_order);
    }
    if (st == SK_OK) {
        deps->cancel_order = (svc_tx_handler){ deps->platform.store, order_cancel_tx, deps };
        st = sk_cqrs_bus_register(commands, "CancelOrder", order_validate_cancel, svc_tx_handle, &deps->cancel_order);
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/orders", "CreateOrder");
    }
    if (st == SK_OK) {
        st = svc_route_command(app, "POST", "/orders/{id}/cancel", "CancelOrder");
    }
    if (st != SK_OK) {
        order_provider_destroy(deps, NULL);
        return st;
    }
    *out = deps;
    return SK_OK;
}

void order_provider_destroy(void *obj, void *ctx)
{
    order_deps *deps = obj;
    (void)ctx;
    if (deps == NULL) {
        return;
    }
    sk_saga_engine_stop(deps->sagas);
    svc_store_flush(deps->platform.store);
    sk_saga_engine_destroy(deps->sagas);
    sk_free(deps);
}
