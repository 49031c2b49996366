/* SPDX-License-Identifier: MIT */
/*
 * The order sagas.
 * CreateOrderSaga v1: ReserveStock (inventory answers with the prices) ->
 * ChargeCredit for the total (payment) -> approve the order (local, the
 * pivot) -> CommitReservation (retried until done). A failure before the
 * pivot compensates in reverse (RefundCredit, ReleaseReservation) and
 * rejects the order with the reason.
 * CancelOrderSaga v1, for an approved order: RefundCredit -> ReleaseReservation
 * (each retried until done) -> mark the order CANCELLED.
 */
#include <stdio.h>
#include <string.h>

#include "order.h"

static sk_status build_order_ref(const json_t *data, json_t **out, void *ctx)
{
    (void)ctx;
    *out = json_pack("{s:O}", "order_id", json_object_get(data, "order_id"));
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "command");
}

/* ---------------------------------------------------------------- reserve */

static sk_status build_reserve(const json_t *data, json_t **out, void *ctx)
{
    (void)ctx;
    *out = json_pack("{s:O, s:O}", "order_id", json_object_get(data, "order_id"), "items",
                     json_object_get(data, "items"));
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "ReserveStock");
}

static void set_reason(char reason[SK_SAGA_MAX_REASON], const json_t *reply, const char *fallback)
{
    const char *r = json_string_value(json_object_get(reply, "reason"));
    static const char *const known[] = { "OUT_OF_STOCK", "INSUFFICIENT_CREDIT", "UNKNOWN_CUSTOMER",
                                         "UNKNOWN_PRODUCT", "PAYMENT_UNAVAILABLE", "TIMEOUT", "CANCELLED" };
    const char *chosen = fallback;
    for (size_t i = 0; r != NULL && i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(r, known[i]) == 0) {
            chosen = known[i];
        }
    }
    snprintf(reason, SK_SAGA_MAX_REASON, "%s", chosen);
}

static sk_status on_reserve_reply(json_t *data,
                                  const char *reply_type,
                                  const json_t *reply,
                                  sk_saga_verdict *verdict,
                                  char reason[SK_SAGA_MAX_REASON],
                                  void *ctx)
{
    (void)ctx;
    if (strcmp(reply_type, "StockReserved") != 0) {
        *verdict = SK_SAGA_STEP_FAILED;
        set_reason(reason, reply, "OUT_OF_STOCK");
        return SK_OK;
    }
    const json_t *items = json_object_get(reply, "items");
    json_t *priced = json_array();
    int64_t total = 0;
    size_t i = 0;
    const json_t *item = NULL;
    if (priced == NULL) {
        return SK_FAIL(SK_ENOMEM, "StockReserved: out of memory");
    }
    /* The bound keeps the total below 2^63 (see below); the reply comes over the bus, unchecked. */
    if (!json_is_array(items) || json_array_size(items) > ORDER_MAX_ITEMS) {
        json_decref(priced);
        return SK_FAIL(SK_EPROTO, "StockReserved: items: expected an array of at most %d items", ORDER_MAX_ITEMS);
    }
    json_array_foreach(items, i, item)
    {
        int64_t q = 0, price = 0;
        const char *sku = NULL, *name = NULL;
        if (sk_json_get_string(item, "sku", 1, 64, &sku) != SK_OK ||
            sk_json_get_string(item, "name", 1, 200, &name) != SK_OK ||
            sk_json_get_int(item, "quantity", 1, ORDER_MAX_QUANTITY, &q) != SK_OK ||
            sk_json_get_int(item, "unit_price_cents", 0, 1000000000000LL, &price) != SK_OK) {
            json_decref(priced);
            return SK_WRAP(SK_EPROTO, "StockReserved: items[%zu]", i);
        }
        /* At most 100 lines x 10^4 units x 10^12 cents fits in int64. */
        total += q * price;
        json_array_append_new(priced, json_pack("{s:s, s:s, s:I, s:I, s:I}", "sku", sku, "name", name, "quantity",
                                                (json_int_t)q, "unit_price_cents", (json_int_t)price,
                                                "line_total_cents", (json_int_t)(q * price)));
    }
    json_object_set_new(data, "priced_items", priced);
    json_object_set_new(data, "total_cents", json_integer(total));
    *verdict = SK_SAGA_STEP_OK;
    return SK_OK;
}

/* ---------------------------------------------------------------- charge */

static sk_status build_charge(const json_t *data, json_t **out, void *ctx)
{
    (void)ctx;
    *out = json_pack("{s:O, s:O, s:O}", "order_id", json_object_get(data, "order_id"), "customer_id",
                     json_object_get(data, "customer_id"), "amount_cents", json_object_get(data, "total_cents"));
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "ChargeCredit");
}

