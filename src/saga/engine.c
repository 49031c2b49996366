/* SPDX-License-Identifier: MIT */
/*
 * Saga engine: the registry of definitions (immutable once started), one
 * reply consumer per reply-subject family, and the deadline scanner thread.
 * The scanner only reads and submits units of work; every state change runs
 * on the store's writer thread (machine.c), so the scanner and the reply
 * consumers never race on an instance: each unit re-checks what it read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga/saga_int.h"

/* Log a pthread failure and abort: these only fail on programming errors. */
static void check_pthread(int rc, const char *what)
{
    if (rc != 0) {
        SK_LOG_ERROR("saga: %s failed: %s", what, strerror(rc));
        abort();
    }
}

static int64_t default_clock(void *ctx)
{
    (void)ctx;
    return sk_time_now_ms();
}

int64_t sk__saga_now_ms(const sk_saga_engine *e)
{
    return e->clock(e->clock_ctx);
}

void sk__saga_engine_set_clock(sk_saga_engine *e, int64_t (*clock)(void *ctx), void *ctx)
{
    if (e == NULL) {
        return;
    }
    e->clock = clock != NULL ? clock : default_clock;
    e->clock_ctx = clock != NULL ? ctx : NULL;
}

/* ---------------------------------------------------------------- names */

static bool is_type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* A NATS subject for publishing: printable ASCII, no spaces or wildcards, no empty token. */
static bool is_plain_subject(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 255 || s[0] == '.' || s[len - 1] == '.') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '*' || c == '>') {
            return false;
        }
        if (c == '.' && s[i + 1] == '.') {
            return false;
        }
    }
    return true;
}

sk_status sk__saga_reply_token(const char *reply_subject, char *out, size_t out_size)
{
    const char *dot;
    size_t n;

    if (out != NULL && out_size > 0) {
        out[0] = '\0';
    }
    if (reply_subject == NULL || out == NULL || out_size == 0) {
        return SK_FAIL(SK_EINVAL, "reply_subject must not be NULL");
    }
    if (!is_plain_subject(reply_subject)) {
        return SK_FAIL(SK_EINVAL,
                       "reply_subject: expected a NATS subject without spaces or wildcards, got "
                       "\"%.80s\"",
                       reply_subject);
    }
    dot = strchr(reply_subject, '.');
    if (dot == NULL || strncmp(dot, ".replies.", 9) != 0 || dot[9] == '\0') {
        return SK_FAIL(SK_EINVAL,
                       "reply_subject: expected \"<context>.replies.<name>\", got \"%.80s\"",
                       reply_subject);
    }
    n = (size_t)(dot - reply_subject);
    if (n + 1 > out_size) {
        return SK_FAIL(SK_EINVAL, "reply_subject: first token longer than %zu bytes", out_size - 1);
    }
    memcpy(out, reply_subject, n);
    out[n] = '\0';
    return SK_OK;
}

void sk__saga_durable_base(const char *source, char *out, size_t out_size)
{
    static const char suffix[] = "-saga-replies";
    const char *name = "";
    size_t n = 0;

    if (out == NULL || out_size == 0) {
        return;
    }
    if (source != NULL) {
        const char *slash = strrchr(source, '/');
        name = slash != NULL && slash[1] != '\0' ? slash + 1 : source;
    }
    for (; n < 64 && n + sizeof(suffix) < out_size && name[n] != '\0'; n++) {
        out[n] = is_type_char(name[n]) && name[n] != '.' ? name[n] : '_';
    }
    if (n == 0 && sizeof(suffix) + 4 < out_size) {
        memcpy(out, "saga", 4); /* a source made of slashes only */
        n = 4;
    }
    out[n] = '\0';
    if (n + sizeof(suffix) <= out_size) {
        memcpy(out + n, suffix, sizeof(suffix));
    }
}

/* ---------------------------------------------------------------- definitions */

