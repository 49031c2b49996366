/* SPDX-License-Identifier: MIT */
/*
 * order: CreateOrder and CancelOrder. Both run in one unit of work on the
 * store's writer thread, which serialises them: an Idempotency-Key checked
 * there cannot be taken twice, and a cancel sees the order's latest state.
 */
#include <stdio.h>
#include <string.h>

#include "order.h"

#define IDEM_SCOPE "CreateOrder"

/* ---------------------------------------------------------------- validation */

sk_status order_validate_create(const json_t *payload, void *ctx)
{
    const char *customer_id = NULL;
    const json_t *items = json_object_get(payload, "items");
    size_t i = 0;
    const json_t *item = NULL;
    (void)ctx;

    sk_status st = sk_json_get_string(payload, "customer_id", 1, 100, &customer_id);
    if (st != SK_OK) {
        return st;
    }
    if (items == NULL) {
        return SK_FAIL(SK_EPROTO, "items: required");
    }
    if (!json_is_array(items)) {
        return SK_FAIL(SK_EPROTO, "items: expected an array of 1..%d items", ORDER_MAX_ITEMS);
    }
    if (json_array_size(items) == 0 || json_array_size(items) > ORDER_MAX_ITEMS) {
        return SK_FAIL(SK_EPROTO, "items: expected 1..%d items, got %zu", ORDER_MAX_ITEMS, json_array_size(items));
    }
    json_array_foreach(items, i, item)
    {
        const char *sku = NULL;
        int64_t q = 0;
        if (!json_is_object(item)) {
            return SK_FAIL(SK_EPROTO, "items[%zu]: expected an object", i);
        }
        st = sk_json_get_string(item, "sku", 1, 64, &sku);
        if (st == SK_OK) {
            st = sk_json_get_int(item, "quantity", 1, ORDER_MAX_QUANTITY, &q);
        }
        if (st != SK_OK) {
            return SK_WRAP(st, "items[%zu]", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(json_string_value(json_object_get(json_array_get(items, j), "sku")), sku) == 0) {
                return SK_FAIL(SK_EPROTO, "items[%zu].sku: duplicate of items[%zu].sku", i, j);
            }
        }
    }
    return SK_OK;
}

sk_status order_validate_cancel(const json_t *payload, void *ctx)
{
    const char *id = NULL;
    (void)ctx;
    return sk_json_get_string(payload, "id", 1, 100, &id);
}

/* ---------------------------------------------------------------- transitions */

sk_status order_transition(sk_tx *tx,
                           order_deps *deps,
                           const char *order_id,
                           const char *status,
                           const char *reason,
                           const char *event_type,
                           json_t *extra)
{
    int64_t version = 0, created_ms = 0;
    int64_t now = sk_time_now_ms();
    char updated_at[SK_RFC3339_LEN], created_at[SK_RFC3339_LEN];
    char customer_id[SVC_ID_MAX] = "";
    json_t *ordered = NULL;
    sk_rows *rows = NULL;
    sk_db_value key[] = { SK_DB_TEXT_V(order_id) };
    sk_status st = sk_tx_query(tx, "SELECT version, customer_id, items, created_ms FROM orders WHERE id = ?", key, 1,
                               &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
        if (st == SK_OK) {
            version = sk_rows_int(rows, 0);
            snprintf(customer_id, sizeof(customer_id), "%s", sk_rows_text(rows, 1, NULL));
            st = sk_json_parse(sk_slice_from_str(sk_rows_text(rows, 2, NULL)), &ordered);
            created_ms = sk_rows_int(rows, 3);
        }
        sk_rows_close(rows);
    }
    if (st != SK_OK) {
        json_decref(ordered);
        return st == SK_ENOTFOUND ? SK_FAIL(SK_ENOTFOUND, "order %s not found", order_id) : st;
    }
    version++;
    const json_t *total = extra != NULL ? json_object_get(extra, "total_cents") : NULL;
    const json_t *items = extra != NULL ? json_object_get(extra, "items") : NULL;
    char *items_text = items != NULL ? sk_json_dumps(items) : NULL;
    sk_db_value params[] = {
        SK_DB_TEXT_V(status),
        reason != NULL ? SK_DB_TEXT_V(reason) : SK_DB_NULL_V,
        SK_DB_INT_V(now),
        SK_DB_INT_V(version),
        total != NULL ? SK_DB_INT_V(json_integer_value(total)) : SK_DB_NULL_V,
        items_text != NULL ? SK_DB_TEXT_V(items_text) : SK_DB_NULL_V,
        SK_DB_TEXT_V(order_id),
    };
    st = sk_tx_exec(tx,
                    "UPDATE orders SET status = ?, reject_reason = ?, updated_ms = ?, version = ?,"
                    " total_cents = COALESCE(?, total_cents), priced_items = COALESCE(?, priced_items)"
                    " WHERE id = ?",
                    params, 7, NULL);
    sk_free(items_text);
    if (st != SK_OK) {
        json_decref(ordered);
        return st;
    }
    /* Every order event carries the whole order, so a read model can build the
     * row from whichever event reaches it first (redelivery can reorder them). */
    sk_time_format_rfc3339(now, updated_at);
    sk_time_format_rfc3339(created_ms, created_at);
    json_t *data = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:I}", "order_id", order_id, "customer_id", customer_id,
                             "status", status, "ordered_items", ordered, "created_at", created_at, "updated_at",
                             updated_at, "version", (json_int_t)version);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s", event_type);
    }
    if (reason != NULL) {
        json_object_set_new(data, "reject_reason", json_string(reason));
    }
    if (extra != NULL) {
        json_object_update(data, extra);
    }
    st = svc_emit(deps->app, tx, event_type, order_id, data, NULL);
    json_decref(data);
    return st;
}

