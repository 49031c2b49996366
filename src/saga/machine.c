/* SPDX-License-Identifier: MIT */
/*
 * The saga state machine. Each entry point (start, reply, deadline, cancel)
 * runs inside one unit of work: it loads the instance row, moves it on in
 * memory (running local steps and adding the outbox rows of the commands it
 * sends), and writes the row back, so the row and its commands commit
 * together or not at all. Invariant: a running or compensating instance
 * always awaits exactly one reply, the one whose ce-sagastep equals its seq,
 * and has a deadline for it.
 */
#include <stdio.h>
#include <string.h>

#include "saga/saga_int.h"

static const sk_migration saga_migrations[] = {
    { "sk_saga", 1,
      "CREATE TABLE sk_sagas ("
      " id TEXT PRIMARY KEY,"
      " type TEXT NOT NULL,"
      " version INTEGER NOT NULL,"
      " state INTEGER NOT NULL," /* 0 running, 1 compensating, 2 completed, 3 failed */
      " step INTEGER NOT NULL,"  /* forward step awaited, or step being compensated */
      " seq BIGINT NOT NULL,"    /* ce-sagastep of the command in flight */
      " data TEXT NOT NULL,"
      " reason TEXT,"
      " cancel_requested INTEGER NOT NULL DEFAULT 0,"
      " deadline_ms BIGINT," /* NULL when nothing is awaited */
      " traceparent TEXT,"
      " created_ms BIGINT NOT NULL,"
      " updated_ms BIGINT NOT NULL);"
      "CREATE INDEX sk_sagas_deadline ON sk_sagas (state, deadline_ms)" },
};

const sk_migration *sk_saga_migrations(size_t *n)
{
    if (n != NULL) {
        *n = sizeof(saga_migrations) / sizeof(saga_migrations[0]);
    }
    return saga_migrations;
}

/* An instance loaded in memory. */
typedef struct saga_inst {
    const char *id; /* borrowed from the caller */
    char type[SK__SAGA_MAX_TYPE + 1];
    int version;
    sk_saga_state state;
    int step;
    int64_t seq;
    json_t *data; /* owned */
    char reason[SK_SAGA_MAX_REASON];
    bool is_cancel_requested;
    bool has_deadline;
    int64_t deadline_ms;
    char traceparent[SK_TRACEPARENT_LEN];
    const sk_saga_def *def;
} saga_inst;

static void inst_fini(saga_inst *in)
{
    json_decref(in->data);
    in->data = NULL;
}

static const char *state_name(sk_saga_state s)
{
    switch (s) {
    case SK_SAGA_RUNNING:
        return "running";
    case SK_SAGA_COMPENSATING:
        return "compensating";
    case SK_SAGA_COMPLETED:
        return "completed";
    case SK_SAGA_FAILED:
        return "failed";
    }
    return "unknown";
}

/* Copy at most SK_SAGA_MAX_REASON - 1 bytes, NUL-terminated. */
static void reason_set(char dst[SK_SAGA_MAX_REASON], const char *src)
{
    snprintf(dst, SK_SAGA_MAX_REASON, "%s", src != NULL ? src : "");
}

