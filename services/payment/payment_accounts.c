/* SPDX-License-Identifier: MIT */
/* payment: credit accounts, opened from CustomerRegistered events. */
#include <string.h>

#include "payment.h"

#define MAX_CREDIT_CENTS 1000000000000LL

sk_status payment_handle_customer_event(sk_tx *tx, const sk_message *m, void *ctx)
{
    payment_deps *deps = ctx;
    const char *customer_id = NULL;
    int64_t limit = 0;
    int64_t changes = 0;

    if (strcmp(m->env.type, "CustomerRegistered") != 0) {
        return SK_OK; /* not ours to act on */
    }
    sk_status st = sk_json_get_string(m->json, "customer_id", 1, 100, &customer_id);
    if (st == SK_OK) {
        st = sk_json_get_int(m->json, "credit_limit_cents", 0, MAX_CREDIT_CENTS, &limit);
    }
    if (st != SK_OK) {
        return SK_WRAP(SK_EPROTO, "CustomerRegistered");
    }
    sk_db_value params[] = { SK_DB_TEXT_V(customer_id), SK_DB_INT_V(limit), SK_DB_INT_V(limit) };
    st = sk_tx_exec(tx,
                    "INSERT INTO accounts (customer_id, credit_limit_cents, available_cents, version)"
                    " VALUES (?, ?, ?, 1) ON CONFLICT (customer_id) DO NOTHING",
                    params, 3, &changes);
    if (st != SK_OK || changes == 0) {
        return st;
    }
    json_t *data = json_pack("{s:s, s:I, s:I, s:i}", "customer_id", customer_id, "credit_limit_cents",
                             (json_int_t)limit, "available_credit_cents", (json_int_t)limit, "version", 1);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "AccountOpened");
    }
    st = svc_emit(deps->app, tx, "AccountOpened", customer_id, data, m->env.traceparent);
    json_decref(data);
    return st;
}
