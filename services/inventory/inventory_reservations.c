/* SPDX-License-Identifier: MIT */
/*
 * inventory as a saga participant. Every command is idempotent by order id:
 * reservation_orders remembers the outcome, so a re-sent command gets the
 * same answer, and a release that arrives before its reservation leaves a
 * tombstone that makes the late reservation fail instead of leaking stock.
 */
#include <stdio.h>
#include <string.h>

#include "inventory.h"

#define MAX_ITEMS INVENTORY_MAX_LINES

typedef inventory_line line;

static sk_status order_state(sk_tx *tx, const char *order_id, char *state, size_t state_len, char *reason,
                             size_t reason_len)
{
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_TEXT_V(order_id) };
    sk_status st = sk_tx_query(tx, "SELECT state, reason FROM reservation_orders WHERE order_id = ?", params, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        snprintf(state, state_len, "%s", sk_rows_text(rows, 0, NULL));
        snprintf(reason, reason_len, "%s", sk_rows_text(rows, 1, NULL));
    }
    sk_rows_close(rows);
    return st;
}

static sk_status set_order_state(sk_tx *tx, const char *order_id, const char *state, const char *reason)
{
    sk_db_value params[] = { SK_DB_TEXT_V(order_id), SK_DB_TEXT_V(state), SK_DB_TEXT_V(reason),
                             SK_DB_INT_V(sk_time_now_ms()) };
    return sk_tx_exec(tx,
                      "INSERT INTO reservation_orders (order_id, state, reason, updated_ms) VALUES (?, ?, ?, ?)"
                      " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
                      " updated_ms = excluded.updated_ms",
                      params, 4, NULL);
}

/* The reply to a successful reservation: the reserved lines with names and prices. */
static sk_status reserved_reply(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id)
{
    sk_rows *rows = NULL;
    json_t *items = json_array();
    sk_db_value params[] = { SK_DB_TEXT_V(order_id) };
    sk_status st = items != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "reply");
    if (st == SK_OK) {
        st = sk_tx_query(tx,
                         "SELECT r.sku, p.name, r.quantity, r.unit_price_cents FROM reservations r"
                         " JOIN products p ON p.sku = r.sku WHERE r.order_id = ? ORDER BY r.line",
                         params, 1, &rows);
    }
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        json_t *item = json_pack("{s:s, s:s, s:I, s:I}", "sku", sk_rows_text(rows, 0, NULL), "name",
                                 sk_rows_text(rows, 1, NULL), "quantity", (json_int_t)sk_rows_int(rows, 2),
                                 "unit_price_cents", (json_int_t)sk_rows_int(rows, 3));
        if (item == NULL || json_array_append_new(items, item) != 0) {
            st = SK_FAIL(SK_ENOMEM, "reply");
        }
    }
    sk_rows_close(rows);
    if (st == SK_ENOTFOUND) {
        json_t *data = json_pack("{s:s, s:O}", "order_id", order_id, "items", items);
        st = data != NULL ? sk_saga_reply(tx, m, deps->app->source, "StockReserved", data)
                          : SK_FAIL(SK_ENOMEM, "reply");
        json_decref(data);
    }
    json_decref(items);
    return st;
}

static sk_status failed_reply(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id,
                              const char *reason)
{
    json_t *data = json_pack("{s:s, s:s}", "order_id", order_id, "reason", reason);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "reply");
    }
    sk_status st = sk_saga_reply(tx, m, deps->app->source, "StockReservationFailed", data);
    json_decref(data);
    return st;
}

/* A malformed command is permanent (EPROTO): it goes to the dead letters, never retried. */
sk_status inventory_lines_parse(const json_t *data, inventory_line *lines, size_t *n_lines)
{
    const json_t *items = json_object_get(data, "items");
    size_t i = 0;
    const json_t *item = NULL;
    if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > MAX_ITEMS) {
        return SK_FAIL(SK_EPROTO, "items: expected 1..%d items", MAX_ITEMS);
    }
    json_array_foreach(items, i, item)
    {
        const char *sku = NULL;
        int64_t q = 0;
        if (sk_json_get_string(item, "sku", 1, 64, &sku) != SK_OK ||
            sk_json_get_int(item, "quantity", 1, INVENTORY_MAX_QUANTITY, &q) != SK_OK) {
            return SK_WRAP(SK_EPROTO, "items[%zu]", i);
        }
        lines[i].sku = sku;
        lines[i].quantity = q;
    }
    *n_lines = json_array_size(items);
    return SK_OK;
}

