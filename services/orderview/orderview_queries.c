/* SPDX-License-Identifier: MIT */
/*
 * orderview queries. They read the local read model on the calling (HTTP)
 * thread: SQLite WAL readers never wait for the writer. GetOrder with a
 * consistency token waits, without holding a thread, until the view has
 * the token's version (at most ORDERVIEW_WAIT_MS).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderview.h"

static const char *const statuses[] = { "PENDING", "APPROVED", "REJECTED", "CANCELLED" };

/* ---------------------------------------------------------------- order view */

typedef struct view_read {
    const char *id;
    json_t *out; /* the view, or NULL when absent */
} view_read;

/* Items of a PENDING order are priced from the product view (current prices). */
static sk_status price_items(sk_tx *tx, const char *items_text, json_t **items_out, int64_t *total)
{
    json_t *items = NULL;
    sk_status st = sk_json_parse(sk_slice_from_str(items_text), &items);
    size_t i = 0;
    json_t *item = NULL;
    *total = 0;
    if (st != SK_OK || !json_is_array(items)) {
        json_decref(items);
        return st != SK_OK ? st : SK_FAIL(SK_EINTERNAL, "items: not an array");
    }
    json_array_foreach(items, i, item)
    {
        const char *sku = json_string_value(json_object_get(item, "sku"));
        int64_t q = json_integer_value(json_object_get(item, "quantity"));
        sk_rows *rows = NULL;
        sk_db_value p[] = { SK_DB_TEXT_V(sku != NULL ? sku : "") };
        st = sk_tx_query(tx, "SELECT name, price_cents FROM products_v WHERE sku = ?", p, 1, &rows);
        if (st != SK_OK) {
            break;
        }
        if (sk_rows_next(rows) == SK_OK) {
            int64_t price = sk_rows_int(rows, 1);
            json_object_set_new(item, "name", json_string(sk_rows_text(rows, 0, NULL)));
            json_object_set_new(item, "unit_price_cents", json_integer(price));
            json_object_set_new(item, "line_total_cents", json_integer(price * q));
            *total += price * q;
        } else {
            json_object_set_new(item, "name", json_null());
            json_object_set_new(item, "unit_price_cents", json_null());
            json_object_set_new(item, "line_total_cents", json_null());
        }
        sk_rows_close(rows);
    }
    if (st != SK_OK) {
        json_decref(items);
        return st;
    }
    *items_out = items;
    return SK_OK;
}

#define VIEW_COLUMNS                                                                                               \
    "o.id, o.customer_id, c.name, o.status, o.reject_reason, o.items, o.priced_items, o.total_cents,"            \
    " o.created_at, o.updated_at, o.version"

/* Build one order view from a row of VIEW_COLUMNS. */
static sk_status view_from_row(sk_tx *tx, sk_rows *rows, json_t **out)
{
    json_t *items = NULL;
    int64_t total = 0;
    sk_status st = SK_OK;
    if (!sk_rows_is_null(rows, 6)) {
        st = sk_json_parse(sk_slice_from_str(sk_rows_text(rows, 6, NULL)), &items);
        total = sk_rows_int(rows, 7);
    } else {
        char *items_text = sk_strdup(sk_rows_text(rows, 5, NULL));
        st = items_text != NULL ? price_items(tx, items_text, &items, &total) : SK_FAIL(SK_ENOMEM, "items");
        sk_free(items_text);
    }
    if (st != SK_OK) {
        return st;
    }
    json_t *v = json_pack("{s:s, s:s, s:o, s:s, s:o, s:o, s:I, s:s, s:s, s:I}", "order_id",
                          sk_rows_text(rows, 0, NULL), "customer_id", sk_rows_text(rows, 1, NULL), "customer_name",
                          sk_rows_is_null(rows, 2) ? json_null() : json_string(sk_rows_text(rows, 2, NULL)),
                          "status", sk_rows_text(rows, 3, NULL), "reject_reason",
                          sk_rows_is_null(rows, 4) ? json_null() : json_string(sk_rows_text(rows, 4, NULL)),
                          "items", items, "total_cents", (json_int_t)total, "created_at",
                          sk_rows_text(rows, 8, NULL), "updated_at", sk_rows_text(rows, 9, NULL), "version",
                          (json_int_t)sk_rows_int(rows, 10));
    if (v == NULL) {
        return SK_FAIL(SK_ENOMEM, "order view");
    }
    *out = v;
    return SK_OK;
}

