/* SPDX-License-Identifier: MIT */
/*
 * payment: ChargeCredit and RefundCredit. A charge first holds the amount
 * on the account (in the consumer's unit of work), then captures it at the
 * psp over the mesh once the hold is durable; the capture's answer settles
 * the charge in a second unit of work that also sends the saga reply. A
 * refund that arrives before the capture settled is remembered and applied
 * when it does; one that arrives before the charge leaves a tombstone.
 */
#include <stdio.h>
#include <string.h>

#include "payment.h"

/* 100 lines x 10^4 units x 10^12 cents: the largest total an order can have. */
#define MAX_AMOUNT_CENTS 1000000000000000000LL

typedef struct charge {
    char order_id[SVC_ID_MAX];
    char customer_id[SVC_ID_MAX];
    int64_t amount_cents;
    char state[24]; /* PENDING CHARGED FAILED REFUND_PENDING REFUNDED VOID */
    char reason[64];
    svc_reply_addr charge_addr;
    svc_reply_addr refund_addr;
} charge;

/* ---------------------------------------------------------------- rows */

static sk_status charge_load(sk_tx *tx, const char *order_id, charge *c)
{
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_TEXT_V(order_id) };
    sk_status st = sk_tx_query(tx,
                               "SELECT order_id, customer_id, amount_cents, state, reason, charge_subject,"
                               " charge_reply_to, charge_step, refund_subject, refund_reply_to, refund_step"
                               " FROM charges WHERE order_id = ?",
                               params, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        memset(c, 0, sizeof(*c));
        snprintf(c->order_id, sizeof(c->order_id), "%s", sk_rows_text(rows, 0, NULL));
        snprintf(c->customer_id, sizeof(c->customer_id), "%s", sk_rows_text(rows, 1, NULL));
        c->amount_cents = sk_rows_int(rows, 2);
        snprintf(c->state, sizeof(c->state), "%s", sk_rows_text(rows, 3, NULL));
        snprintf(c->reason, sizeof(c->reason), "%s", sk_rows_text(rows, 4, NULL));
        snprintf(c->charge_addr.subject, sizeof(c->charge_addr.subject), "%s", sk_rows_text(rows, 5, NULL));
        snprintf(c->charge_addr.reply_to, sizeof(c->charge_addr.reply_to), "%s", sk_rows_text(rows, 6, NULL));
        c->charge_addr.saga_step = (int)sk_rows_int(rows, 7);
        snprintf(c->refund_addr.subject, sizeof(c->refund_addr.subject), "%s", sk_rows_text(rows, 8, NULL));
        snprintf(c->refund_addr.reply_to, sizeof(c->refund_addr.reply_to), "%s", sk_rows_text(rows, 9, NULL));
        c->refund_addr.saga_step = (int)sk_rows_int(rows, 10);
    }
    sk_rows_close(rows);
    return st;
}

static sk_status charge_save(sk_tx *tx, const charge *c)
{
    sk_db_value params[] = {
        SK_DB_TEXT_V(c->order_id),
        SK_DB_TEXT_V(c->customer_id),
        SK_DB_INT_V(c->amount_cents),
        SK_DB_TEXT_V(c->state),
        SK_DB_TEXT_V(c->reason),
        SK_DB_TEXT_V(c->charge_addr.subject),
        SK_DB_TEXT_V(c->charge_addr.reply_to),
        SK_DB_INT_V(c->charge_addr.saga_step),
        SK_DB_TEXT_V(c->refund_addr.subject),
        SK_DB_TEXT_V(c->refund_addr.reply_to),
        SK_DB_INT_V(c->refund_addr.saga_step),
        SK_DB_INT_V(sk_time_now_ms()),
    };
    return sk_tx_exec(tx,
                      "INSERT INTO charges (order_id, customer_id, amount_cents, state, reason, charge_subject,"
                      " charge_reply_to, charge_step, refund_subject, refund_reply_to, refund_step, updated_ms)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
                      " charge_subject = excluded.charge_subject, charge_reply_to = excluded.charge_reply_to,"
                      " charge_step = excluded.charge_step, refund_subject = excluded.refund_subject,"
                      " refund_reply_to = excluded.refund_reply_to, refund_step = excluded.refund_step,"
                      " updated_ms = excluded.updated_ms",
                      params, 12, NULL);
}

