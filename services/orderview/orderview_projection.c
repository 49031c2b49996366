/* SPDX-License-Identifier: MIT */
/*
 * orderview projection: one apply function for the events of all contexts.
 * Rows carry the version of the aggregate they reflect; an event older than
 * the row is skipped, so redelivery and cross-stream interleaving are safe.
 * The read model is versioned (tables ov<N>_*, see orderview_service.c):
 * every function writes into the version it is given.
 */
#include <stdio.h>
#include <string.h>

#include "orderview.h"

static int64_t jint(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* ---------------------------------------------------------------- customers */

/* Table @p what ("customers", "products", "orders") of read-model version @p version. */
#define TABLE_LEN 48
static void table_name(char out[TABLE_LEN], int64_t version, const char *what)
{
    snprintf(out, TABLE_LEN, "ov%lld_%s", (long long)version, what);
}

static sk_status customer_registered(sk_tx *tx, int64_t version, const json_t *d)
{
    char t[TABLE_LEN], sql[512];
    table_name(t, version, "customers");
    sk_db_value p[] = { SK_DB_TEXT_V(jstr(d, "customer_id")), SK_DB_TEXT_V(jstr(d, "name")),
                        SK_DB_INT_V(jint(d, "credit_limit_cents")), SK_DB_INT_V(jint(d, "credit_limit_cents")) };
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (id, name, credit_limit_cents, available_credit_cents, credit_version)"
             " VALUES (?, ?, ?, ?, 0) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
             t);
    return sk_tx_exec(tx, sql, p, 4, NULL);
}

static sk_status credit_changed(sk_tx *tx, int64_t version, const json_t *d)
{
    char t[TABLE_LEN], sql[640];
    table_name(t, version, "customers");
    sk_db_value p[] = { SK_DB_TEXT_V(jstr(d, "customer_id")), SK_DB_INT_V(jint(d, "credit_limit_cents")),
                        SK_DB_INT_V(jint(d, "available_credit_cents")), SK_DB_INT_V(jint(d, "version")) };
    /* A payment event may overtake CustomerRegistered (another stream): keep a nameless row until it comes. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (id, name, credit_limit_cents, available_credit_cents, credit_version)"
             " VALUES (?, NULL, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
             " credit_limit_cents = excluded.credit_limit_cents,"
             " available_credit_cents = excluded.available_credit_cents,"
             " credit_version = excluded.credit_version"
             " WHERE excluded.credit_version > %s.credit_version",
             t, t);
    return sk_tx_exec(tx, sql, p, 4, NULL);
}

/* ---------------------------------------------------------------- products */

static sk_status product_changed(sk_tx *tx, int64_t version, const json_t *d)
{
    char t[TABLE_LEN], sql[640];
    table_name(t, version, "products");
    sk_db_value p[] = { SK_DB_TEXT_V(jstr(d, "sku")),       SK_DB_TEXT_V(jstr(d, "name")),
                        SK_DB_INT_V(jint(d, "price_cents")), SK_DB_INT_V(jint(d, "available")),
                        SK_DB_INT_V(jint(d, "reserved")),    SK_DB_INT_V(jint(d, "sold")),
                        SK_DB_INT_V(jint(d, "version")) };
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (sku, name, price_cents, available, reserved, sold, version)"
             " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET name = excluded.name,"
             " price_cents = excluded.price_cents, available = excluded.available,"
             " reserved = excluded.reserved, sold = excluded.sold, version = excluded.version"
             " WHERE excluded.version > %s.version",
             t, t);
    return sk_tx_exec(tx, sql, p, 7, NULL);
}

/* ---------------------------------------------------------------- orders */

typedef struct notify_job {
    sk_waiters *waiters;
    char id[SVC_ID_MAX];
    int64_t version;
} notify_job;

static void notify_after_commit(void *ctx)
{
    notify_job *job = ctx;
    sk_waiters_notify(job->waiters, job->id, job->version);
    sk_free(job);
}

static sk_status schedule_notify(sk_tx *tx, orderview_deps *deps, bool is_live, const char *id, int64_t version)
{
    if (!is_live) {
        return SK_OK; /* a version being rebuilt: queries do not read it yet */
    }
    notify_job *job = sk_calloc(1, sizeof(*job));
    if (job == NULL) {
        return SK_FAIL(SK_ENOMEM, "notify");
    }
    job->waiters = deps->waiters;
    snprintf(job->id, sizeof(job->id), "%s", id);
    job->version = version;
    sk_status st = sk_tx_after_commit_or_discard(tx, notify_after_commit, sk_free, job);
    if (st != SK_OK) {
        sk_free(job);
    }
    return st;
}