/* The saga id travels as ce-subject: printable ASCII without spaces. */
static sk_status id_check(const char *fn, const char *saga_id)
{
    size_t len;

    if (saga_id == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: saga_id must not be NULL", fn);
    }
    len = strlen(saga_id);
    if (len == 0 || len > SK__SAGA_MAX_ID) {
        return SK_FAIL(SK_EINVAL, "%s: saga_id must be 1..%d bytes, got %zu", fn, SK__SAGA_MAX_ID,
                       len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)saga_id[i];
        if (c <= 0x20 || c >= 0x7f) {
            return SK_FAIL(SK_EINVAL,
                           "%s: saga_id: expected printable ASCII without spaces, got byte 0x%02x "
                           "at offset %zu",
                           fn, c, i);
        }
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- metrics */

static void counter_inc(void *ctx)
{
    sk_counter_add(ctx, 1);
}

/* Prometheus label values: keep [A-Za-z0-9_.-], replace the rest (no escaping needed then). */
static void label_clean(const char *in, char *out, size_t out_size)
{
    size_t n = 0;
    for (; in[n] != '\0' && n + 1 < out_size; n++) {
        char c = in[n];
        bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '.' || c == '-';
        out[n] = is_ok ? c : '_';
    }
    out[n] = '\0';
}

/*
 * Count one event once the unit commits (a rolled-back unit counts nothing).
 * A metric that cannot be registered (out of memory) is skipped: metrics
 * must not fail a saga.
 */
static sk_status metric_count(sk_tx *tx,
                              sk_saga_engine *e,
                              const char *name,
                              const char *help,
                              const char *type,
                              const char *reason)
{
    char labels[SK__SAGA_MAX_TYPE + SK_SAGA_MAX_REASON + 32];
    char r[SK_SAGA_MAX_REASON];
    sk_counter *c;

    if (e->metrics == NULL) {
        return SK_OK;
    }
    if (reason != NULL) {
        label_clean(reason, r, sizeof(r));
        snprintf(labels, sizeof(labels), "type=\"%s\",reason=\"%s\"", type, r);
    } else {
        snprintf(labels, sizeof(labels), "type=\"%s\"", type);
    }
    c = sk_metrics_counter(e->metrics, name, help, labels);
    if (c == NULL) {
        sk_error_clear();
        return SK_OK;
    }
    return sk_tx_after_commit(tx, counter_inc, c);
}

/* ---------------------------------------------------------------- persistence */

#define INST_COLUMNS \
    "type, version, state, step, seq, data, reason, cancel_requested, deadline_ms, traceparent"

static sk_status inst_load(sk_tx *tx, const char *saga_id, saga_inst *in)
{
    sk_db_value p[1] = { SK_DB_TEXT_V(saga_id) };
    sk_rows *rows = NULL;
    size_t len = 0;
    const char *text;
    int64_t v;
    sk_status st;

    memset(in, 0, sizeof(*in));
    in->id = saga_id;
    st = sk_tx_query(tx, "SELECT " INST_COLUMNS " FROM sk_sagas WHERE id = ?", p, 1, &rows);
    if (st != SK_OK) {
        return st;
    }
    st = sk_rows_next(rows);
    if (st == SK_ENOTFOUND) {
        st = SK_FAIL(SK_ENOTFOUND, "saga %s not found", saga_id);
        goto out;
    }
    if (st != SK_OK) {
        goto out;
    }
    text = sk_rows_text(rows, 0, &len);
    if (len == 0 || len > SK__SAGA_MAX_TYPE) {
        st = SK_FAIL(SK_EPROTO, "saga %s: stored type has %zu bytes", saga_id, len);
        goto out;
    }
    memcpy(in->type, text, len);
    in->type[len] = '\0';
    in->version = (int)sk_rows_int(rows, 1);
    v = sk_rows_int(rows, 2);
    if (v < SK_SAGA_RUNNING || v > SK_SAGA_FAILED) {
        st = SK_FAIL(SK_EPROTO, "saga %s: stored state %lld is not 0..3", saga_id, (long long)v);
        goto out;
    }
    in->state = (sk_saga_state)v;
    v = sk_rows_int(rows, 3);
    if (v < 0 || v > 1000) {
        st = SK_FAIL(SK_EPROTO, "saga %s: stored step %lld out of range", saga_id, (long long)v);
        goto out;
    }
    in->step = (int)v;
    in->seq = sk_rows_int(rows, 4);
    text = sk_rows_text(rows, 5, &len);
    st = sk_json_parse_object((sk_slice){ (const uint8_t *)text, len }, &in->data);
    if (st != SK_OK) {
        st = SK_WRAP(st, "saga %s: stored data", saga_id);
        goto out;
    }
    reason_set(in->reason, sk_rows_text(rows, 6, NULL));
    in->is_cancel_requested = sk_rows_int(rows, 7) != 0;
    in->has_deadline = !sk_rows_is_null(rows, 8);
    in->deadline_ms = in->has_deadline ? sk_rows_int(rows, 8) : 0;
    text = sk_rows_text(rows, 9, &len);
    if (len > 0 && len < SK_TRACEPARENT_LEN) {
        memcpy(in->traceparent, text, len);
        in->traceparent[len] = '\0';
    }
out:
    sk_rows_close(rows);
    if (st != SK_OK) {
        inst_fini(in);
    }
    return st;
}

/* Nesting depth of @p v ({} and [] count one level each), exploring at most @p limit + 1 levels. */
static int json_depth(const json_t *v, int limit)
{
    int best = 0;

    if (limit < 0 || (!json_is_object(v) && !json_is_array(v))) {
        return 0;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach ((json_t *)v, key, child) {
            int d = json_depth(child, limit - 1);
            best = d > best ? d : best;
        }
    } else {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = json_depth(json_array_get(v, i), limit - 1);
            best = d > best ? d : best;
        }
    }
    return best + 1;
}

static sk_status inst_save(sk_tx *tx, const saga_inst *in, int64_t now_ms)
{
    char *data = NULL;
    int64_t changes = 0;
    sk_status st;

    /* Loading parses with the external-input limits: never store what could not be read back. */
    if (json_depth(in->data, SK_MAX_JSON_DEPTH) > SK_MAX_JSON_DEPTH) {
        return SK_FAIL(SK_ELIMIT, "saga %s: data nested deeper than %d levels", in->id,
                       SK_MAX_JSON_DEPTH);
    }
    data = sk_json_dumps(in->data);
    if (data == NULL) {
        return SK_FAIL(SK_ENOMEM, "saga %s: serialising data", in->id);
    }
    sk_db_value p[] = {
        SK_DB_INT_V(in->state),
        SK_DB_INT_V(in->step),
        SK_DB_INT_V(in->seq),
        SK_DB_TEXT_V(data),
        in->reason[0] != '\0' ? SK_DB_TEXT_V(in->reason) : SK_DB_NULL_V,
        SK_DB_INT_V(in->is_cancel_requested ? 1 : 0),
        in->has_deadline ? SK_DB_INT_V(in->deadline_ms) : SK_DB_NULL_V,
        SK_DB_INT_V(now_ms),
        SK_DB_TEXT_V(in->id),
    };
    st = sk_tx_exec(tx,
                    "UPDATE sk_sagas SET state = ?, step = ?, seq = ?, data = ?, reason = ?, "
                    "cancel_requested = ?, deadline_ms = ?, updated_ms = ? WHERE id = ?",
                    p, sizeof(p) / sizeof(p[0]), &changes);
    sk_free(data);
    if (st == SK_OK && changes != 1) {
        st = SK_FAIL(SK_EINTERNAL, "saga %s: saving changed %lld rows", in->id, (long long)changes);
    }
    return st;
}

/* ---------------------------------------------------------------- sending */

typedef sk_status (*build_fn)(const json_t *data, json_t **out, void *ctx);

/* Build a payload with @p fn ({} when NULL) and check that it is an object. */
static sk_status payload_build(
    const saga_inst *in, build_fn fn, const char *what, const char *step_name, json_t **out)
{
    sk_status st;

    *out = NULL;
    if (fn == NULL) {
        *out = json_object();
        return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "saga %s: allocating %s", in->id, what);
    }
    st = fn(in->data, out, in->def->ctx);
    if (st != SK_OK) {
        json_decref(*out);
        *out = NULL;
        return SK_WRAP(st, "saga %s (%s v%d): building the %s of step %s", in->id, in->type,
                       in->version, what, step_name);
    }
    if (!json_is_object(*out)) {
        const char *got = *out == NULL ? "NULL" : "a JSON value that is not an object";
        json_decref(*out);
        *out = NULL;
        return SK_FAIL(SK_EINVAL, "saga %s (%s v%d): the %s builder of step %s returned %s", in->id,
                       in->type, in->version, what, step_name, got);
    }
    return SK_OK;
}