typedef struct account {
    int64_t limit, available, version;
} account;

static sk_status account_load(sk_tx *tx, const char *customer_id, account *a)
{
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_TEXT_V(customer_id) };
    sk_status st = sk_tx_query(tx,
                               "SELECT credit_limit_cents, available_cents, version FROM accounts"
                               " WHERE customer_id = ?",
                               params, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_OK) {
        a->limit = sk_rows_int(rows, 0);
        a->available = sk_rows_int(rows, 1);
        a->version = sk_rows_int(rows, 2);
    }
    sk_rows_close(rows);
    return st;
}

/* Apply @p delta to the available credit and, when @p event is set, tell the read side. */
static sk_status account_adjust(sk_tx *tx,
                                payment_deps *deps,
                                const char *customer_id,
                                int64_t delta,
                                const char *event,
                                const char *order_id,
                                int64_t amount)
{
    account a;
    sk_status st = account_load(tx, customer_id, &a);
    if (st != SK_OK) {
        return st == SK_ENOTFOUND ? SK_FAIL(SK_EINTERNAL, "account %s vanished", customer_id) : st;
    }
    a.available += delta;
    a.version++;
    sk_db_value params[] = { SK_DB_INT_V(a.available), SK_DB_INT_V(a.version), SK_DB_TEXT_V(customer_id) };
    st = sk_tx_exec(tx, "UPDATE accounts SET available_cents = ?, version = ? WHERE customer_id = ?", params, 3,
                    NULL);
    if (st != SK_OK || event == NULL) {
        return st;
    }
    json_t *data = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "customer_id", customer_id, "order_id", order_id,
                             "amount_cents", (json_int_t)amount, "credit_limit_cents", (json_int_t)a.limit,
                             "available_credit_cents", (json_int_t)a.available, "version", (json_int_t)a.version);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s", event);
    }
    st = svc_emit(deps->app, tx, event, customer_id, data, NULL);
    json_decref(data);
    return st;
}

static sk_status reply(sk_tx *tx, payment_deps *deps, const svc_reply_addr *addr, const char *type,
                       const char *order_id, const char *reason)
{
    if (addr->reply_to[0] == '\0') {
        return SK_OK; /* nobody waits for this answer */
    }
    json_t *data = reason != NULL ? json_pack("{s:s, s:s}", "order_id", order_id, "reason", reason)
                                  : json_pack("{s:s}", "order_id", order_id);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "reply");
    }
    sk_status st = svc_reply_to_addr(tx, deps->app, addr, type, data);
    json_decref(data);
    return st;
}

/* ---------------------------------------------------------------- capture */

struct capture_job {
    payment_deps *deps;
    capture_job *next; /* in deps' queue of captures waiting for a connection */
    char order_id[SVC_ID_MAX];
    int64_t amount_cents;
    int64_t queued_ms; /* monotonic: when it began to wait for a connection */
    bool is_captured;
    bool is_resumed; /* started by payment_resume_captures, not by the charge itself */
};

static void capture_answered(sk_status st, const sk_http_response *resp, void *ctx);