static sk_status read_view(sk_tx *tx, void *ctx)
{
    view_read *r = ctx;
    sk_rows *rows = NULL;
    sk_db_value p[] = { SK_DB_TEXT_V(r->id) };
    sk_status st = sk_tx_query(tx,
                               "SELECT " VIEW_COLUMNS " FROM orders_v o LEFT JOIN customers_v c"
                               " ON c.id = o.customer_id WHERE o.id = ?",
                               p, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        st = view_from_row(tx, rows, &r->out);
    }
    sk_rows_close(rows);
    return st;
}

static sk_status read_version(sk_tx *tx, void *ctx)
{
    view_read *r = ctx;
    int64_t v = 0;
    sk_db_value p[] = { SK_DB_TEXT_V(r->id) };
    sk_status st = sk_tx_query_int(tx, "SELECT version FROM orders_v WHERE id = ?", p, 1, &v);
    r->out = st == SK_OK ? json_integer(v) : NULL;
    return st == SK_ENOTFOUND ? SK_OK : st;
}

int64_t orderview_order_version(const char *id, void *ctx)
{
    orderview_deps *deps = ctx;
    view_read r = { id, NULL };
    int64_t v = 0;
    if (sk_store_read(deps->platform.store, read_version, &r) == SK_OK && r.out != NULL) {
        v = json_integer_value(r.out);
    }
    json_decref(r.out);
    return v;
}

static void answer_order(sk_call *call, orderview_deps *deps)
{
    const sk_request *req = sk_call_request(call);
    view_read r = { json_string_value(json_object_get(req->payload, "id")), NULL };
    sk_status st = sk_store_read(deps->platform.store, read_view, &r);
    if (st == SK_ENOTFOUND) {
        sk_call_fail(call, SK_ENOTFOUND, "order %s not found", r.id);
    } else if (st != SK_OK) {
        sk_call_fail(call, st, "%s", sk_error_message());
    } else {
        sk_call_complete(call, 200, r.out, NULL);
    }
}

typedef struct wait_ctx {
    sk_call *call;
    orderview_deps *deps;
} wait_ctx;

/* The token's version is visible, or the wait timed out: answer with what the view has now. */
static void on_waited(sk_status st, void *ctx)
{
    wait_ctx *w = ctx;
    if (st == SK_ECANCELED) {
        sk_call_fail(w->call, SK_EUNAVAILABLE, "shutting down");
    } else {
        answer_order(w->call, w->deps);
    }
    sk_free(w);
}

sk_status orderview_validate_get_order(const json_t *payload, void *ctx)
{
    const char *id = NULL;
    (void)ctx;
    return sk_json_get_string(payload, "id", 1, 100, &id);
}

void orderview_get_order(sk_call *call, void *ctx)
{
    orderview_deps *deps = ctx;
    const sk_request *req = sk_call_request(call);
    const char *id = json_string_value(json_object_get(req->payload, "id"));
    if (req->consistency_token == NULL) {
        answer_order(call, deps);
        return;
    }
    char token_id[SK_CTOKEN_MAX];
    int64_t version = 0;
    if (sk_ctoken_decode(sk_slice_from_str(req->consistency_token), token_id, sizeof(token_id), &version) != SK_OK) {
        sk_call_fail(call, SK_EPROTO, "consistency token: malformed");
        return;
    }
    if (strcmp(token_id, id) != 0) {
        sk_call_fail(call, SK_EPROTO, "consistency token: issued for another order");
        return;
    }
    wait_ctx *w = sk_calloc(1, sizeof(*w));
    if (w == NULL) {
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    w->call = call;
    w->deps = deps;
    if (sk_waiters_add(deps->waiters, id, version, ORDERVIEW_WAIT_MS, orderview_order_version, deps, on_waited, w) !=
        SK_OK) {
        sk_free(w);
        answer_order(call, deps);
    }
}

/* ---------------------------------------------------------------- list */

static bool parse_limit(const char *s, int64_t *out)
{
    char *end = NULL;
    if (s == NULL) {
        *out = 20;
        return true;
    }
    if (s[0] < '0' || s[0] > '9' || strlen(s) > 3) {
        return false;
    }
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 100) {
        return false;
    }
    *out = v;
    return true;
}