/*
 * Send the command (or compensation) of step @p i with a new sequence
 * number and set the deadline for its reply.
 */
static sk_status
send_step(sk_tx *tx, sk_saga_engine *e, saga_inst *in, int i, bool is_comp, int64_t now_ms)
{
    const sk_saga_step *s = &in->def->steps[i];
    const char *subject = is_comp ? s->compensation_subject : s->command_subject;
    const char *type = is_comp ? s->compensation_type : s->command_type;
    const char *what = is_comp ? "compensation" : "command";
    json_t *payload = NULL;
    sk_envelope env;
    sk_status st;

    if (in->seq >= SK__SAGA_MAX_SEQ) {
        return SK_FAIL(SK_ELIMIT, "saga %s: sequence numbers exhausted", in->id);
    }
    st = payload_build(in, is_comp ? s->build_compensation : s->build, what, s->name, &payload);
    if (st != SK_OK) {
        return st;
    }
    in->seq++;
    sk_envelope_init(&env, type, e->source, in->id,
                     in->traceparent[0] != '\0' ? in->traceparent : NULL);
    env.saga_step = (int)in->seq;
    env.reply_to = in->def->reply_subject;
    st = sk_outbox_add(tx, subject, &env, payload);
    json_decref(payload);
    if (st != SK_OK) {
        return SK_WRAP(st, "saga %s: sending %s %s of step %s", in->id, what, type, s->name);
    }
    in->step = i;
    in->has_deadline = true;
    in->deadline_ms = now_ms + (s->deadline_ms > 0 ? s->deadline_ms : SK__SAGA_DEFAULT_DEADLINE_MS);
    return SK_OK;
}

