/* SPDX-License-Identifier: MIT */
/*
 * Projections: a durable JetStream consumer whose handler applies an event to
 * a read model and advances the projection's checkpoint in the same unit of
 * work, so the read model and its checkpoint are always durable together.
 * The checkpoint only moves forward (a redelivered older event cannot move
 * it back).
 */
#include <stdio.h>
#include <string.h>

#include "cqrs/cqrs_int.h"

struct sk_projection {
    char *name;
    char *stream;
    char *filter_subject;
    char *durable;        /* "<name>-<stream lower-cased>" */
    char *checkpoint_key; /* "<name>:<stream>" */
    const sk_upcasters *upcasters;
    sk_projection_fn apply;
    void *ctx;
    sk_counter *applied; /* NULL without metrics */
    sk_consumer *consumer;
};

static const char checkpoint_upsert_sql[] =
    "INSERT INTO sk_checkpoints (projection, stream_seq, updated_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (projection) DO UPDATE SET"
    " stream_seq = CASE WHEN excluded.stream_seq > sk_checkpoints.stream_seq"
    " THEN excluded.stream_seq ELSE sk_checkpoints.stream_seq END,"
    " updated_ms = excluded.updated_ms";

sk_status sk__projection_handle(sk_tx *tx, const sk_message *m, void *ctx)
{
    sk_projection *p = ctx;
    sk_status st;

    st = p->apply(tx, m, p->ctx);
    if (st != SK_OK) {
        return SK_WRAP(st, "projection %s: applying stream sequence %llu", p->name,
                       (unsigned long long)m->stream_seq);
    }
    if (m->stream_seq > (uint64_t)INT64_MAX) {
        return SK_FAIL(SK_EPROTO, "projection %s: stream sequence %llu out of range", p->name,
                       (unsigned long long)m->stream_seq);
    }
    {
        const sk_db_value params[] = { SK_DB_TEXT_V(p->checkpoint_key),
                                       SK_DB_INT_V((int64_t)m->stream_seq),
                                       SK_DB_INT_V(sk_time_now_ms()) };
        st = sk_tx_exec(tx, checkpoint_upsert_sql, params, 3, NULL);
    }
    if (st != SK_OK) {
        return SK_WRAP(st, "projection %s: advancing the checkpoint", p->name);
    }
    if (p->applied != NULL) {
        sk_counter_add(p->applied, 1);
    }
    return SK_OK;
}

static void projection_free(sk_projection *p)
{
    if (p == NULL) {
        return;
    }
    sk_free(p->name);
    sk_free(p->stream);
    sk_free(p->filter_subject);
    sk_free(p->durable);
    sk_free(p->checkpoint_key);
    sk_free(p);
}

sk_status
sk__projection_build(sk_projection **out, sk_metrics *metrics, const sk_projection_config *cfg)
{
    sk_status st = SK_OK;
    sk_projection *p = NULL;

    *out = NULL;
    if (cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_start: cfg must not be NULL");
    }
    if (!sk_name_is_valid(cfg->name, SK__PROJECTION_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_projection_start: cfg.name must be 1..%d bytes of [A-Za-z0-9_-]",
                       SK__PROJECTION_NAME_MAX);
    }
    if (!sk_name_is_valid(cfg->stream, SK__PROJECTION_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_projection_start: cfg.stream must be 1..%d bytes of [A-Za-z0-9_-]",
                       SK__PROJECTION_NAME_MAX);
    }
    if (cfg->filter_subject == NULL || cfg->filter_subject[0] == '\0') {
        return SK_FAIL(SK_EINVAL,
                       "sk_projection_start: cfg.filter_subject must be a non-empty subject");
    }
    if (cfg->apply == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_start: cfg.apply must not be NULL");
    }
    p = sk_calloc(1, sizeof(*p));
    if (p == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_projection_start: allocating");
        goto out;
    }
    p->apply = cfg->apply;
    p->ctx = cfg->ctx;
    p->name = sk_strdup(cfg->name);
    p->stream = sk_strdup(cfg->stream);
    p->filter_subject = sk_strdup(cfg->filter_subject);
    p->durable = sk__projection_durable_name(cfg->name, cfg->stream);
    p->checkpoint_key = sk_asprintf("%s:%s", cfg->name, cfg->stream);
    if (p->name == NULL || p->stream == NULL || p->filter_subject == NULL || p->durable == NULL ||
        p->checkpoint_key == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_projection_start: copying the configuration");
        goto out;
    }
    if (metrics != NULL) {
        char labels[160];
        snprintf(labels, sizeof(labels), "projection=\"%s\",stream=\"%s\"", p->name, p->stream);
        p->applied = sk_metrics_counter(metrics, "sk_projection_events_applied_total",
                                        "Events applied by projections", labels);
        if (p->applied == NULL) {
            st = SK_WRAP(sk_error_status() == SK_OK ? SK_ENOMEM : sk_error_status(),
                         "sk_projection_start: metrics");
            goto out;
        }
    }
    *out = p;
    p = NULL;
out:
    projection_free(p);
    return st;
}