static sk_status reserve(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id)
{
    line lines[MAX_ITEMS];
    size_t n = 0;
    char state[32] = "", reason[64] = "";

    sk_status st = order_state(tx, order_id, state, sizeof(state), reason, sizeof(reason));
    if (st == SK_OK) {
        /* Seen before: give the same answer again. */
        if (strcmp(state, "RESERVED") == 0 || strcmp(state, "COMMITTED") == 0) {
            return reserved_reply(tx, m, deps, order_id);
        }
        return failed_reply(tx, m, deps, order_id, strcmp(state, "FAILED") == 0 ? reason : "CANCELLED");
    }
    if (st != SK_ENOTFOUND) {
        return st;
    }
    st = inventory_lines_parse(m->json, lines, &n);
    if (st != SK_OK) {
        return st;
    }
    /* Check every line first: all or nothing. Unknown products win over shortages. */
    const char *failure = NULL;
    for (size_t i = 0; i < n; i++) {
        int64_t wanted = 0;
        for (size_t j = 0; j < n; j++) {
            wanted += strcmp(lines[j].sku, lines[i].sku) == 0 ? lines[j].quantity : 0;
        }
        inventory_product p;
        st = inventory_product_load(tx, lines[i].sku, &p);
        if (st == SK_ENOTFOUND) {
            failure = "UNKNOWN_PRODUCT";
            break;
        }
        if (st != SK_OK) {
            return st;
        }
        if (p.available < wanted && failure == NULL) {
            failure = "OUT_OF_STOCK";
        }
    }
    if (failure != NULL) {
        st = set_order_state(tx, order_id, "FAILED", failure);
        return st == SK_OK ? failed_reply(tx, m, deps, order_id, failure) : st;
    }
    for (size_t i = 0; i < n; i++) {
        inventory_product p;
        st = inventory_product_load(tx, lines[i].sku, &p); /* fresh: an earlier line may have changed it */
        if (st != SK_OK) {
            return st;
        }
        p.available -= lines[i].quantity;
        p.reserved += lines[i].quantity;
        sk_db_value params[] = { SK_DB_TEXT_V(order_id), SK_DB_INT_V(i), SK_DB_TEXT_V(p.sku),
                                 SK_DB_INT_V(lines[i].quantity), SK_DB_INT_V(p.price_cents) };
        st = sk_tx_exec(tx,
                        "INSERT INTO reservations (order_id, line, sku, quantity, unit_price_cents)"
                        " VALUES (?, ?, ?, ?, ?)",
                        params, 5, NULL);
        if (st == SK_OK) {
            st = inventory_product_save(tx, deps, &p, "StockReserved", order_id);
        }
        if (st != SK_OK) {
            return st;
        }
    }
    st = set_order_state(tx, order_id, "RESERVED", "");
    return st == SK_OK ? reserved_reply(tx, m, deps, order_id) : st;
}

/* Move every line of @p order_id: reserved -> sold (commit) or back to available (release). */
static sk_status move_lines(sk_tx *tx, inventory_deps *deps, const char *order_id, const char *from_state,
                            bool is_commit)
{
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_TEXT_V(order_id) };
    char skus[MAX_ITEMS][260];
    int64_t qty[MAX_ITEMS];
    size_t n = 0;
    sk_status st = sk_tx_query(tx, "SELECT sku, quantity FROM reservations WHERE order_id = ? ORDER BY line", params,
                               1, &rows);
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK && n < MAX_ITEMS) {
        snprintf(skus[n], sizeof(skus[n]), "%s", sk_rows_text(rows, 0, NULL));
        qty[n] = sk_rows_int(rows, 1);
        n++;
    }
    sk_rows_close(rows);
    if (st != SK_ENOTFOUND && st != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        inventory_product p;
        st = inventory_product_load(tx, skus[i], &p);
        if (st != SK_OK) {
            return st;
        }
        const char *event = NULL;
        if (is_commit) {
            p.reserved -= qty[i];
            p.sold += qty[i];
            event = "ReservationCommitted";
        } else if (strcmp(from_state, "RESERVED") == 0) {
            p.reserved -= qty[i];
            p.available += qty[i];
            event = "ReservationReleased";
        } else { /* COMMITTED: a cancelled approved order gives its stock back */
            p.sold -= qty[i];
            p.available += qty[i];
            event = "ReservationReleased";
        }
        st = inventory_product_save(tx, deps, &p, event, order_id);
        if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

static sk_status simple_reply(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id,
                              const char *type)
{
    json_t *data = json_pack("{s:s}", "order_id", order_id);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "reply");
    }
    sk_status st = sk_saga_reply(tx, m, deps->app->source, type, data);
    json_decref(data);
    return st;
}

static sk_status commit(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id)
{
    char state[32] = "", reason[64] = "";
    sk_status st = order_state(tx, order_id, state, sizeof(state), reason, sizeof(reason));
    if (st == SK_OK && strcmp(state, "RESERVED") == 0) {
        st = move_lines(tx, deps, order_id, state, true);
        if (st == SK_OK) {
            st = set_order_state(tx, order_id, "COMMITTED", "");
        }
    } else if (st == SK_ENOTFOUND) {
        st = SK_OK; /* nothing reserved: nothing to commit */
    }
    return st == SK_OK ? simple_reply(tx, m, deps, order_id, "ReservationCommitted") : st;
}

static sk_status release(sk_tx *tx, const sk_message *m, inventory_deps *deps, const char *order_id)
{
    char state[32] = "", reason[64] = "";
    sk_status st = order_state(tx, order_id, state, sizeof(state), reason, sizeof(reason));
    if (st == SK_OK && (strcmp(state, "RESERVED") == 0 || strcmp(state, "COMMITTED") == 0)) {
        st = move_lines(tx, deps, order_id, state, false);
        if (st == SK_OK) {
            st = set_order_state(tx, order_id, "RELEASED", "");
        }
    } else if (st == SK_ENOTFOUND) {
        st = set_order_state(tx, order_id, "RELEASED", "tombstone");
    }
    return st == SK_OK ? simple_reply(tx, m, deps, order_id, "ReservationReleased") : st;
}

sk_status inventory_handle_command(sk_tx *tx, const sk_message *m, void *ctx)
{
    inventory_deps *deps = ctx;
    const char *order_id = NULL;
    if (sk_json_get_string(m->json, "order_id", 1, 100, &order_id) != SK_OK) {
        return SK_EPROTO;
    }
    if (strcmp(m->env.type, "ReserveStock") == 0) {
        return reserve(tx, m, deps, order_id);
    }
    if (strcmp(m->env.type, "CommitReservation") == 0) {
        return commit(tx, m, deps, order_id);
    }
    if (strcmp(m->env.type, "ReleaseReservation") == 0) {
        return release(tx, m, deps, order_id);
    }
    return SK_FAIL(SK_EPROTO, "unknown command type %s", m->env.type);
}
