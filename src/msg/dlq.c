/* SPDX-License-Identifier: MIT */
/*
 * The system-wide view of dead letters: every consumer of every service
 * publishes a "DeadLetter" record on dlq.<durable> (stream DEAD_LETTERS)
 * through its outbox, and a "DeadLetterResolved" record once a redrive of it
 * was handled. sk_dlq_list_load reads the stream and folds these into one
 * entry per dead letter with its state; sk_dlq_redrive publishes a dead
 * letter's original message again on its original subject, marked with
 * SK_DLQ_HDR_REDRIVE, for the owning consumer to handle (consumer.c).
 */
#include <string.h>

#include "msg/msg_int.h"

/* Time allowed for each JetStream request. */
#define REQUEST_TIMEOUT_MS 5000

typedef struct item {
    sk_dead_letter d;
    json_t *record; /* the DeadLetter record; the strings of d point into it */
} item;

struct sk_dlq_list {
    item *items;
    size_t n;
    size_t cap;
};

size_t sk_dlq_list_count(const sk_dlq_list *l)
{
    return l != NULL ? l->n : 0;
}

const sk_dead_letter *sk_dlq_list_at(const sk_dlq_list *l, size_t i)
{
    return l != NULL && i < l->n ? &l->items[i].d : NULL;
}

static item *item_find(const sk_dlq_list *l, const char *id)
{
    for (size_t i = 0; l != NULL && id != NULL && i < l->n; i++) {
        if (strcmp(l->items[i].d.id, id) == 0) {
            return &l->items[i];
        }
    }
    return NULL;
}

const sk_dead_letter *sk_dlq_list_find(const sk_dlq_list *l, const char *id)
{
    item *it = item_find(l, id);
    return it != NULL ? &it->d : NULL;
}

void sk_dlq_list_destroy(sk_dlq_list *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        json_decref(l->items[i].record);
    }
    sk_free(l->items);
    sk_free(l);
}

static const char *str_of(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

/* Add a DeadLetter record (takes @p record). Records without a valid id are skipped. */
static sk_status add_dead(sk_dlq_list *l, json_t *record, uint64_t seq)
{
    json_t *hdrs = json_object_get(record, "headers");
    const char *id = str_of(record, "id");
    item *it;

    if (strlen(id) != SK_UUID_LEN - 1 || item_find(l, id) != NULL) {
        json_decref(record);
        return SK_OK;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : l->cap * 2;
        item *grown = sk_realloc(l->items, cap * sizeof(*grown));
        if (grown == NULL) {
            json_decref(record);
            return SK_FAIL(SK_ENOMEM, "sk_dlq_list_load: growing the list");
        }
        l->items = grown;
        l->cap = cap;
    }
    it = &l->items[l->n++];
    memset(it, 0, sizeof(*it));
    it->record = record;
    snprintf(it->d.id, sizeof(it->d.id), "%s", id);
    it->d.consumer = str_of(record, "consumer");
    it->d.nats_subject = str_of(record, "nats_subject");
    it->d.msg_id = str_of(record, "msg_id");
    it->d.error = str_of(record, "error");
    it->d.redrive_of = str_of(record, "redrive_of");
    it->d.replaced_by = "";
    /* Records written before type and aggregate were fields: take them from the headers. */
    it->d.type = json_is_string(json_object_get(record, "type")) ? str_of(record, "type")
                                                                 : str_of(hdrs, SK__HDR_TYPE);
    it->d.aggregate = json_is_string(json_object_get(record, "aggregate"))
                          ? str_of(record, "aggregate")
                          : str_of(hdrs, SK__HDR_SUBJECT);
    it->d.schema_version = (int)json_integer_value(json_object_get(record, "schema_version"));
    it->d.deliveries = json_integer_value(json_object_get(record, "deliveries"));
    it->d.time_ms = json_integer_value(json_object_get(record, "time_ms"));
    it->d.state = SK_DEAD_LETTER_OPEN;
    it->d.dlq_seq = seq;
    return SK_OK;
}

/* Read one record of the stream: *type is "DeadLetter" or "DeadLetterResolved" (or another). */
static sk_status
read_record(jsCtx *js, uint64_t seq, json_t **record, char *type, size_t type_size, bool *found)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    const char *t = NULL;
    sk_status st = SK_OK;
    natsStatus s;

    *record = NULL;
    *found = false;
    type[0] = '\0';
    jsOptions_Init(&o);
    o.Wait = REQUEST_TIMEOUT_MS;
    s = js_GetMsg(&m, js, SK_DLQ_STREAM, seq, &o, &jerr);
    if (s == NATS_NOT_FOUND || jerr == 10037) {
        return SK_OK; /* deleted or purged meanwhile */
    }
    if (s != NATS_OK) {
        return sk__nats_fail(s, jerr, "reading the dead-letter stream");
    }
    if (natsMsgHeader_Get(m, SK__HDR_TYPE, &t) == NATS_OK && t != NULL) {
        snprintf(type, type_size, "%s", t);
    }
    {
        int len = natsMsg_GetDataLength(m);
        const char *data = natsMsg_GetData(m);
        /* A record that is not a JSON object is not ours: skip it. */
        if (len > 0 && data != NULL &&
            sk_json_parse_object((sk_slice){ (const uint8_t *)data, (size_t)len }, record) ==
                SK_OK) {
            *found = true;
        }
        sk_error_clear();
    }
    natsMsg_Destroy(m);
    return st;
}