static sk_status check_step(const sk_saga_def *def, size_t i)
{
    const sk_saga_step *s = &def->steps[i];
    const char *t = def->type;

    if (s->name == NULL || s->name[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "saga %s: steps[%zu].name must be a non-empty string", t, i);
    }
    if ((s->command_subject == NULL) == (s->local == NULL)) {
        return SK_FAIL(SK_EINVAL,
                       "saga %s: steps[%zu] (%s): set exactly one of command_subject and local", t,
                       i, s->name);
    }
    if (s->command_subject != NULL) {
        if (!is_plain_subject(s->command_subject)) {
            return SK_FAIL(SK_EINVAL,
                           "saga %s: steps[%zu].command_subject: expected a NATS subject without "
                           "spaces or wildcards, got \"%.80s\"",
                           t, i, s->command_subject);
        }
        if (s->command_type == NULL || s->command_type[0] == '\0' ||
            strlen(s->command_type) > SK_ENVELOPE_MAX_ATTR) {
            return SK_FAIL(SK_EINVAL, "saga %s: steps[%zu].command_type must be 1..%d bytes", t, i,
                           SK_ENVELOPE_MAX_ATTR);
        }
    } else if (s->is_retried_until_done) {
        return SK_FAIL(SK_EINVAL, "saga %s: steps[%zu].is_retried_until_done needs a command step",
                       t, i);
    }
    if ((s->compensation_subject == NULL) != (s->compensation_type == NULL)) {
        return SK_FAIL(
            SK_EINVAL,
            "saga %s: steps[%zu]: compensation_subject and compensation_type go together", t, i);
    }
    if (s->compensation_subject != NULL) {
        if (!is_plain_subject(s->compensation_subject)) {
            return SK_FAIL(SK_EINVAL,
                           "saga %s: steps[%zu].compensation_subject: expected a NATS subject "
                           "without spaces or wildcards, got \"%.80s\"",
                           t, i, s->compensation_subject);
        }
        if (s->compensation_type[0] == '\0' ||
            strlen(s->compensation_type) > SK_ENVELOPE_MAX_ATTR) {
            return SK_FAIL(SK_EINVAL, "saga %s: steps[%zu].compensation_type must be 1..%d bytes",
                           t, i, SK_ENVELOPE_MAX_ATTR);
        }
    } else if (s->build_compensation != NULL) {
        return SK_FAIL(SK_EINVAL,
                       "saga %s: steps[%zu].build_compensation set without compensation_subject", t,
                       i);
    }
    if (s->deadline_ms < 0) {
        return SK_FAIL(SK_EINVAL, "saga %s: steps[%zu].deadline_ms must be >= 0, got %lld", t, i,
                       (long long)s->deadline_ms);
    }
    return SK_OK;
}