static sk_status on_charge_reply(json_t *data,
                                 const char *reply_type,
                                 const json_t *reply,
                                 sk_saga_verdict *verdict,
                                 char reason[SK_SAGA_MAX_REASON],
                                 void *ctx)
{
    (void)data;
    (void)ctx;
    if (strcmp(reply_type, "CreditCharged") == 0) {
        *verdict = SK_SAGA_STEP_OK;
    } else {
        *verdict = SK_SAGA_STEP_FAILED;
        set_reason(reason, reply, "PAYMENT_UNAVAILABLE");
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- approve (pivot) */

static sk_status approve(sk_tx *tx,
                         const char *saga_id,
                         json_t *data,
                         sk_saga_verdict *verdict,
                         char reason[SK_SAGA_MAX_REASON],
                         void *ctx)
{
    order_deps *deps = ctx;
    (void)reason;
    json_t *extra = json_pack("{s:O, s:O}", "items", json_object_get(data, "priced_items"), "total_cents",
                              json_object_get(data, "total_cents"));
    if (extra == NULL) {
        return SK_FAIL(SK_ENOMEM, "OrderApproved");
    }
    sk_status st = order_transition(tx, deps, saga_id, "APPROVED", NULL, "OrderApproved", extra);
    json_decref(extra);
    *verdict = SK_SAGA_STEP_OK;
    return st;
}

static sk_status on_any_reply(json_t *data,
                              const char *reply_type,
                              const json_t *reply,
                              sk_saga_verdict *verdict,
                              char reason[SK_SAGA_MAX_REASON],
                              void *ctx)
{
    (void)data;
    (void)reply_type;
    (void)reply;
    (void)reason;
    (void)ctx;
    *verdict = SK_SAGA_STEP_OK;
    return SK_OK;
}

static sk_status create_failed(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx)
{
    (void)data;
    if (strcmp(reason, "CANCELLED") == 0) {
        return order_transition(tx, ctx, saga_id, "CANCELLED", NULL, "OrderCancelled", NULL);
    }
    return order_transition(tx, ctx, saga_id, "REJECTED", reason, "OrderRejected", NULL);
}

static sk_status create_completed(sk_tx *tx, const char *saga_id, const json_t *data, void *ctx)
{
    (void)tx;
    (void)saga_id;
    (void)data;
    (void)ctx;
    return SK_OK; /* the order was approved at the pivot */
}

static const sk_saga_step create_steps[] = {
    {
        .name = "reserve_stock",
        .command_subject = "inventory.commands.ReserveStock",
        .command_type = "ReserveStock",
        .build = build_reserve,
        .on_reply = on_reserve_reply,
        .compensation_subject = "inventory.commands.ReleaseReservation",
        .compensation_type = "ReleaseReservation",
        .build_compensation = build_order_ref,
        .deadline_ms = 10000,
    },
    {
        .name = "charge_credit",
        .command_subject = "payment.commands.ChargeCredit",
        .command_type = "ChargeCredit",
        .build = build_charge,
        .on_reply = on_charge_reply,
        .compensation_subject = "payment.commands.RefundCredit",
        .compensation_type = "RefundCredit",
        .build_compensation = build_order_ref,
        .deadline_ms = 10000,
    },
    {
        .name = "approve",
        .local = approve,
    },
    {
        .name = "commit_reservation",
        .command_subject = "inventory.commands.CommitReservation",
        .command_type = "CommitReservation",
        .build = build_order_ref,
        .on_reply = on_any_reply,
        .deadline_ms = 10000,
        .is_retried_until_done = true,
    },
};

/* ---------------------------------------------------------------- cancel an approved order */

static sk_status mark_cancelled(sk_tx *tx,
                                const char *saga_id,
                                json_t *data,
                                sk_saga_verdict *verdict,
                                char reason[SK_SAGA_MAX_REASON],
                                void *ctx)
{
    (void)saga_id;
    (void)reason;
    *verdict = SK_SAGA_STEP_OK;
    return order_transition(tx, ctx, json_string_value(json_object_get(data, "order_id")), "CANCELLED", NULL,
                            "OrderCancelled", NULL);
}

static sk_status cancel_failed(sk_tx *tx, const char *saga_id, const json_t *data, const char *reason, void *ctx)
{
    (void)tx;
    (void)data;
    (void)ctx;
    SK_LOG_ERROR("CancelOrderSaga %s failed: %s", saga_id, reason);
    return SK_OK;
}

static const sk_saga_step cancel_steps[] = {
    {
        .name = "refund_credit",
        .command_subject = "payment.commands.RefundCredit",
        .command_type = "RefundCredit",
        .build = build_order_ref,
        .on_reply = on_any_reply,
        .deadline_ms = 10000,
        .is_retried_until_done = true,
    },
    {
        .name = "release_reservation",
        .command_subject = "inventory.commands.ReleaseReservation",
        .command_type = "ReleaseReservation",
        .build = build_order_ref,
        .on_reply = on_any_reply,
        .deadline_ms = 10000,
        .is_retried_until_done = true,
    },
    {
        .name = "mark_cancelled",
        .local = mark_cancelled,
    },
};

void order_sagas_init(order_deps *deps)
{
    deps->create_saga = (sk_saga_def){
        .type = "CreateOrderSaga",
        .version = 1,
        .reply_subject = "order.replies.CreateOrderSaga",
        .steps = create_steps,
        .n_steps = sizeof(create_steps) / sizeof(create_steps[0]),
        .on_completed = create_completed,
        .on_failed = create_failed,
        .ctx = deps,
    };
    deps->cancel_saga = (sk_saga_def){
        .type = "CancelOrderSaga",
        .version = 1,
        .reply_subject = "order.replies.CancelOrderSaga",
        .steps = cancel_steps,
        .n_steps = sizeof(cancel_steps) / sizeof(cancel_steps[0]),
        .on_completed = create_completed,
        .on_failed = cancel_failed,
        .ctx = deps,
    };
}
