/* SPDX-License-Identifier: MIT */
/* inventory: products over HTTP (CreateProduct, Restock) and the product row helpers. */
#include <stdio.h>
#include <string.h>

#include "inventory.h"

sk_status inventory_product_load(sk_tx *tx, const char *sku, inventory_product *p)
{
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_TEXT_V(sku) };
    sk_status st = sk_tx_query(tx,
                               "SELECT sku, name, price_cents, stock, restocked, available, reserved, sold, version"
                               " FROM products WHERE sku = ?",
                               params, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        snprintf(p->sku, sizeof(p->sku), "%s", sk_rows_text(rows, 0, NULL));
        snprintf(p->name, sizeof(p->name), "%s", sk_rows_text(rows, 1, NULL));
        p->price_cents = sk_rows_int(rows, 2);
        p->stock = sk_rows_int(rows, 3);
        p->restocked = sk_rows_int(rows, 4);
        p->available = sk_rows_int(rows, 5);
        p->reserved = sk_rows_int(rows, 6);
        p->sold = sk_rows_int(rows, 7);
        p->version = sk_rows_int(rows, 8);
    } else if (st == SK_ENOTFOUND) {
        st = SK_FAIL(SK_ENOTFOUND, "product %s not found", sku);
    }
    sk_rows_close(rows);
    return st;
}

static json_t *product_json(const inventory_product *p)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "sku", p->sku, "name", p->name, "price_cents",
                     (json_int_t)p->price_cents, "available", (json_int_t)p->available, "reserved",
                     (json_int_t)p->reserved, "sold", (json_int_t)p->sold, "version", (json_int_t)p->version);
}

sk_status inventory_product_save(sk_tx *tx, inventory_deps *deps, inventory_product *p, const char *event_type,
                                 const char *order_id)
{
    p->version++;
    sk_db_value params[] = { SK_DB_INT_V(p->restocked), SK_DB_INT_V(p->available), SK_DB_INT_V(p->reserved),
                             SK_DB_INT_V(p->sold),      SK_DB_INT_V(p->version),   SK_DB_TEXT_V(p->sku) };
    sk_status st = sk_tx_exec(tx,
                              "UPDATE products SET restocked = ?, available = ?, reserved = ?, sold = ?, version = ?"
                              " WHERE sku = ?",
                              params, 6, NULL);
    if (st != SK_OK) {
        return st;
    }
    json_t *data = product_json(p);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "product event");
    }
    if (order_id != NULL) {
        json_object_set_new(data, "order_id", json_string(order_id));
    }
    st = svc_emit(deps->app, tx, event_type, p->sku, data, NULL);
    json_decref(data);
    return st;
}

/* ---------------------------------------------------------------- CreateProduct */

sk_status inventory_validate_create(const json_t *payload, void *ctx)
{
    const char *s = NULL;
    int64_t v = 0;
    (void)ctx;
    sk_status st = sk_json_get_string(payload, "sku", 1, 64, &s);
    if (st == SK_OK) {
        st = sk_json_get_string(payload, "name", 1, 200, &s);
    }
    if (st == SK_OK) {
        st = sk_json_get_int(payload, "price_cents", 0, INVENTORY_MAX_PRICE_CENTS, &v);
    }
    if (st == SK_OK) {
        st = sk_json_get_int(payload, "stock", 0, INVENTORY_MAX_STOCK, &v);
    }
    return st;
}

sk_status inventory_create_tx(sk_tx *tx, svc_txcall *tc)
{
    inventory_deps *deps = tc->ctx;
    const json_t *payload = tc->req->payload;
    inventory_product p;
    memset(&p, 0, sizeof(p));
    snprintf(p.sku, sizeof(p.sku), "%s", json_string_value(json_object_get(payload, "sku")));
    snprintf(p.name, sizeof(p.name), "%s", json_string_value(json_object_get(payload, "name")));
    p.price_cents = json_integer_value(json_object_get(payload, "price_cents"));
    p.stock = json_integer_value(json_object_get(payload, "stock"));
    p.available = p.stock;
    p.version = 1;

    sk_db_value params[] = { SK_DB_TEXT_V(p.sku), SK_DB_TEXT_V(p.name), SK_DB_INT_V(p.price_cents),
                             SK_DB_INT_V(p.stock), SK_DB_INT_V(p.available), SK_DB_INT_V(sk_time_now_ms()) };
    sk_status st = sk_tx_exec(tx,
                              "INSERT INTO products (sku, name, price_cents, stock, restocked, available, reserved,"
                              " sold, version, created_ms) VALUES (?, ?, ?, ?, 0, ?, 0, 0, 1, ?)",
                              params, 6, NULL);
    if (st == SK_EEXIST) {
        return SK_FAIL(SK_EEXIST, "sku %s already exists", p.sku);
    }
    if (st != SK_OK) {
        return st;
    }
    json_t *event = product_json(&p);
    if (event == NULL) {
        return SK_FAIL(SK_ENOMEM, "product event");
    }
    st = svc_emit(deps->app, tx, "ProductCreated", p.sku, event, NULL);
    json_decref(event);
    if (st != SK_OK) {
        return st;
    }
    json_t *body = json_pack("{s:s, s:s, s:I, s:I}", "sku", p.sku, "name", p.name, "price_cents",
                             (json_int_t)p.price_cents, "available", (json_int_t)p.available);
    if (body == NULL) {
        return SK_FAIL(SK_ENOMEM, "product body");
    }
    svc_txcall_answer(tc, 201, body, NULL);
    return SK_OK;
}

/* ---------------------------------------------------------------- Restock */

sk_status inventory_validate_restock(const json_t *payload, void *ctx)
{
    const char *s = NULL;
    int64_t v = 0;
    (void)ctx;
    sk_status st = sk_json_get_string(payload, "sku", 1, 64, &s);
    if (st == SK_OK) {
        st = sk_json_get_int(payload, "quantity", 1, INVENTORY_MAX_QUANTITY, &v);
    }
    return st;
}

sk_status inventory_restock_tx(sk_tx *tx, svc_txcall *tc)
{
    inventory_deps *deps = tc->ctx;
    const json_t *payload = tc->req->payload;
    inventory_product p;
    const char *sku = json_string_value(json_object_get(payload, "sku"));
    int64_t quantity = json_integer_value(json_object_get(payload, "quantity"));
    sk_status st = inventory_product_load(tx, sku, &p);
    if (st != SK_OK) {
        return st;
    }
    p.restocked += quantity;
    p.available += quantity;
    st = inventory_product_save(tx, deps, &p, "StockRestocked", NULL);
    if (st == SK_OK) {
        svc_txcall_answer(tc, 202, NULL, NULL);
    }
    return st;
}