static sk_status capture_settle_tx(sk_tx *tx, void *ctx)
{
    capture_job *job = ctx;
    payment_deps *deps = job->deps;
    charge c;
    sk_status st = charge_load(tx, job->order_id, &c);
    if (st == SK_ENOTFOUND) {
        return SK_OK;
    }
    if (st != SK_OK) {
        return st;
    }
    if (strcmp(c.state, "PENDING") == 0) {
        if (!job->is_captured && job->is_resumed) {
            /*
             * A re-driven capture that failed proves nothing: with several
             * instances on this database, another one (or its own first
             * attempt) may be capturing this charge right now and succeed
             * (a restarted instance re-drives every PENDING charge before
             * discovery has even found a psp). Settling FAILED here would
             * release the credit of a charge the psp took. Leave it PENDING:
             * the next sweep tries again, and a refund from the saga's
             * timeout settles it whatever the psp answers.
             */
            return SK_OK;
        }
        if (job->is_captured) {
            snprintf(c.state, sizeof(c.state), "CHARGED");
            st = account_adjust(tx, deps, c.customer_id, 0, "CreditCharged", c.order_id, c.amount_cents);
            if (st == SK_OK) {
                st = reply(tx, deps, &c.charge_addr, "CreditCharged", c.order_id, NULL);
            }
        } else {
            snprintf(c.state, sizeof(c.state), "FAILED");
            snprintf(c.reason, sizeof(c.reason), "PAYMENT_UNAVAILABLE");
            st = account_adjust(tx, deps, c.customer_id, c.amount_cents, "CreditReleased", c.order_id,
                                c.amount_cents);
            if (st == SK_OK) {
                st = reply(tx, deps, &c.charge_addr, "CreditChargeFailed", c.order_id, c.reason);
            }
        }
    } else if (strcmp(c.state, "REFUND_PENDING") == 0) {
        /* Refunded while capturing: give the hold back whatever the psp said. */
        snprintf(c.state, sizeof(c.state), "REFUNDED");
        st = account_adjust(tx, deps, c.customer_id, c.amount_cents, "CreditRefunded", c.order_id, c.amount_cents);
        if (st == SK_OK) {
            st = reply(tx, deps, &c.refund_addr, "CreditRefunded", c.order_id, NULL);
        }
    } else {
        return SK_OK; /* already settled */
    }
    return st == SK_OK ? charge_save(tx, &c) : st;
}

static void capture_settle_done(sk_status st, const char *message, void *ctx)
{
    capture_job *job = ctx;
    if (st != SK_OK) {
        /* The hold stays PENDING; payment_resume_captures settles it after a restart. */
        SK_LOG_ERROR("settling capture of order %s: %s", job->order_id, message);
    }
    job->deps->captures_in_flight--;
    sk_free(job);
}

/* The psp answered (or the capture never left): settle the charge in a unit of work. */
static void capture_settle(capture_job *job, sk_status st, const sk_http_response *resp)
{
    job->is_captured = st == SK_OK && resp != NULL && resp->status >= 200 && resp->status < 300;
    if (!job->is_captured) {
        SK_LOG_WARN("capture of order %s failed: %s (HTTP %d)", job->order_id,
                    st == SK_OK ? "psp refused" : sk_status_name(st), resp != NULL ? resp->status : 0);
    }
    if (sk_store_submit(job->deps->platform.store, capture_settle_tx, capture_settle_done, job) != SK_OK) {
        SK_LOG_ERROR("settling capture of order %s: %s", job->order_id, sk_error_message());
        job->deps->captures_in_flight--;
        sk_free(job);
    }
}

/* Send @p job to the psp; false when it did not go out (its answer will not come). */
static bool capture_send(capture_job *job)
{
    char idem[SVC_ID_MAX + 32];
    json_t *doc = json_pack("{s:s, s:I}", "order_id", job->order_id, "amount_cents", (json_int_t)job->amount_cents);
    char *body = doc != NULL ? sk_json_dumps(doc) : NULL;
    json_decref(doc);
    snprintf(idem, sizeof(idem), "Idempotency-Key: capture-%s", job->order_id);
    const char *headers[] = { "Content-Type: application/json", idem, NULL };
    sk_http_request req = {
        .method = "POST",
        .url = "/captures",
        .headers = headers,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
    };
    bool is_sent =
        body != NULL && sk_upstream_send(job->deps->psp, &req, capture_answered, job) == SK_OK;
    sk_free(body);
    return is_sent;
}