sk_status sk_dlq_list_load(sk_bus *bus, sk_dlq_list **out)
{
    sk__bus_link *link = NULL;
    jsStreamInfo *si = NULL;
    sk_dlq_list *l = NULL;
    json_t *resolved = NULL; /* id -> true */
    jsErrCode jerr = 0;
    jsOptions o;
    sk_status st = SK_OK;
    natsStatus s;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_dlq_list_load: out must not be NULL");
    }
    *out = NULL;
    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_dlq_list_load: bus must not be NULL");
    }
    l = sk_calloc(1, sizeof(*l));
    resolved = json_object();
    if (l == NULL || resolved == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_dlq_list_load: allocating the list");
        goto out;
    }
    link = sk__bus_link_acquire(bus);
    jsOptions_Init(&o);
    o.Wait = REQUEST_TIMEOUT_MS;
    s = js_GetStreamInfo(&si, link->js, SK_DLQ_STREAM, &o, &jerr);
    if (s == NATS_NOT_FOUND || jerr == 10059) {
        goto done; /* no dead letter was ever written */
    }
    if (s != NATS_OK) {
        st = sk__nats_fail(s, jerr, "looking up stream " SK_DLQ_STREAM);
        goto out;
    }
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    if (si->State.Msgs == 0 || last < first) {
        goto done;
    }
    if (last - first >= SK_DLQ_MAX_RECORDS) {
        first = last - SK_DLQ_MAX_RECORDS + 1;
    }
    for (uint64_t seq = first; seq <= last; seq++) {
        json_t *record = NULL;
        char type[64];
        bool found = false;
        if ((st = read_record(link->js, seq, &record, type, sizeof(type), &found)) != SK_OK) {
            goto out;
        }
        if (!found) {
            continue;
        }
        if (strcmp(type, "DeadLetter") == 0) {
            if ((st = add_dead(l, record, seq)) != SK_OK) {
                goto out;
            }
        } else {
            if (strcmp(type, "DeadLetterResolved") == 0 &&
                json_is_string(json_object_get(record, "id"))) {
                SK_IGNORE(json_object_set_new(resolved, str_of(record, "id"), json_true()));
            }
            json_decref(record);
        }
    }
    /* Fold: resolved ones, and ones a later dead letter of their redrive replaces. */
    for (size_t i = 0; i < l->n; i++) {
        sk_dead_letter *d = &l->items[i].d;
        item *older = d->redrive_of[0] != '\0' ? item_find(l, d->redrive_of) : NULL;
        if (older != NULL) {
            older->d.state = SK_DEAD_LETTER_SUPERSEDED;
            older->d.replaced_by = d->id;
        }
    }
    for (size_t i = 0; i < l->n; i++) {
        if (json_object_get(resolved, l->items[i].d.id) != NULL) {
            l->items[i].d.state = SK_DEAD_LETTER_RESOLVED;
        }
    }
done:
    *out = l;
    l = NULL;
out:
    jsStreamInfo_Destroy(si);
    sk__bus_link_release(link);
    json_decref(resolved);
    sk_dlq_list_destroy(l);
    return st;
}

static const char *state_name(sk_dead_letter_state s)
{
    switch (s) {
    case SK_DEAD_LETTER_OPEN:
        return "open";
    case SK_DEAD_LETTER_RESOLVED:
        return "resolved";
    case SK_DEAD_LETTER_SUPERSEDED:
        return "superseded";
    }
    return "unknown";
}

json_t *sk_dead_letter_json(const sk_dead_letter *d)
{
    if (d == NULL) {
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:s, s:I}", "id",
                     d->id, "state", state_name(d->state), "consumer", d->consumer, "subject",
                     d->nats_subject, "type", d->type, "aggregate", d->aggregate, "msg_id",
                     d->msg_id, "deliveries", (json_int_t)d->deliveries, "time_ms",
                     (json_int_t)d->time_ms, "schema_version", d->schema_version, "error", d->error,
                     "redrive_of", d->redrive_of, "replaced_by", d->replaced_by, "dlq_seq",
                     (json_int_t)d->dlq_seq);
}