sk_status orderview_validate_list_orders(const json_t *payload, void *ctx)
{
    int64_t limit = 0;
    const json_t *status = json_object_get(payload, "status");
    const json_t *customer = json_object_get(payload, "customer_id");
    const json_t *cursor = json_object_get(payload, "cursor");
    (void)ctx;
    const char *keys[] = { "limit", "status", "customer_id", "cursor" };
    for (size_t i = 0; i < 4; i++) {
        const json_t *v = json_object_get(payload, keys[i]);
        if (v != NULL && !json_is_string(v)) {
            return SK_FAIL(SK_EPROTO, "%s: expected a string", keys[i]);
        }
    }
    if (!parse_limit(json_string_value(json_object_get(payload, "limit")), &limit)) {
        return SK_FAIL(SK_EPROTO, "limit: expected an integer in 1..100");
    }
    if (status != NULL) {
        bool ok = false;
        for (size_t i = 0; i < 4; i++) {
            ok = ok || strcmp(json_string_value(status), statuses[i]) == 0;
        }
        if (!ok) {
            return SK_FAIL(SK_EPROTO, "status: expected one of PENDING, APPROVED, REJECTED, CANCELLED");
        }
    }
    if (customer != NULL && (strlen(json_string_value(customer)) == 0 || strlen(json_string_value(customer)) > 100)) {
        return SK_FAIL(SK_EPROTO, "customer_id: expected 1..100 characters");
    }
    if (cursor != NULL) {
        uint8_t buf[200];
        size_t n = 0;
        const char *c = json_string_value(cursor);
        if (strlen(c) > 160 || sk_base64url_decode(sk_slice_from_str(c), buf, &n) != SK_OK || n == 0 ||
            !sk_uuid_is_valid((sk_slice){ buf, n })) {
            return SK_FAIL(SK_EPROTO, "cursor: malformed");
        }
    }
    return SK_OK;
}

typedef struct list_read {
    const json_t *payload;
    json_t *items;
    char next[200];
} list_read;

static sk_status read_list(sk_tx *tx, void *ctx)
{
    list_read *r = ctx;
    int64_t limit = 20;
    const char *status = json_string_value(json_object_get(r->payload, "status"));
    const char *customer = json_string_value(json_object_get(r->payload, "customer_id"));
    const char *cursor = json_string_value(json_object_get(r->payload, "cursor"));
    char after[SK_UUID_LEN] = "";
    if (!parse_limit(json_string_value(json_object_get(r->payload, "limit")), &limit)) {
        return SK_FAIL(SK_EPROTO, "limit: expected an integer in 1..100");
    }
    if (cursor != NULL) {
        uint8_t buf[200];
        size_t n = 0;
        if (sk_base64url_decode(sk_slice_from_str(cursor), buf, &n) != SK_OK || n != SK_UUID_LEN - 1) {
            return SK_FAIL(SK_EPROTO, "cursor: malformed");
        }
        memcpy(after, buf, n);
        after[n] = '\0';
    }
    /* Newest first: UUIDv7 ids sort by creation time. One more row than asked tells whether a next page exists. */
    sk_db_value p[] = { SK_DB_TEXT_V(after),
                        SK_DB_TEXT_V(after),
                        customer != NULL ? SK_DB_TEXT_V(customer) : SK_DB_NULL_V,
                        customer != NULL ? SK_DB_TEXT_V(customer) : SK_DB_NULL_V,
                        status != NULL ? SK_DB_TEXT_V(status) : SK_DB_NULL_V,
                        status != NULL ? SK_DB_TEXT_V(status) : SK_DB_NULL_V,
                        SK_DB_INT_V(limit + 1) };
    sk_rows *rows = NULL;
    sk_status st = sk_tx_query(tx,
                               "SELECT " VIEW_COLUMNS " FROM orders_v o LEFT JOIN customers_v c"
                               " ON c.id = o.customer_id"
                               " WHERE (? = '' OR o.id < ?) AND (? IS NULL OR o.customer_id = ?)"
                               " AND (? IS NULL OR o.status = ?) ORDER BY o.id DESC LIMIT ?",
                               p, 7, &rows);
    int64_t n = 0;
    char last[SK_UUID_LEN] = "";
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        if (n == limit) {
            sk_base64url_encode(last, strlen(last), r->next);
            break;
        }
        json_t *v = NULL;
        snprintf(last, sizeof(last), "%s", sk_rows_text(rows, 0, NULL));
        st = view_from_row(tx, rows, &v);
        if (st == SK_OK) {
            json_array_append_new(r->items, v);
            n++;
        }
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

void orderview_list_orders(sk_call *call, void *ctx)
{
    orderview_deps *deps = ctx;
    list_read r = { sk_call_request(call)->payload, json_array(), "" };
    sk_status st = r.items != NULL ? sk_store_read(deps->platform.store, read_list, &r) : SK_FAIL(SK_ENOMEM, "list");
    if (st != SK_OK) {
        json_decref(r.items);
        sk_call_fail(call, st, "%s", sk_error_message());
        return;
    }
    json_t *body = json_pack("{s:o, s:o}", "items", r.items, "next_cursor",
                             r.next[0] != '\0' ? json_string(r.next) : json_null());
    if (body == NULL) {
        sk_call_fail(call, SK_ENOMEM, "out of memory");
        return;
    }
    sk_call_complete(call, 200, body, NULL);
}

/* ---------------------------------------------------------------- customers and products */

typedef struct one_read {
    const char *key;
    json_t *out;
} one_read;

static sk_status read_customer(sk_tx *tx, void *ctx)
{
    one_read *r = ctx;
    sk_rows *rows = NULL;
    sk_db_value p[] = { SK_DB_TEXT_V(r->key) };
    sk_status st = sk_tx_query(tx,
                               "SELECT id, name, credit_limit_cents, available_credit_cents FROM customers_v"
                               " WHERE id = ? AND name IS NOT NULL",
                               p, 1, &rows);
    if (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        r->out = json_pack("{s:s, s:s, s:I, s:I}", "customer_id", sk_rows_text(rows, 0, NULL), "name",
                           sk_rows_text(rows, 1, NULL), "credit_limit_cents", (json_int_t)sk_rows_int(rows, 2),
                           "available_credit_cents", (json_int_t)sk_rows_int(rows, 3));
        st = r->out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "customer view");
    }
    sk_rows_close(rows);
    return st;
}