/* This thread is in captures_pump: an answer that comes back inline leaves the sending to it. */
static _Thread_local bool is_pumping;

/*
 * Send waiting captures, oldest first, while fewer than the psp upstream's
 * maxConnections are out. A burst of charges (a stall that let them pile up,
 * a restart's re-drive) waits here rather than in the mesh's pool queue,
 * where psp's 2 s timeout would run, or beyond it, where the pool answers a
 * local 503: either would fail charges the psp never refused. One that
 * waited PAYMENT_CAPTURE_MAX_WAIT_MS is not sent but settled as not
 * captured: its saga step's deadline has passed by then, and so the queue
 * stays as short as the rate times that wait.
 */
static void captures_pump(payment_deps *deps)
{
    size_t max_sending = sk_upstream_max_active(deps->psp);

    if (is_pumping) {
        return;
    }
    is_pumping = true;
    for (;;) {
        capture_job *job = NULL;
        pthread_mutex_lock(&deps->mu);
        if (!deps->is_stopping && deps->capture_queue != NULL &&
            deps->captures_sending < max_sending) {
            job = deps->capture_queue;
            deps->capture_queue = job->next;
            if (deps->capture_queue == NULL) {
                deps->capture_queue_tail = NULL;
            }
            deps->captures_sending++;
        }
        pthread_mutex_unlock(&deps->mu);
        if (job == NULL) {
            break;
        }
        int64_t waited_ms = sk_time_mono_since_ms(job->queued_ms);
        bool is_sent = false;
        if (waited_ms > PAYMENT_CAPTURE_MAX_WAIT_MS) {
            SK_LOG_WARN("capture of order %s waited %lld ms for a connection to psp: not sent",
                        job->order_id, (long long)waited_ms);
        } else {
            is_sent = capture_send(job);
        }
        if (!is_sent) {
            pthread_mutex_lock(&deps->mu);
            deps->captures_sending--;
            pthread_mutex_unlock(&deps->mu);
            capture_settle(job, SK_EUNAVAILABLE, NULL);
        }
    }
    is_pumping = false;
}

/* Client thread: the psp answered (or not). Settle, and let the next capture go. */
static void capture_answered(sk_status st, const sk_http_response *resp, void *ctx)
{
    capture_job *job = ctx;
    payment_deps *deps = job->deps;

    /* Settling can finish on the writer thread before the lines after it run, and the service's
     * teardown waits only for captures_in_flight: count this thread in until it is done. */
    deps->captures_in_flight++;
    pthread_mutex_lock(&deps->mu);
    deps->captures_sending--;
    pthread_mutex_unlock(&deps->mu);
    capture_settle(job, st, resp);
    captures_pump(deps);
    deps->captures_in_flight--;
}

/* Start a capture; called after the hold is durable. It waits its turn for a connection. */
static void capture_start(void *ctx)
{
    capture_job *job = ctx;
    payment_deps *deps = job->deps;

    deps->captures_in_flight++;
    job->next = NULL;
    job->queued_ms = sk_time_mono_ms();
    pthread_mutex_lock(&deps->mu);
    if (deps->capture_queue_tail != NULL) {
        deps->capture_queue_tail->next = job;
    } else {
        deps->capture_queue = job;
    }
    deps->capture_queue_tail = job;
    pthread_mutex_unlock(&deps->mu);
    captures_pump(deps);
}

void payment_drop_waiting_captures(payment_deps *deps)
{
    pthread_mutex_lock(&deps->mu);
    capture_job *job = deps->capture_queue;
    deps->capture_queue = NULL;
    deps->capture_queue_tail = NULL;
    pthread_mutex_unlock(&deps->mu);
    while (job != NULL) {
        capture_job *next = job->next;
        deps->captures_in_flight--;
        sk_free(job);
        job = next;
    }
}