/* The original data of a record: the JSON "data" re-serialised, or the base64url bytes. */
static sk_status record_data(const json_t *record, const char *id, char **out, size_t *len)
{
    const json_t *data = json_object_get(record, "data");
    const char *b64 = json_string_value(json_object_get(record, "data_base64url"));

    *out = NULL;
    *len = 0;
    if (json_is_true(json_object_get(record, "data_omitted"))) {
        return SK_FAIL(SK_EPROTO,
                       "dead letter %s: its payload was too large to be kept in the record; "
                       "redrive it from the service's sk_dead_letters table",
                       id);
    }
    if (data != NULL) {
        *out = sk_json_dumps(data);
        if (*out == NULL) {
            return SK_FAIL(SK_ENOMEM, "dead letter %s: serialising the data", id);
        }
        *len = strlen(*out);
        return SK_OK;
    }
    if (b64 != NULL) {
        size_t n = strlen(b64);
        *out = sk_malloc(n + 1);
        if (*out == NULL) {
            return SK_FAIL(SK_ENOMEM, "dead letter %s: decoding the data", id);
        }
        if (sk_base64url_decode(sk_slice_from_str(b64), (uint8_t *)*out, len) != SK_OK) {
            sk_free(*out);
            *out = NULL;
            return SK_FAIL(SK_EPROTO, "dead letter %s: data_base64url is not base64url", id);
        }
        return SK_OK;
    }
    *out = sk_strdup(""); /* the message had no data */
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "dead letter %s", id);
}

sk_status sk_dlq_redrive(sk_bus *bus, const sk_dlq_list *l, const char *id)
{
    sk__bus_link *link = NULL;
    natsMsg *m = NULL;
    char *data = NULL;
    char msg_id[SK_UUID_LEN + 16];
    size_t len = 0;
    jsErrCode jerr = 0;
    jsPubOptions po;
    sk_status st = SK_OK;
    natsStatus s;
    const item *it;
    const char *key;
    json_t *val;

    if (bus == NULL || l == NULL || id == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_dlq_redrive: bus, l and id must not be NULL");
    }
    it = item_find(l, id);
    if (it == NULL) {
        return SK_FAIL(SK_ENOTFOUND, "no dead letter %.64s (see `skald dlq list`)", id);
    }
    if (it->d.state == SK_DEAD_LETTER_RESOLVED) {
        return SK_FAIL(SK_ESTATE, "dead letter %s was redriven and handled already", id);
    }
    if (it->d.state == SK_DEAD_LETTER_SUPERSEDED) {
        return SK_FAIL(SK_ESTATE,
                       "dead letter %s was redriven and failed again: redrive %s instead", id,
                       it->d.replaced_by);
    }
    const json_t *hdrs = json_object_get(it->record, "headers");
    if (!json_is_object(hdrs) || it->d.nats_subject[0] == '\0') {
        return SK_FAIL(SK_EPROTO, "dead letter %s: the record has no headers or subject", id);
    }
    if ((st = sk__subject_check(it->d.nats_subject, false, "dead letter subject")) != SK_OK) {
        return SK_WRAP(st, "dead letter %s", id);
    }
    if ((st = record_data(it->record, id, &data, &len)) != SK_OK) {
        return st;
    }
    if (len > SK_MAX_MSG_PAYLOAD) {
        st = SK_FAIL(SK_EPROTO, "dead letter %s: payload of %zu bytes is over the limit", id, len);
        goto out;
    }
    s = natsMsg_Create(&m, it->d.nats_subject, NULL, data, (int)len);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "creating the redriven message");
        goto out;
    }
    json_object_foreach ((json_t *)hdrs, key, val) {
        /* The message id and a previous redrive mark are replaced below. */
        if (!json_is_string(val) || strcmp(key, SK__HDR_MSGID) == 0 ||
            strcmp(key, SK_DLQ_HDR_REDRIVE) == 0) {
            continue;
        }
        s = natsMsgHeader_Set(m, key, json_string_value(val));
        if (s != NATS_OK) {
            st = sk__nats_fail(s, 0, "setting a header of the redriven message");
            goto out;
        }
    }
    snprintf(msg_id, sizeof(msg_id), "redrive-%s", id);
    s = natsMsgHeader_Set(m, SK__HDR_MSGID, msg_id);
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, SK_DLQ_HDR_REDRIVE, id);
    }
    if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "setting a header of the redriven message");
        goto out;
    }
    link = sk__bus_link_acquire(bus);
    jsPubOptions_Init(&po);
    po.MaxWait = REQUEST_TIMEOUT_MS;
    s = js_PublishMsg(NULL, link->js, m, &po, &jerr);
    if (s != NATS_OK) {
        st = sk__nats_fail(s, jerr, "publishing the redriven message");
        st = SK_WRAP(st, "dead letter %s on %s", id, it->d.nats_subject);
    }
out:
    natsMsg_Destroy(m);
    sk__bus_link_release(link);
    sk_free(data);
    return st;
}