/* ---------------------------------------------------------------- CreateOrder */

/* Answer with what was stored for the key; the body's order id gives the Location. */
static sk_status replay_answer(svc_txcall *tc, int http_status, const char *body)
{
    json_t *doc = NULL;
    char location[160];
    sk_status st = sk_json_parse_object(sk_slice_from_str(body), &doc);
    if (st != SK_OK) {
        return SK_WRAP(SK_EINTERNAL, "stored idempotent answer");
    }
    snprintf(location, sizeof(location), "/api/v1/orders/%s", json_string_value(json_object_get(doc, "order_id")));
    svc_txcall_answer(tc, http_status, doc, location);
    return SK_OK;
}

sk_status order_create_tx(sk_tx *tx, svc_txcall *tc)
{
    order_deps *deps = tc->ctx;
    const json_t *payload = tc->req->payload;
    const char *idem_key = tc->req->idempotency_key;
    const char *traceparent = tc->req->traceparent;
    char id[SK_UUID_LEN], token[SK_CTOKEN_MAX], created_at[SK_RFC3339_LEN], location[96];
    char hash[SK_IDEM_HASH_LEN];
    int64_t now = sk_time_now_ms();

    if (now - deps->idem_expired_ms > ORDER_IDEM_EXPIRE_EVERY_MS) {
        sk_status st = sk_idem_expire(tx, ORDER_IDEM_KEEP_MS);
        if (st != SK_OK) {
            return st;
        }
        deps->idem_expired_ms = now; /* a rolled-back unit only delays the next expiry */
    }
    if (idem_key != NULL) {
        int stored_status = 0;
        char *stored_body = NULL;
        sk_status st = sk_idem_hash(payload, hash);
        if (st == SK_OK) {
            /* The writer runs units one at a time, so no other unit can take the key in between. */
            st = sk_idem_lookup(tx, IDEM_SCOPE, idem_key, hash, &stored_status, &stored_body);
        }
        if (st == SK_OK) {
            st = replay_answer(tc, stored_status, stored_body);
            sk_free(stored_body);
            return st;
        }
        if (st == SK_ECONFLICT) {
            svc_txcall_fail_http(tc, 422);
            return SK_FAIL(SK_ECONFLICT, "Idempotency-Key was used with another request body");
        }
        if (st != SK_ENOTFOUND) {
            return st;
        }
    }
    sk_uuid7(id);
    sk_time_format_rfc3339(now, created_at);
    const char *customer_id = json_string_value(json_object_get(payload, "customer_id"));
    json_t *items = json_deep_copy(json_object_get(payload, "items"));
    /* Keep only the fields we know, in a canonical shape. */
    size_t i = 0;
    json_t *item = NULL;
    json_array_foreach(items, i, item)
    {
        json_t *clean = json_pack("{s:O, s:O}", "sku", json_object_get(item, "sku"), "quantity",
                                  json_object_get(item, "quantity"));
        json_array_set_new(items, i, clean);
    }
    char *items_text = items != NULL ? sk_json_dumps(items) : NULL;
    if (items_text == NULL) {
        json_decref(items);
        return SK_FAIL(SK_ENOMEM, "order items");
    }
    sk_db_value params[] = { SK_DB_TEXT_V(id), SK_DB_TEXT_V(customer_id), SK_DB_TEXT_V(items_text),
                             SK_DB_INT_V(now), SK_DB_INT_V(now) };
    sk_status st = sk_tx_exec(tx,
                              "INSERT INTO orders (id, customer_id, status, items, created_ms, updated_ms, version)"
                              " VALUES (?, ?, 'PENDING', ?, ?, ?, 1)",
                              params, 5, NULL);
    sk_free(items_text);
    json_t *event = NULL, *saga_data = NULL, *body = NULL;
    char *body_text = NULL;
    if (st == SK_OK) {
        event = json_pack("{s:s, s:s, s:O, s:s, s:s, s:i}", "order_id", id, "customer_id", customer_id, "items",
                          items, "status", "PENDING", "created_at", created_at, "version", 1);
        st = event != NULL ? svc_emit(deps->app, tx, "OrderCreated", id, event, traceparent)
                           : SK_FAIL(SK_ENOMEM, "OrderCreated");
    }
    if (st == SK_OK) {
        saga_data = json_pack("{s:s, s:s, s:O}", "order_id", id, "customer_id", customer_id, "items", items);
        st = saga_data != NULL ? sk_saga_start(tx, deps->sagas, "CreateOrderSaga", id, saga_data, traceparent)
                               : SK_FAIL(SK_ENOMEM, "saga data");
    }
    if (st == SK_OK) {
        st = sk_ctoken_encode(id, 1, token);
    }
    if (st == SK_OK) {
        body = json_pack("{s:s, s:s, s:s}", "order_id", id, "status", "PENDING", "consistency_token", token);
        body_text = body != NULL ? sk_json_dumps(body) : NULL;
        st = body_text != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "answer");
    }
    if (st == SK_OK && idem_key != NULL) {
        st = sk_idem_save(tx, IDEM_SCOPE, idem_key, hash, 202, body_text);
    }
    if (st == SK_OK) {
        snprintf(location, sizeof(location), "/api/v1/orders/%s", id);
        svc_txcall_answer(tc, 202, body, location);
        body = NULL;
    }
    json_decref(items);
    json_decref(event);
    json_decref(saga_data);
    json_decref(body);
    sk_free(body_text);
    return st;
}