static sk_status capture_schedule(sk_tx *tx, payment_deps *deps, const charge *c)
{
    capture_job *job = sk_calloc(1, sizeof(*job));
    if (job == NULL) {
        return SK_FAIL(SK_ENOMEM, "capture");
    }
    job->deps = deps;
    snprintf(job->order_id, sizeof(job->order_id), "%s", c->order_id);
    job->amount_cents = c->amount_cents;
    sk_status st = sk_tx_after_commit_or_discard(tx, capture_start, sk_free, job);
    if (st != SK_OK) {
        sk_free(job);
    }
    return st;
}

/* ---------------------------------------------------------------- commands */

static sk_status charge_credit(sk_tx *tx, const sk_message *m, payment_deps *deps, const char *order_id)
{
    const char *customer_id = NULL;
    int64_t amount = 0;
    charge c;
    account a;

    sk_status st = charge_load(tx, order_id, &c);
    if (st == SK_OK) {
        svc_reply_addr addr;
        svc_reply_addr_from(&addr, m);
        if (strcmp(c.state, "CHARGED") == 0) {
            return reply(tx, deps, &addr, "CreditCharged", order_id, NULL);
        }
        if (strcmp(c.state, "FAILED") == 0) {
            return reply(tx, deps, &addr, "CreditChargeFailed", order_id, c.reason);
        }
        if (strcmp(c.state, "PENDING") == 0) {
            c.charge_addr = addr; /* answer the newest attempt when the capture settles */
            return charge_save(tx, &c);
        }
        return reply(tx, deps, &addr, "CreditChargeFailed", order_id, "CANCELLED");
    }
    if (st != SK_ENOTFOUND) {
        return st;
    }
    if (sk_json_get_string(m->json, "customer_id", 1, 100, &customer_id) != SK_OK ||
        sk_json_get_int(m->json, "amount_cents", 0, MAX_AMOUNT_CENTS, &amount) != SK_OK) {
        return SK_WRAP(SK_EPROTO, "ChargeCredit");
    }
    memset(&c, 0, sizeof(c));
    snprintf(c.order_id, sizeof(c.order_id), "%s", order_id);
    snprintf(c.customer_id, sizeof(c.customer_id), "%s", customer_id);
    c.amount_cents = amount;
    svc_reply_addr_from(&c.charge_addr, m);

    st = account_load(tx, customer_id, &a);
    if (st == SK_ENOTFOUND) {
        /* The account opens from CustomerRegistered, asynchronously: give it a few redeliveries. */
        if (m->n_delivered < PAYMENT_ACCOUNT_DELIVERIES) {
            return SK_FAIL(SK_EUNAVAILABLE, "account of %s not open yet", customer_id);
        }
        snprintf(c.state, sizeof(c.state), "FAILED");
        snprintf(c.reason, sizeof(c.reason), "UNKNOWN_CUSTOMER");
    } else if (st != SK_OK) {
        return st;
    } else if (a.available < amount) {
        snprintf(c.state, sizeof(c.state), "FAILED");
        snprintf(c.reason, sizeof(c.reason), "INSUFFICIENT_CREDIT");
    } else {
        snprintf(c.state, sizeof(c.state), "PENDING");
        st = account_adjust(tx, deps, customer_id, -amount, "CreditReserved", order_id, amount);
        if (st == SK_OK) {
            st = charge_save(tx, &c);
        }
        return st == SK_OK ? capture_schedule(tx, deps, &c) : st;
    }
    st = charge_save(tx, &c);
    return st == SK_OK ? reply(tx, deps, &c.charge_addr, "CreditChargeFailed", order_id, c.reason) : st;
}