static sk_status read_product(sk_tx *tx, void *ctx)
{
    one_read *r = ctx;
    sk_rows *rows = NULL;
    sk_db_value p[] = { SK_DB_TEXT_V(r->key) };
    sk_status st = sk_tx_query(tx,
                               "SELECT sku, name, price_cents, available, reserved, sold FROM products_v"
                               " WHERE sku = ?",
                               p, 1, &rows);
    if (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        r->out = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "sku", sk_rows_text(rows, 0, NULL), "name",
                           sk_rows_text(rows, 1, NULL), "price_cents", (json_int_t)sk_rows_int(rows, 2),
                           "available", (json_int_t)sk_rows_int(rows, 3), "reserved",
                           (json_int_t)sk_rows_int(rows, 4), "sold", (json_int_t)sk_rows_int(rows, 5));
        st = r->out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "product view");
    }
    sk_rows_close(rows);
    return st;
}

static void answer_one(sk_call *call, orderview_deps *deps, const char *field, sk_uow_fn reader, const char *what)
{
    one_read r = { json_string_value(json_object_get(sk_call_request(call)->payload, field)), NULL };
    sk_status st = sk_store_read(deps->platform.store, reader, &r);
    if (st == SK_ENOTFOUND) {
        sk_call_fail(call, SK_ENOTFOUND, "%s %s not found", what, r.key);
    } else if (st != SK_OK) {
        sk_call_fail(call, st, "%s", sk_error_message());
    } else {
        sk_call_complete(call, 200, r.out, NULL);
    }
}

sk_status orderview_validate_get_customer(const json_t *payload, void *ctx)
{
    const char *id = NULL;
    (void)ctx;
    return sk_json_get_string(payload, "id", 1, 100, &id);
}

void orderview_get_customer(sk_call *call, void *ctx)
{
    answer_one(call, ctx, "id", read_customer, "customer");
}

sk_status orderview_validate_get_product(const json_t *payload, void *ctx)
{
    const char *sku = NULL;
    (void)ctx;
    return sk_json_get_string(payload, "sku", 1, 64, &sku);
}

void orderview_get_product(sk_call *call, void *ctx)
{
    answer_one(call, ctx, "sku", read_product, "product");
}