/* ---------------------------------------------------------------- CancelOrder */

sk_status order_cancel_tx(sk_tx *tx, svc_txcall *tc)
{
    order_deps *deps = tc->ctx;
    const json_t *payload = tc->req->payload;
    const char *traceparent = tc->req->traceparent;
    const char *id = json_string_value(json_object_get(payload, "id"));
    sk_rows *rows = NULL;
    char status[24] = "";
    sk_db_value key[] = { SK_DB_TEXT_V(id) };

    sk_status st = sk_tx_query(tx, "SELECT status, customer_id FROM orders WHERE id = ?", key, 1, &rows);
    if (st == SK_OK) {
        st = sk_rows_next(rows);
        if (st == SK_OK) {
            snprintf(status, sizeof(status), "%s", sk_rows_text(rows, 0, NULL));
        }
        sk_rows_close(rows);
    }
    if (st == SK_ENOTFOUND) {
        return SK_FAIL(SK_ENOTFOUND, "order %s not found", id);
    }
    if (st != SK_OK) {
        return st;
    }
    if (strcmp(status, "REJECTED") == 0 || strcmp(status, "CANCELLED") == 0) {
        return SK_FAIL(SK_ECONFLICT, "order %s is already %s", id, status);
    }
    if (strcmp(status, "PENDING") == 0) {
        st = sk_saga_cancel(tx, deps->sagas, id);
    } else { /* APPROVED */
        char saga_id[SVC_ID_MAX + 16];
        snprintf(saga_id, sizeof(saga_id), "cancel-%s", id);
        json_t *data = json_pack("{s:s}", "order_id", id);
        st = data != NULL ? sk_saga_start(tx, deps->sagas, "CancelOrderSaga", saga_id, data, traceparent)
                          : SK_FAIL(SK_ENOMEM, "cancel");
        json_decref(data);
        if (st == SK_EEXIST) {
            st = SK_OK; /* already being cancelled */
        }
    }
    if (st == SK_OK) {
        json_t *body = json_pack("{s:s, s:s}", "order_id", id, "status", "CANCELLING");
        svc_txcall_answer(tc, 202, body, NULL);
    }
    return st;
}