static sk_status refund_credit(sk_tx *tx, const sk_message *m, payment_deps *deps, const char *order_id)
{
    charge c;
    svc_reply_addr addr;
    svc_reply_addr_from(&addr, m);
    sk_status st = charge_load(tx, order_id, &c);
    if (st == SK_ENOTFOUND) {
        /* Refund before charge: a tombstone makes the late charge fail. */
        memset(&c, 0, sizeof(c));
        snprintf(c.order_id, sizeof(c.order_id), "%s", order_id);
        snprintf(c.state, sizeof(c.state), "VOID");
        st = charge_save(tx, &c);
        return st == SK_OK ? reply(tx, deps, &addr, "CreditRefunded", order_id, NULL) : st;
    }
    if (st != SK_OK) {
        return st;
    }
    if (strcmp(c.state, "CHARGED") == 0) {
        snprintf(c.state, sizeof(c.state), "REFUNDED");
        st = account_adjust(tx, deps, c.customer_id, c.amount_cents, "CreditRefunded", order_id, c.amount_cents);
        if (st == SK_OK) {
            st = charge_save(tx, &c);
        }
        return st == SK_OK ? reply(tx, deps, &addr, "CreditRefunded", order_id, NULL) : st;
    }
    if (strcmp(c.state, "PENDING") == 0 || strcmp(c.state, "REFUND_PENDING") == 0) {
        snprintf(c.state, sizeof(c.state), "REFUND_PENDING");
        c.refund_addr = addr; /* answered when the capture settles */
        return charge_save(tx, &c);
    }
    return reply(tx, deps, &addr, "CreditRefunded", order_id, NULL); /* FAILED, REFUNDED, VOID */
}

sk_status payment_handle_command(sk_tx *tx, const sk_message *m, void *ctx)
{
    payment_deps *deps = ctx;
    const char *order_id = NULL;
    if (sk_json_get_string(m->json, "order_id", 1, 100, &order_id) != SK_OK) {
        return SK_EPROTO;
    }
    if (strcmp(m->env.type, "ChargeCredit") == 0) {
        return charge_credit(tx, m, deps, order_id);
    }
    if (strcmp(m->env.type, "RefundCredit") == 0) {
        return refund_credit(tx, m, deps, order_id);
    }
    return SK_FAIL(SK_EPROTO, "unknown command type %s", m->env.type);
}

/* ---------------------------------------------------------------- recovery */

typedef struct resume_ctx {
    payment_deps *deps;
    int64_t older_than_ms;
    capture_job *jobs[1024];
    size_t n;
} resume_ctx;

static sk_status find_pending(sk_tx *tx, void *ctx)
{
    resume_ctx *rc = ctx;
    sk_rows *rows = NULL;
    sk_db_value params[] = { SK_DB_INT_V(rc->older_than_ms) };
    sk_status st = sk_tx_query(tx,
                               "SELECT order_id, amount_cents FROM charges"
                               " WHERE state IN ('PENDING', 'REFUND_PENDING') AND updated_ms < ?"
                               " ORDER BY updated_ms LIMIT 1024",
                               params, 1, &rows);
    while (st == SK_OK && (st = sk_rows_next(rows)) == SK_OK) {
        capture_job *job = sk_calloc(1, sizeof(*job));
        if (job == NULL) {
            st = SK_FAIL(SK_ENOMEM, "resume");
            break;
        }
        job->deps = rc->deps;
        snprintf(job->order_id, sizeof(job->order_id), "%s", sk_rows_text(rows, 0, NULL));
        job->amount_cents = sk_rows_int(rows, 1);
        job->is_resumed = true;
        rc->jobs[rc->n++] = job;
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

sk_status payment_resume_captures(payment_deps *deps, int64_t min_age_ms)
{
    resume_ctx *rc = sk_calloc(1, sizeof(*rc));
    if (rc == NULL) {
        return SK_FAIL(SK_ENOMEM, "resume");
    }
    rc->deps = deps;
    rc->older_than_ms = sk_time_now_ms() - min_age_ms;
    sk_status st = sk_store_read(deps->platform.store, find_pending, rc);
    for (size_t i = 0; i < rc->n; i++) {
        if (st == SK_OK) {
            SK_LOG_INFO("resuming capture of order %s", rc->jobs[i]->order_id);
            capture_start(rc->jobs[i]);
        } else {
            sk_free(rc->jobs[i]);
        }
    }
    sk_free(rc);
    return st;
}
