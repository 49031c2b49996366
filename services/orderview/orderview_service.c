/* SPDX-License-Identifier: MIT */
/* orderview: schema, projections over every context's events, queries and routes. */
#include <stdio.h>
#include <string.h>

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
    /* Versioned read model: version 1 is the tables above, renamed; queries read the views,
     * which a replay re-points at the version it built (sk_readmodel). */
    { "orderview", 2,
      "ALTER TABLE customers_v RENAME TO ov1_customers;"
      "ALTER TABLE products_v RENAME TO ov1_products;"
      "ALTER TABLE orders_v RENAME TO ov1_orders;"
      "CREATE VIEW customers_v AS SELECT * FROM ov1_customers;"
      "CREATE VIEW products_v AS SELECT * FROM ov1_products;"
      "CREATE VIEW orders_v AS SELECT * FROM ov1_orders" },
};
const size_t orderview_n_migrations = sizeof(orderview_migrations) / sizeof(orderview_migrations[0]);

static const char *const list_keys[] = { "customer_id", "status", "limit", "cursor", NULL };

static const char *const version_tables[3] = { "customers", "products", "orders" };

/* Run DDL statements in which every "{N}" stands for the version number. */
static sk_status exec_versioned(sk_tx *tx, int64_t version, const char *const *stmts, size_t n)
{
    char num[24];
    snprintf(num, sizeof(num), "%lld", (long long)version);
    for (size_t i = 0; i < n; i++) {
        char sql[512];
        size_t len = 0;
        for (const char *c = stmts[i]; *c != '\0' && len + sizeof(num) < sizeof(sql); c++) {
            if (strncmp(c, "{N}", 3) == 0) {
                len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s", num);
                c += 2;
            } else {
                sql[len++] = *c;
            }
        }
        sql[len] = '\0';
        sk_status st = sk_tx_exec(tx, sql, NULL, 0, NULL);
        if (st != SK_OK) {
            return SK_WRAP(st, "read model version %lld", (long long)version);
        }
    }
    return SK_OK;
}

sk_status orderview_version_create(sk_tx *tx, int64_t version, void *ctx)
{
    static const char *const stmts[] = {
        "CREATE TABLE ov{N}_customers (id TEXT PRIMARY KEY, name TEXT, credit_limit_cents INTEGER NOT NULL,"
        " available_credit_cents INTEGER NOT NULL, credit_version INTEGER NOT NULL)",
        "CREATE TABLE ov{N}_products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,"
        " available INTEGER NOT NULL, reserved INTEGER NOT NULL, sold INTEGER NOT NULL, version INTEGER NOT NULL)",
        "CREATE TABLE ov{N}_orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,"
        " reject_reason TEXT, items TEXT NOT NULL, priced_items TEXT, total_cents INTEGER,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL, applied_ms INTEGER)",
        "CREATE INDEX ov{N}_orders_customer ON ov{N}_orders (customer_id, id)",
        "CREATE INDEX ov{N}_orders_status ON ov{N}_orders (status, id)",
    };
    (void)ctx;
    return exec_versioned(tx, version, stmts, sizeof(stmts) / sizeof(stmts[0]));
}

sk_status orderview_version_activate(sk_tx *tx, int64_t version, void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < 3; i++) {
        char sql[160];
        snprintf(sql, sizeof(sql), "DROP VIEW IF EXISTS %s_v", version_tables[i]);
        sk_status st = sk_tx_exec(tx, sql, NULL, 0, NULL);
        if (st == SK_OK) {
            snprintf(sql, sizeof(sql), "CREATE VIEW %s_v AS SELECT * FROM ov%lld_%s", version_tables[i],
                     (long long)version, version_tables[i]);
            st = sk_tx_exec(tx, sql, NULL, 0, NULL);
        }
        if (st != SK_OK) {
            return SK_WRAP(st, "pointing the views at read model version %lld", (long long)version);
        }
    }
    return SK_OK;
}

sk_status orderview_version_drop(sk_tx *tx, int64_t version, void *ctx)
{
    static const char *const stmts[] = {
        "DROP TABLE IF EXISTS ov{N}_customers",
        "DROP TABLE IF EXISTS ov{N}_products",
        "DROP TABLE IF EXISTS ov{N}_orders",
    };
    (void)ctx;
    return exec_versioned(tx, version, stmts, sizeof(stmts) / sizeof(stmts[0]));
}

sk_status orderview_provider_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_cqrs_bus *queries = NULL;
    orderview_deps *deps = sk_calloc(1, sizeof(*deps));
    svc_schema schema = { orderview_migrations, orderview_n_migrations, false };
    sk_status st = SK_OK;
    static const sk_readmodel_stream streams[4] = {
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
    /* The instances share the database and one of them projects (sk_readmodel): its
     * notifications must also complete the queries waiting in the others. */
    if (st == SK_OK) {
        if (sk_waiters_share(deps->waiters, deps->platform.store, ORDERVIEW_READMODEL) != SK_OK) {
            SK_LOG_WARN("orderview: %s; a query here with a consistency token then waits for "
                        "its deadline when another instance projects",
                        sk_error_message());
            sk_error_clear();
        }
    }
    /* The read model first: it needs JetStream and may fail for now (start-up then tries
     * again), and nothing may stay registered with the buses after a failure.
     * Named after the service: its instances share one database and one set of durable
     * consumers, projected by whichever instance holds the read model's lock. */
    if (st == SK_OK) {
        sk_readmodel_config rc = {
            .name = app->args.service,
            .streams = streams,
            .n_streams = 4,
            .apply = orderview_apply,
            .create = orderview_version_create,
            .activate = orderview_version_activate,
            .drop = orderview_version_drop,
            .ctx = deps,
        };
        st = sk_readmodel_start(&deps->readmodel, deps->platform.bus, deps->platform.store,
                                deps->platform.metrics, &rc);
    }
    if (st == SK_OK) {
        st = svc_readmodel_add(app, ORDERVIEW_READMODEL, deps->readmodel);
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
    svc_readmodel_remove(deps->app, deps->readmodel);
    sk_readmodel_stop(deps->readmodel);
    svc_store_flush(deps->platform.store);
    sk_waiters_destroy(deps->waiters);
    sk_free(deps);
}