/* ---------------------------------------------------------------- transitions */

static sk_status finish_failed(sk_tx *tx, sk_saga_engine *e, saga_inst *in)
{
    const sk_saga_def *def = in->def;
    sk_status st;

    in->state = SK_SAGA_FAILED;
    in->has_deadline = false;
    if (in->reason[0] == '\0') {
        reason_set(in->reason, SK__SAGA_REASON_FAILED);
    }
    if (def->on_failed != NULL) {
        st = def->on_failed(tx, in->id, in->data, in->reason, def->ctx);
        if (st != SK_OK) {
            return SK_WRAP(st, "saga %s (%s v%d): on_failed", in->id, in->type, in->version);
        }
    }
    SK_LOG_INFO("saga %s (%s v%d) failed: %s", in->id, in->type, in->version, in->reason);
    return metric_count(tx, e, "sk_saga_failed_total",
                        "Sagas that ended failed, after compensation", in->type, in->reason);
}

/*
 * Unwind: send the compensation of the nearest step at or before @p from
 * that has one, or finish failed when none is left. in->reason is set.
 */
static sk_status
compensate_from(sk_tx *tx, sk_saga_engine *e, saga_inst *in, int from, int64_t now_ms)
{
    in->state = SK_SAGA_COMPENSATING;
    in->has_deadline = false;
    for (int j = from; j >= 0; j--) {
        if (in->def->steps[j].compensation_subject != NULL) {
            return send_step(tx, e, in, j, true, now_ms);
        }
    }
    return finish_failed(tx, e, in);
}

/*
 * Go forward from step @p from: run local steps at once, stop at the first
 * command step (sent), unwind on a local failure, complete after the last.
 */