static sk_status order_created(sk_tx *tx, orderview_deps *deps, int64_t rm_version, bool is_live, const json_t *d)
{
    char t[TABLE_LEN], sql[512];
    table_name(t, rm_version, "orders");
    char *items = sk_json_dumps(json_object_get(d, "items"));
    int64_t now = sk_time_now_ms();
    if (items == NULL) {
        return SK_FAIL(SK_ENOMEM, "items");
    }
    sk_db_value p[] = { SK_DB_TEXT_V(jstr(d, "order_id")), SK_DB_TEXT_V(jstr(d, "customer_id")),
                        SK_DB_TEXT_V(items), SK_DB_TEXT_V(jstr(d, "created_at")), SK_DB_TEXT_V(jstr(d, "created_at")),
                        SK_DB_INT_V(now) };
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (id, customer_id, status, reject_reason, items, priced_items,"
             " total_cents, created_at, updated_at, version, applied_ms)"
             " VALUES (?, ?, 'PENDING', NULL, ?, NULL, NULL, ?, ?, 1, ?)"
             " ON CONFLICT (id) DO NOTHING",
             t);
    sk_status st = sk_tx_exec(tx, sql, p, 6, NULL);
    sk_free(items);
    return st == SK_OK ? schedule_notify(tx, deps, is_live, jstr(d, "order_id"), 1) : st;
}

/*
 * A later order event may arrive before OrderCreated (a message fetched by a
 * process that died is redelivered after the ones behind it), so it builds
 * the row when it is missing: order events carry the whole order.
 */
static sk_status order_changed(sk_tx *tx, orderview_deps *deps, int64_t rm_version, bool is_live, const json_t *d)
{
    char t[TABLE_LEN], sql[1024];
    table_name(t, rm_version, "orders");
    const json_t *items = json_object_get(d, "items");
    char *priced = items != NULL ? sk_json_dumps(items) : NULL;
    char *ordered = sk_json_dumps(json_object_get(d, "ordered_items") != NULL ? json_object_get(d, "ordered_items")
                                                                              : json_object_get(d, "items"));
    const json_t *total = json_object_get(d, "total_cents");
    const json_t *reason = json_object_get(d, "reject_reason");
    int64_t version = jint(d, "version");
    sk_db_value p[] = {
        SK_DB_TEXT_V(jstr(d, "order_id")),
        SK_DB_TEXT_V(jstr(d, "customer_id")),
        SK_DB_TEXT_V(jstr(d, "status")),
        json_is_string(reason) ? SK_DB_TEXT_V(json_string_value(reason)) : SK_DB_NULL_V,
        SK_DB_TEXT_V(ordered != NULL ? ordered : "[]"),
        priced != NULL ? SK_DB_TEXT_V(priced) : SK_DB_NULL_V,
        json_is_integer(total) ? SK_DB_INT_V(json_integer_value(total)) : SK_DB_NULL_V,
        SK_DB_TEXT_V(jstr(d, "created_at")),
        SK_DB_TEXT_V(jstr(d, "updated_at")),
        SK_DB_INT_V(version),
        SK_DB_INT_V(sk_time_now_ms()),
    };
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s (id, customer_id, status, reject_reason, items, priced_items,"
             " total_cents, created_at, updated_at, version, applied_ms)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
             " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
             " reject_reason = excluded.reject_reason,"
             " priced_items = COALESCE(excluded.priced_items, %s.priced_items),"
             " total_cents = COALESCE(excluded.total_cents, %s.total_cents),"
             " updated_at = excluded.updated_at, version = excluded.version,"
             " applied_ms = excluded.applied_ms"
             " WHERE excluded.version > %s.version",
             t, t, t, t);
    sk_status st = sk_tx_exec(tx, sql, p, 11, NULL);
    sk_free(priced);
    sk_free(ordered);
    return st == SK_OK ? schedule_notify(tx, deps, is_live, jstr(d, "order_id"), version) : st;
}

sk_status orderview_apply(sk_tx *tx, const sk_message *m, int64_t rm_version, bool is_live, void *ctx)
{
    orderview_deps *deps = ctx;
    const char *type = m->env.type;
    const json_t *d = m->json;

    if (strcmp(type, "CustomerRegistered") == 0) {
        return customer_registered(tx, rm_version, d);
    }
    if (strcmp(type, "AccountOpened") == 0 || strcmp(type, "CreditReserved") == 0 ||
        strcmp(type, "CreditCharged") == 0 || strcmp(type, "CreditReleased") == 0 ||
        strcmp(type, "CreditRefunded") == 0) {
        return credit_changed(tx, rm_version, d);
    }
    if (strcmp(type, "ProductCreated") == 0 || strcmp(type, "StockRestocked") == 0 ||
        strcmp(type, "StockReserved") == 0 || strcmp(type, "ReservationCommitted") == 0 ||
        strcmp(type, "ReservationReleased") == 0) {
        return product_changed(tx, rm_version, d);
    }
    if (strcmp(type, "OrderCreated") == 0) {
        return order_created(tx, deps, rm_version, is_live, d);
    }
    if (strcmp(type, "OrderApproved") == 0 || strcmp(type, "OrderRejected") == 0 ||
        strcmp(type, "OrderCancelled") == 0) {
        return order_changed(tx, deps, rm_version, is_live, d);
    }
    return SK_OK; /* events this view does not use */
}