const char *sk__projection_durable(const sk_projection *p)
{
    return p->durable;
}

char *sk__projection_durable_name(const char *name, const char *stream)
{
    char *durable = sk_asprintf("%s-%s", name, stream);

    if (durable == NULL) {
        return NULL;
    }
    for (char *c = durable + strlen(name) + 1; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    return durable;
}

sk_status sk_projection_start(sk_projection **out,
                              sk_bus *bus,
                              sk_store *store,
                              sk_metrics *metrics,
                              const sk_projection_config *cfg)
{
    sk_status st = SK_OK;
    sk_projection *p = NULL;
    sk_consumer_config cc;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_start: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL || store == NULL || cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_start: bus, store and cfg must not be NULL");
    }
    st = sk__projection_build(&p, metrics, cfg);
    if (st != SK_OK) {
        goto out;
    }
    memset(&cc, 0, sizeof(cc));
    cc.stream = p->stream;
    cc.durable = p->durable;
    cc.filter_subject = p->filter_subject;
    cc.handler = sk__projection_handle;
    cc.ctx = p;
    cc.upcasters = cfg->upcasters;
    st = sk_consumer_start(&p->consumer, bus, store, metrics, &cc);
    if (st != SK_OK) {
        st = SK_WRAP(st, "projection %s", p->name);
        goto out;
    }
    SK_LOG_INFO("projection %s started on stream %s (durable %s, subject %s)", p->name, p->stream,
                p->durable, p->filter_subject);
    *out = p;
    p = NULL;
out:
    projection_free(p);
    return st;
}

void sk_projection_stop(sk_projection *p)
{
    if (p == NULL) {
        return;
    }
    sk_consumer_stop(p->consumer);
    projection_free(p);
}

sk_status
sk_projection_checkpoint_get(sk_tx *tx, const char *name, const char *stream, uint64_t *stream_seq)
{
    sk_status st;
    char key[2 * SK__PROJECTION_NAME_MAX + 2];
    int64_t v = 0;

    if (stream_seq == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_checkpoint_get: stream_seq must not be NULL");
    }
    *stream_seq = 0;
    if (tx == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_projection_checkpoint_get: tx must not be NULL");
    }
    if (!sk_name_is_valid(name, SK__PROJECTION_NAME_MAX) ||
        !sk_name_is_valid(stream, SK__PROJECTION_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_projection_checkpoint_get: name and stream must be 1..%d "
                       "bytes of [A-Za-z0-9_-]",
                       SK__PROJECTION_NAME_MAX);
    }
    snprintf(key, sizeof(key), "%s:%s", name, stream);
    {
        const sk_db_value params[] = { SK_DB_TEXT_V(key) };
        st = sk_tx_query_int(tx, "SELECT stream_seq FROM sk_checkpoints WHERE projection = ?",
                             params, 1, &v);
    }
    if (st == SK_ENOTFOUND) {
        return SK_FAIL(SK_ENOTFOUND, "projection %s: no checkpoint on stream %s yet", name, stream);
    }
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_projection_checkpoint_get");
    }
    *stream_seq = v < 0 ? 0 : (uint64_t)v;
    return SK_OK;
}