static sk_status advance_from(sk_tx *tx, sk_saga_engine *e, saga_inst *in, int from, int64_t now_ms)
{
    const sk_saga_def *def = in->def;
    sk_status st;

    in->has_deadline = false;
    for (int i = from; (size_t)i < def->n_steps; i++) {
        const sk_saga_step *s = &def->steps[i];
        sk_saga_verdict verdict = SK_SAGA_STEP_OK;
        char reason[SK_SAGA_MAX_REASON] = "";

        in->step = i;
        if (s->command_subject != NULL) {
            return send_step(tx, e, in, i, false, now_ms);
        }
        st = s->local(tx, in->id, in->data, &verdict, reason, def->ctx);
        if (st != SK_OK) {
            return SK_WRAP(st, "saga %s (%s v%d): local step %s", in->id, in->type, in->version,
                           s->name);
        }
        if (!json_is_object(in->data)) {
            return SK_FAIL(SK_EINTERNAL, "saga %s: local step %s left data that is not an object",
                           in->id, s->name);
        }
        if (verdict == SK_SAGA_STEP_FAILED) {
            reason[SK_SAGA_MAX_REASON - 1] = '\0';
            reason_set(in->reason, reason[0] != '\0' ? reason : SK__SAGA_REASON_FAILED);
            return compensate_from(tx, e, in, i - 1, now_ms);
        }
        if (verdict != SK_SAGA_STEP_OK) {
            return SK_FAIL(SK_EINVAL, "saga %s: local step %s set an invalid verdict %d", in->id,
                           s->name, (int)verdict);
        }
    }
    in->state = SK_SAGA_COMPLETED;
    in->step = (int)def->n_steps - 1;
    if (def->on_completed != NULL) {
        st = def->on_completed(tx, in->id, in->data, def->ctx);
        if (st != SK_OK) {
            return SK_WRAP(st, "saga %s (%s v%d): on_completed", in->id, in->type, in->version);
        }
    }
    SK_LOG_DEBUG("saga %s (%s v%d) completed", in->id, in->type, in->version);
    return metric_count(tx, e, "sk_saga_completed_total", "Sagas whose every step succeeded",
                        in->type, NULL);
}