sk_status sk__saga_def_check(const sk_saga_def *def)
{
    char token[SK_ENVELOPE_MAX_ATTR + 1];
    size_t type_len;
    sk_status st;

    if (def == NULL) {
        return SK_FAIL(SK_EINVAL, "saga definition must not be NULL");
    }
    type_len = def->type != NULL ? strlen(def->type) : 0;
    if (type_len == 0 || type_len > SK__SAGA_MAX_TYPE) {
        return SK_FAIL(SK_EINVAL, "saga definition: type must be 1..%d bytes", SK__SAGA_MAX_TYPE);
    }
    for (size_t i = 0; i < type_len; i++) {
        if (!is_type_char(def->type[i])) {
            return SK_FAIL(SK_EINVAL,
                           "saga definition: type: expected [A-Za-z0-9_.-], got \"%.80s\"",
                           def->type);
        }
    }
    if (def->version < 1) {
        return SK_FAIL(SK_EINVAL, "saga %s: version must be >= 1, got %d", def->type, def->version);
    }
    st = sk__saga_reply_token(def->reply_subject, token, sizeof(token));
    if (st != SK_OK) {
        return SK_WRAP(st, "saga %s", def->type);
    }
    if (def->steps == NULL || def->n_steps == 0 || def->n_steps > 1000) {
        return SK_FAIL(SK_EINVAL, "saga %s: expected 1..1000 steps, got %zu", def->type,
                       def->steps == NULL ? (size_t)0 : def->n_steps);
    }
    for (size_t i = 0; i < def->n_steps; i++) {
        st = check_step(def, i);
        if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

const sk_saga_def *sk__saga_def_find(const sk_saga_engine *e, const char *type, int version)
{
    for (size_t i = 0; i < e->n_defs; i++) {
        if (e->defs[i]->version == version && strcmp(e->defs[i]->type, type) == 0) {
            return e->defs[i];
        }
    }
    return NULL;
}

const sk_saga_def *sk__saga_def_latest(const sk_saga_engine *e, const char *type)
{
    const sk_saga_def *best = NULL;

    for (size_t i = 0; i < e->n_defs; i++) {
        if (strcmp(e->defs[i]->type, type) == 0 &&
            (best == NULL || e->defs[i]->version > best->version)) {
            best = e->defs[i];
        }
    }
    return best;
}

/* ---------------------------------------------------------------- lifecycle */

sk_status sk_saga_engine_create(sk_saga_engine **out,
                                sk_store *store,
                                sk_bus *bus,
                                sk_metrics *metrics,
                                const char *source,
                                const char *reply_stream)
{
    sk_saga_engine *e = NULL;
    pthread_condattr_t ca;
    char durable[SK__SAGA_MAX_DURABLE + 1];
    sk_status st = SK_OK;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_engine_create: out must not be NULL");
    }
    *out = NULL;
    if (store == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_engine_create: store must not be NULL");
    }
    if (source == NULL || source[0] == '\0' || strlen(source) > SK_ENVELOPE_MAX_ATTR) {
        return SK_FAIL(SK_EINVAL, "sk_saga_engine_create: source must be 1..%d bytes",
                       SK_ENVELOPE_MAX_ATTR);
    }
    if (reply_stream == NULL || reply_stream[0] == '\0' || strlen(reply_stream) > 255 ||
        strpbrk(reply_stream, " .*>/\\\t\r\n") != NULL) {
        return SK_FAIL(SK_EINVAL,
                       "sk_saga_engine_create: reply_stream must be a JetStream stream name "
                       "(1..255 bytes, no spaces, '.', '*', '>', '/')");
    }
    e = sk_calloc(1, sizeof(*e));
    if (e == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_saga_engine_create: allocating the engine");
    }
    check_pthread(pthread_mutex_init(&e->mu, NULL), "pthread_mutex_init");
    check_pthread(pthread_condattr_init(&ca), "pthread_condattr_init");
    check_pthread(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    check_pthread(pthread_cond_init(&e->cond, &ca), "pthread_cond_init");
    pthread_condattr_destroy(&ca);
    e->store = store;
    e->bus = bus;
    e->metrics = metrics;
    e->clock = default_clock;
    e->last_warn_ms = INT64_MIN;
    sk__saga_durable_base(source, durable, sizeof(durable));
    e->source = sk_strdup(source);
    e->reply_stream = sk_strdup(reply_stream);
    e->durable_base = sk_strdup(durable);
    if (e->source == NULL || e->reply_stream == NULL || e->durable_base == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_saga_engine_create: copying names");
        goto out;
    }
    if (metrics != NULL) {
        e->timeouts = sk_metrics_counter(metrics, "sk_saga_timeouts_total",
                                         "Saga step and compensation deadlines that expired", NULL);
        if (e->timeouts == NULL) {
            st = SK_WRAP(SK_ENOMEM, "sk_saga_engine_create: registering metrics");
            goto out;
        }
    }
    *out = e;
    e = NULL;
out:
    sk_saga_engine_destroy(e);
    return st;
}

void sk_saga_engine_destroy(sk_saga_engine *e)
{
    if (e == NULL) {
        return;
    }
    sk_saga_engine_stop(e);
    sk_free(e->families);
    sk_free(e->defs);
    sk_free(e->source);
    sk_free(e->reply_stream);
    sk_free(e->durable_base);
    check_pthread(pthread_cond_destroy(&e->cond), "pthread_cond_destroy");
    check_pthread(pthread_mutex_destroy(&e->mu), "pthread_mutex_destroy");
    sk_free(e);
}

sk_status sk_saga_engine_register(sk_saga_engine *e, const sk_saga_def *def)
{
    sk_status st;

    if (e == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_engine_register: e must not be NULL");
    }
    st = sk__saga_def_check(def);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_saga_engine_register");
    }
    if (e->has_started) {
        return SK_FAIL(SK_ESTATE, "sk_saga_engine_register: saga %s: the engine has started",
                       def->type);
    }
    if (sk__saga_def_find(e, def->type, def->version) != NULL) {
        return SK_FAIL(SK_EEXIST, "sk_saga_engine_register: saga %s version %d already registered",
                       def->type, def->version);
    }
    if (e->n_defs == e->cap_defs) {
        size_t cap = e->cap_defs == 0 ? 4 : e->cap_defs * 2;
        const sk_saga_def **defs = sk_realloc(e->defs, cap * sizeof(*defs));
        if (defs == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_saga_engine_register: growing the registry");
        }
        e->defs = defs;
        e->cap_defs = cap;
    }
    e->defs[e->n_defs++] = def;
    return SK_OK;
}

/* Group the registered reply subjects by first token (one consumer each). */
static sk_status families_build(sk_saga_engine *e)
{
    char token[SK_ENVELOPE_MAX_ATTR + 1];

    sk_free(e->families);
    e->families = NULL;
    e->n_families = 0;
    if (e->n_defs == 0) {
        return SK_OK;
    }
    e->families = sk_calloc(e->n_defs, sizeof(*e->families));
    if (e->families == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_saga_engine_start: allocating reply consumers");
    }
    for (size_t i = 0; i < e->n_defs; i++) {
        bool is_known = false;
        /* Checked at registration; cannot fail here. */
        SK_IGNORE(sk__saga_reply_token(e->defs[i]->reply_subject, token, sizeof(token)));
        for (size_t j = 0; j < e->n_families; j++) {
            is_known = is_known || strcmp(e->families[j].token, token) == 0;
        }
        if (!is_known) {
            sk__saga_family *f = &e->families[e->n_families++];
            snprintf(f->token, sizeof(f->token), "%s", token);
            snprintf(f->filter, sizeof(f->filter), "%s.replies.>", token);
        }
    }
    for (size_t j = 0; j < e->n_families; j++) {
        sk__saga_family *f = &e->families[j];
        if (e->n_families == 1) {
            snprintf(f->durable, sizeof(f->durable), "%s", e->durable_base);
        } else {
            /* Several families need distinct durables; the token makes them stable. */
            int n = snprintf(f->durable, sizeof(f->durable), "%s-", e->durable_base);
            for (size_t k = 0; f->token[k] != '\0' && (size_t)n + 1 < sizeof(f->durable); k++) {
                char c = f->token[k];
                f->durable[n++] = is_type_char(c) && c != '.' ? c : '_';
            }
            f->durable[n] = '\0';
        }
    }
    return SK_OK;
}

/* Log a scanner failure at most every 10 s. */
static void scanner_warn(sk_saga_engine *e)
{
    int64_t now = sk_time_mono_ms();
    bool is_due;

    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    is_due = e->last_warn_ms == INT64_MIN || now - e->last_warn_ms >= 10000;
    if (is_due) {
        e->last_warn_ms = now;
    }
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    if (is_due) {
        SK_LOG_WARN("saga: deadline scan failed: %s", sk_error_message());
    }
}

static void *scanner_main(void *arg)
{
    sk_saga_engine *e = arg;
    struct timespec ts;

    sk_thread_name("sk-saga-scan");
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    while (!e->is_stopping) {
        /* Scan again only once the previous scan's units are done, so that no
         * instance is handled twice for the same expiry. */
        if (e->n_pending == 0) {
            sk_status st;
            check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
            st = sk__saga_scan(e, sk__saga_now_ms(e), NULL);
            if (st != SK_OK) {
                scanner_warn(e);
            }
            check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
            if (e->is_stopping) {
                break;
            }
        }
        sk_time_mono_deadline(SK__SAGA_SCAN_INTERVAL_MS, &ts);
        int rc = pthread_cond_timedwait(&e->cond, &e->mu, &ts);
        if (rc != 0 && rc != ETIMEDOUT) {
            check_pthread(rc, "pthread_cond_timedwait");
        }
    }
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    return NULL;
}

static void consumers_stop(sk_saga_engine *e)
{
    for (size_t j = 0; j < e->n_families; j++) {
        sk_consumer_stop(e->families[j].consumer);
        e->families[j].consumer = NULL;
    }
}

sk_status sk_saga_engine_start(sk_saga_engine *e)
{
    sk_status st = SK_OK;
    int rc;

    if (e == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_saga_engine_start: e must not be NULL");
    }
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    bool is_running = e->is_running;
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    if (is_running) {
        return SK_FAIL(SK_ESTATE, "sk_saga_engine_start: already started");
    }
    e->has_started = true;
    st = families_build(e);
    if (st != SK_OK) {
        goto out;
    }
    for (size_t j = 0; e->bus != NULL && j < e->n_families; j++) {
        sk__saga_family *f = &e->families[j];
        sk_consumer_config cc = {
            .stream = e->reply_stream,
            .durable = f->durable,
            .filter_subject = f->filter,
            .handler = sk__saga_handle_reply,
            .ctx = e,
            /*
             * Replies are correlated by ce-sagastep and stale ones ignored, so
             * they need no ordering; parking them per saga (ce-subject) would
             * hold a compensation's answer behind a dead-lettered reply and
             * leave that saga compensating until an operator redrives it. A
             * reply that keeps failing is dead-lettered on its own, and its
             * step times out and is compensated like a lost reply.
             */
            .order = SK_CONSUMER_ORDER_NONE,
        };
        st = sk_consumer_start(&f->consumer, e->bus, e->store, e->metrics, &cc);
        if (st != SK_OK) {
            st =
                SK_WRAP(st, "sk_saga_engine_start: reply consumer %s on %s", f->durable, f->filter);
            goto out;
        }
    }
    e->is_stopping = false;
    rc = pthread_create(&e->scanner, NULL, scanner_main, e);
    if (rc != 0) {
        st = SK_FAIL(SK_EINTERNAL, "sk_saga_engine_start: starting the deadline scanner: %s",
                     strerror(rc));
        goto out;
    }
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    e->is_running = true;
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
out:
    if (st != SK_OK) {
        consumers_stop(e);
    }
    return st;
}

void sk_saga_engine_stop(sk_saga_engine *e)
{
    bool was_running;

    if (e == NULL) {
        return;
    }
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    was_running = e->is_running;
    e->is_stopping = true;
    check_pthread(pthread_cond_broadcast(&e->cond), "pthread_cond_broadcast");
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
    if (was_running) {
        check_pthread(pthread_join(e->scanner, NULL), "pthread_join");
        consumers_stop(e);
    }
    /* Queued deadline units point at the engine: wait until they are done. */
    sk__saga_wait_pending(e);
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    e->is_running = false;
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
}

/* ---------------------------------------------------------------- scanning */

typedef struct scan_row {
    char *id;
    sk_saga_state state;
    int64_t seq;
} scan_row;

typedef struct scan_read {
    int64_t now_ms;
    scan_row rows[SK__SAGA_SCAN_BATCH];
    size_t n_rows;
} scan_read;

typedef struct deadline_job {
    sk_saga_engine *e;
    char *id;
    sk_saga_state state;
    int64_t seq;
    int64_t now_ms;
} deadline_job;

static sk_status scan_read_fn(sk_tx *tx, void *ctx)
{
    scan_read *r = ctx;
    sk_rows *rows = NULL;
    sk_db_value p[2] = { SK_DB_INT_V(r->now_ms), SK_DB_INT_V(SK__SAGA_SCAN_BATCH) };
    sk_status st;

    st =
        sk_tx_query(tx,
                    "SELECT id, state, seq FROM sk_sagas WHERE state IN (0, 1) AND deadline_ms < ? "
                    "ORDER BY deadline_ms LIMIT ?",
                    p, 2, &rows);
    if (st != SK_OK) {
        return st;
    }
    while (r->n_rows < SK__SAGA_SCAN_BATCH && (st = sk_rows_next(rows)) == SK_OK) {
        scan_row *row = &r->rows[r->n_rows];
        row->id = sk_strdup(sk_rows_text(rows, 0, NULL));
        if (row->id == NULL) {
            st = SK_FAIL(SK_ENOMEM, "saga scan: copying an id");
            break;
        }
        row->state = (sk_saga_state)sk_rows_int(rows, 1);
        row->seq = sk_rows_int(rows, 2);
        r->n_rows++;
    }
    sk_rows_close(rows);
    return st == SK_ENOTFOUND ? SK_OK : st;
}

static sk_status deadline_work(sk_tx *tx, void *ctx)
{
    deadline_job *j = ctx;
    return sk__saga_handle_deadline(tx, j->e, j->id, j->state, j->seq, j->now_ms);
}

static void deadline_done(sk_status st, const char *message, void *ctx)
{
    deadline_job *j = ctx;
    sk_saga_engine *e = j->e;

    if (st != SK_OK) {
        SK_LOG_WARN("saga %s: handling an expired deadline failed (%s): %s; retried on the next "
                    "scan",
                    j->id, sk_status_name(st), message);
    }
    sk_free(j->id);
    sk_free(j);
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    e->n_pending--;
    check_pthread(pthread_cond_broadcast(&e->cond), "pthread_cond_broadcast");
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
}

sk_status sk__saga_scan(sk_saga_engine *e, int64_t now_ms, size_t *n_submitted)
{
    scan_read *r = NULL;
    size_t n = 0;
    sk_status st;

    if (n_submitted != NULL) {
        *n_submitted = 0;
    }
    if (e == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__saga_scan: e must not be NULL");
    }
    r = sk_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SK_FAIL(SK_ENOMEM, "saga scan: allocating");
    }
    r->now_ms = now_ms;
    st = sk_store_read(e->store, scan_read_fn, r);
    if (st != SK_OK) {
        st = SK_WRAP(st, "saga scan: reading expired deadlines");
    }
    for (size_t i = 0; st == SK_OK && i < r->n_rows; i++) {
        deadline_job *j = sk_calloc(1, sizeof(*j));
        if (j == NULL) {
            st = SK_FAIL(SK_ENOMEM, "saga scan: allocating a job");
            break;
        }
        j->e = e;
        j->id = r->rows[i].id;
        r->rows[i].id = NULL; /* the job owns it now */
        j->state = r->rows[i].state;
        j->seq = r->rows[i].seq;
        j->now_ms = now_ms;
        check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
        e->n_pending++;
        check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
        st = sk_store_submit(e->store, deadline_work, deadline_done, j);
        if (st != SK_OK) {
            check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
            e->n_pending--;
            check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
            sk_free(j->id);
            sk_free(j);
            st = SK_WRAP(st, "saga scan: submitting a deadline unit");
            break;
        }
        n++;
    }
    for (size_t i = 0; i < r->n_rows; i++) {
        sk_free(r->rows[i].id);
    }
    sk_free(r);
    if (n_submitted != NULL) {
        *n_submitted = n;
    }
    return st;
}

void sk__saga_wait_pending(sk_saga_engine *e)
{
    check_pthread(pthread_mutex_lock(&e->mu), "pthread_mutex_lock");
    while (e->n_pending > 0) {
        check_pthread(pthread_cond_wait(&e->cond, &e->mu), "pthread_cond_wait");
    }
    check_pthread(pthread_mutex_unlock(&e->mu), "pthread_mutex_unlock");
}