/* The definition an instance started under. */
static sk_status inst_bind_def(const sk_saga_engine *e, saga_inst *in)
{
    in->def = sk__saga_def_find(e, in->type, in->version);
    if (in->def == NULL) {
        return SK_FAIL(SK_ENOTFOUND, "saga %s: no definition registered for %s version %d", in->id,
                       in->type, in->version);
    }
    if ((size_t)in->step >= in->def->n_steps) {
        return SK_FAIL(SK_ESTATE, "saga %s: step %d past the %zu steps of %s version %d", in->id,
                       in->step, in->def->n_steps, in->type, in->version);
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- public */

sk_status sk_saga_start(sk_tx *tx,
                        sk_saga_engine *e,
                        const char *type,
                        const char *saga_id,
                        const json_t *data,
                        const char *traceparent)
{
    saga_inst in;
    char *text = NULL;
    int64_t now_ms;
    sk_status st;

    memset(&in, 0, sizeof(in));
    if (tx == NULL || e == NULL || type == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_start: %s must not be NULL",
                       tx == NULL  ? "tx"
                       : e == NULL ? "e"
                                   : "type");
    }
    st = id_check("sk_saga_start", saga_id);
    if (st != SK_OK) {
        return st;
    }
    if (!json_is_object(data)) {
        return SK_FAIL(SK_EINVAL, "sk_saga_start: data must be a JSON object");
    }
    in.id = saga_id;
    in.def = sk__saga_def_latest(e, type);
    if (in.def == NULL) {
        return SK_FAIL(SK_ENOTFOUND, "sk_saga_start: no saga definition of type \"%.80s\"", type);
    }
    snprintf(in.type, sizeof(in.type), "%s", in.def->type);
    in.version = in.def->version;
    in.state = SK_SAGA_RUNNING;
    if (traceparent != NULL && sk_trace_is_valid(sk_slice_from_str(traceparent))) {
        snprintf(in.traceparent, sizeof(in.traceparent), "%s", traceparent);
    } else {
        sk_trace_new(in.traceparent);
    }
    in.data = json_deep_copy(data);
    text = sk_json_dumps(data);
    if (in.data == NULL || text == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_saga_start: copying data");
        goto out;
    }
    now_ms = sk__saga_now_ms(e);
    {
        sk_db_value p[] = {
            SK_DB_TEXT_V(saga_id), SK_DB_TEXT_V(in.type),        SK_DB_INT_V(in.version),
            SK_DB_TEXT_V(text),    SK_DB_TEXT_V(in.traceparent), SK_DB_INT_V(now_ms),
            SK_DB_INT_V(now_ms),
        };
        st = sk_tx_exec(tx,
                        "INSERT INTO sk_sagas (id, type, version, state, step, seq, data, "
                        "cancel_requested, traceparent, created_ms, updated_ms) "
                        "VALUES (?, ?, ?, 0, 0, 0, ?, 0, ?, ?, ?)",
                        p, sizeof(p) / sizeof(p[0]), NULL);
    }
    if (st == SK_EEXIST) {
        st = SK_FAIL(SK_EEXIST, "sk_saga_start: saga %s already exists", saga_id);
        goto out;
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_saga_start: saga %s", saga_id);
        goto out;
    }
    st = metric_count(tx, e, "sk_saga_started_total", "Sagas started", in.type, NULL);
    if (st == SK_OK) {
        st = advance_from(tx, e, &in, 0, now_ms);
    }
    if (st == SK_OK) {
        st = inst_save(tx, &in, now_ms);
    }
out:
    sk_free(text);
    inst_fini(&in);
    return st;
}

sk_status sk__saga_handle_reply(sk_tx *tx, const sk_message *m, void *ctx)
{
    sk_saga_engine *e = ctx;
    saga_inst in;
    json_t *parsed = NULL;
    const json_t *reply;
    int64_t now_ms;
    sk_status st;

    memset(&in, 0, sizeof(in));
    if (tx == NULL || m == NULL || e == NULL) {
        return SK_FAIL(SK_EINVAL, "saga reply handler: %s must not be NULL",
                       tx == NULL  ? "tx"
                       : m == NULL ? "m"
                                   : "ctx");
    }
    if (m->env.subject == NULL || m->env.subject[0] == '\0') {
        return SK_FAIL(SK_EPROTO, "saga reply on %s: no ce-subject (the saga id)",
                       m->nats_subject != NULL ? m->nats_subject : "?");
    }
    if (m->env.saga_step < 0) {
        return SK_FAIL(SK_EPROTO, "saga reply on %s for %.80s: no ce-sagastep",
                       m->nats_subject != NULL ? m->nats_subject : "?", m->env.subject);
    }
    st = inst_load(tx, m->env.subject, &in);
    if (st == SK_ENOTFOUND) {
        SK_LOG_DEBUG("saga reply %s for unknown saga %.80s ignored",
                     m->env.type != NULL ? m->env.type : "?", m->env.subject);
        sk_error_clear();
        return SK_OK;
    }
    if (st != SK_OK) {
        return st;
    }
    if (in.state != SK_SAGA_RUNNING && in.state != SK_SAGA_COMPENSATING) {
        SK_LOG_DEBUG("saga %s: reply %s ignored, saga %s", in.id,
                     m->env.type != NULL ? m->env.type : "?", state_name(in.state));
        goto out;
    }
    if ((int64_t)m->env.saga_step != in.seq) {
        SK_LOG_DEBUG("saga %s: stale reply %s (step %d, awaiting %lld) ignored", in.id,
                     m->env.type != NULL ? m->env.type : "?", m->env.saga_step, (long long)in.seq);
        goto out;
    }
    st = inst_bind_def(e, &in);
    if (st != SK_OK) {
        goto out;
    }
    now_ms = sk__saga_now_ms(e);
    if (in.state == SK_SAGA_COMPENSATING) {
        /* Any answer to a compensation completes it (participants cannot refuse one). */
        st = compensate_from(tx, e, &in, in.step - 1, now_ms);
    } else {
        const sk_saga_step *s = &in.def->steps[in.step];
        sk_saga_verdict verdict = SK_SAGA_STEP_OK;
        char reason[SK_SAGA_MAX_REASON] = "";

        if (s->command_subject == NULL) {
            goto out; /* a local step awaits nothing: cannot be our reply */
        }
        reply = m->json;
        if (reply == NULL) {
            st = sk_json_parse_object(m->data.len > 0 ? m->data : sk_slice_from_str("{}"), &parsed);
            if (st != SK_OK) {
                st = SK_WRAP(st, "saga %s: reply %s data", in.id,
                             m->env.type != NULL ? m->env.type : "?");
                goto out;
            }
            reply = parsed;
        }
        if (s->on_reply != NULL) {
            st = s->on_reply(in.data, m->env.type != NULL ? m->env.type : "", reply, &verdict,
                             reason, in.def->ctx);
            if (st != SK_OK) {
                st = SK_WRAP(st, "saga %s (%s v%d): on_reply of step %s", in.id, in.type,
                             in.version, s->name);
                goto out;
            }
            reason[SK_SAGA_MAX_REASON - 1] = '\0';
            if (!json_is_object(in.data)) {
                st = SK_FAIL(SK_EINTERNAL,
                             "saga %s: on_reply of step %s left data that is not "
                             "an object",
                             in.id, s->name);
                goto out;
            }
        }
        if (verdict == SK_SAGA_STEP_OK) {
            if (in.is_cancel_requested) {
                /* This step succeeded, so it is undone too. */
                reason_set(in.reason, SK__SAGA_REASON_CANCELLED);
                st = compensate_from(tx, e, &in, in.step, now_ms);
            } else {
                st = advance_from(tx, e, &in, in.step + 1, now_ms);
            }
        } else if (verdict == SK_SAGA_STEP_FAILED) {
            reason_set(in.reason, reason[0] != '\0' ? reason : SK__SAGA_REASON_FAILED);
            st = compensate_from(tx, e, &in, in.step - 1, now_ms);
        } else {
            st = SK_FAIL(SK_EINVAL, "saga %s: on_reply of step %s set an invalid verdict %d", in.id,
                         s->name, (int)verdict);
        }
    }
    if (st == SK_OK) {
        st = inst_save(tx, &in, now_ms);
    }
out:
    json_decref(parsed);
    inst_fini(&in);
    return st;
}

sk_status sk__saga_handle_deadline(sk_tx *tx,
                                   sk_saga_engine *e,
                                   const char *saga_id,
                                   sk_saga_state expected_state,
                                   int64_t expected_seq,
                                   int64_t now_ms)
{
    saga_inst in;
    const sk_saga_step *s;
    sk_status st;

    memset(&in, 0, sizeof(in));
    if (tx == NULL || e == NULL || saga_id == NULL) {
        return SK_FAIL(SK_EINVAL, "saga deadline handler: %s must not be NULL",
                       tx == NULL  ? "tx"
                       : e == NULL ? "e"
                                   : "saga_id");
    }
    st = inst_load(tx, saga_id, &in);
    if (st == SK_ENOTFOUND) {
        sk_error_clear();
        return SK_OK;
    }
    if (st != SK_OK) {
        return st;
    }
    /* The scan read a snapshot: act only when nothing moved since. */
    if (in.state != expected_state || in.seq != expected_seq || !in.has_deadline ||
        in.deadline_ms >= now_ms ||
        (in.state != SK_SAGA_RUNNING && in.state != SK_SAGA_COMPENSATING)) {
        goto out;
    }
    st = inst_bind_def(e, &in);
    if (st != SK_OK) {
        goto out;
    }
    s = &in.def->steps[in.step];
    if (in.state == SK_SAGA_COMPENSATING) {
        SK_LOG_INFO("saga %s: compensation %s of step %s unanswered, sending it again", in.id,
                    s->compensation_type != NULL ? s->compensation_type : "?", s->name);
        st = s->compensation_subject != NULL
                 ? send_step(tx, e, &in, in.step, true, now_ms)
                 : SK_FAIL(SK_ESTATE, "saga %s: step %s has no compensation to await", in.id,
                           s->name);
    } else if (s->command_subject == NULL) {
        st = SK_FAIL(SK_ESTATE, "saga %s: local step %s cannot await a reply", in.id, s->name);
    } else if (s->is_retried_until_done) {
        SK_LOG_INFO("saga %s: command %s of step %s unanswered, sending it again", in.id,
                    s->command_type, s->name);
        st = send_step(tx, e, &in, in.step, false, now_ms);
    } else {
        SK_LOG_INFO("saga %s: command %s of step %s timed out", in.id, s->command_type, s->name);
        /* The participant may have applied the command without our hearing of
         * it: undo this step too (compensations are idempotent no-ops for
         * commands never applied). */
        reason_set(in.reason, SK__SAGA_REASON_TIMEOUT);
        st = compensate_from(tx, e, &in, in.step, now_ms);
    }
    if (st == SK_OK && e->timeouts != NULL) {
        st = sk_tx_after_commit(tx, counter_inc, e->timeouts);
    }
    if (st == SK_OK) {
        st = inst_save(tx, &in, now_ms);
    }
out:
    inst_fini(&in);
    return st;
}

sk_status sk_saga_cancel(sk_tx *tx, sk_saga_engine *e, const char *saga_id)
{
    saga_inst in;
    int64_t now_ms;
    sk_status st;

    memset(&in, 0, sizeof(in));
    if (tx == NULL || e == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_cancel: %s must not be NULL", tx == NULL ? "tx" : "e");
    }
    st = id_check("sk_saga_cancel", saga_id);
    if (st != SK_OK) {
        return st;
    }
    st = inst_load(tx, saga_id, &in);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_saga_cancel");
    }
    switch (in.state) {
    case SK_SAGA_COMPLETED:
    case SK_SAGA_FAILED:
        st =
            SK_FAIL(SK_ESTATE, "sk_saga_cancel: saga %s already %s", saga_id, state_name(in.state));
        goto out;
    case SK_SAGA_COMPENSATING:
        goto out; /* already unwinding; its reason stays */
    case SK_SAGA_RUNNING:
        break;
    }
    now_ms = sk__saga_now_ms(e);
    if (in.is_cancel_requested) {
        goto out;
    }
    in.is_cancel_requested = true;
    if (!in.has_deadline) {
        /* Nothing awaited (not reached by this engine's own transitions, which
         * always leave a running instance awaiting a reply): unwind now. */
        st = inst_bind_def(e, &in);
        if (st != SK_OK) {
            goto out;
        }
        reason_set(in.reason, SK__SAGA_REASON_CANCELLED);
        st = compensate_from(tx, e, &in, in.step - 1, now_ms);
    }
    if (st == SK_OK) {
        st = inst_save(tx, &in, now_ms);
    }
out:
    inst_fini(&in);
    return st;
}

sk_status sk_saga_get_state(sk_tx *tx, const char *saga_id, sk_saga_state *state)
{
    sk_db_value p[1];
    int64_t v = 0;
    sk_status st;

    if (state != NULL) {
        *state = SK_SAGA_RUNNING;
    }
    if (tx == NULL || saga_id == NULL || state == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_get_state: %s must not be NULL",
                       tx == NULL        ? "tx"
                       : saga_id == NULL ? "saga_id"
                                         : "state");
    }
    p[0] = SK_DB_TEXT_V(saga_id);
    st = sk_tx_query_int(tx, "SELECT state FROM sk_sagas WHERE id = ?", p, 1, &v);
    if (st == SK_ENOTFOUND) {
        return SK_FAIL(SK_ENOTFOUND, "sk_saga_get_state: saga %.80s not found", saga_id);
    }
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_saga_get_state");
    }
    if (v < SK_SAGA_RUNNING || v > SK_SAGA_FAILED) {
        return SK_FAIL(SK_EPROTO, "sk_saga_get_state: saga %.80s: stored state %lld is not 0..3",
                       saga_id, (long long)v);
    }
    *state = (sk_saga_state)v;
    return SK_OK;
}

sk_status sk_saga_count(sk_tx *tx, int64_t counts[4])
{
    sk_rows *rows = NULL;
    sk_status st;

    if (tx == NULL || counts == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_count: %s must not be NULL",
                       tx == NULL ? "tx" : "counts");
    }
    for (int i = 0; i < 4; i++) {
        counts[i] = 0;
    }
    st = sk_tx_query(tx, "SELECT state, COUNT(*) FROM sk_sagas GROUP BY state", NULL, 0, &rows);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_saga_count");
    }
    while ((st = sk_rows_next(rows)) == SK_OK) {
        int64_t s = sk_rows_int(rows, 0);
        if (s >= 0 && s < 4) {
            counts[s] = sk_rows_int(rows, 1);
        }
    }
    sk_rows_close(rows);
    if (st != SK_ENOTFOUND) {
        for (int i = 0; i < 4; i++) {
            counts[i] = 0;
        }
        return SK_WRAP(st, "sk_saga_count");
    }
    return SK_OK;
}
