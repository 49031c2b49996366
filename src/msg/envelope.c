/* SPDX-License-Identifier: MIT */
/*
 * CloudEvents 1.0 envelope in binary mode over NATS headers: creation,
 * validation, encoding onto a natsMsg, decoding from header pairs, and the
 * JSON form of the headers stored in outbox rows. Decoding never trusts its
 * input: every attribute is checked and copied into caller-owned storage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg/msg_int.h"

/* Most headers accepted in an outbox row's JSON (we write 12 at most). */
#define MAX_JSON_HEADERS 64

/* Latest ce-time accepted: 9999-12-31T23:59:59.999Z. */
#define MAX_TIME_MS 253402300799999LL

void sk_envelope_init(sk_envelope *env,
                      const char *type,
                      const char *source,
                      const char *subject,
                      const char *parent_trace)
{
    if (env == NULL) {
        return;
    }
    memset(env, 0, sizeof(*env));
    sk_uuid7(env->id);
    env->type = type;
    env->source = source;
    env->subject = subject;
    env->time_ms = sk_time_now_ms();
    env->schema_version = 1;
    if (parent_trace != NULL) {
        /* sk_trace_child starts a new trace when the parent is invalid. */
        sk_trace_child(sk_slice_from_str(parent_trace), env->traceparent);
    } else {
        sk_trace_new(env->traceparent);
    }
    env->saga_step = -1;
    env->reply_to = NULL;
}

/* ---------------------------------------------------------------- checks */

/* 1..SK_ENVELOPE_MAX_ATTR bytes, each a visible ASCII character (no spaces). */
static bool attr_is_valid(sk_slice s)
{
    if (s.len == 0 || s.len > SK_ENVELOPE_MAX_ATTR) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < 0x21 || s.ptr[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static sk_status attr_check(const char *value, const char *field)
{
    if (value == NULL) {
        return SK_FAIL(SK_EINVAL, "envelope: %s must not be NULL", field);
    }
    if (!attr_is_valid(sk_slice_from_str(value))) {
        return SK_FAIL(SK_EINVAL,
                       "envelope: %s: expected 1..%d visible ASCII characters, got %zu bytes",
                       field, SK_ENVELOPE_MAX_ATTR, strlen(value));
    }
    return SK_OK;
}

sk_status sk__envelope_validate(const sk_envelope *env)
{
    sk_status st;

    if (env == NULL) {
        return SK_FAIL(SK_EINVAL, "envelope: env must not be NULL");
    }
    if (memchr(env->id, '\0', sizeof(env->id)) == NULL ||
        !sk_uuid_is_valid(sk_slice_from_str(env->id))) {
        return SK_FAIL(SK_EINVAL, "envelope: id: expected a UUID");
    }
    if ((st = attr_check(env->type, "type")) != SK_OK ||
        (st = attr_check(env->source, "source")) != SK_OK ||
        (st = attr_check(env->subject, "subject")) != SK_OK) {
        return st;
    }
    if (env->time_ms < 0 || env->time_ms > MAX_TIME_MS) {
        return SK_FAIL(SK_EINVAL, "envelope: time_ms: expected 0..%lld, got %lld",
                       (long long)MAX_TIME_MS, (long long)env->time_ms);
    }
    if (env->schema_version < 1 || env->schema_version > SK__MAX_SCHEMA_VERSION) {
        return SK_FAIL(SK_EINVAL, "envelope: schema_version: expected 1..%d, got %d",
                       SK__MAX_SCHEMA_VERSION, env->schema_version);
    }
    if (memchr(env->traceparent, '\0', sizeof(env->traceparent)) == NULL ||
        !sk_trace_is_valid(sk_slice_from_str(env->traceparent))) {
        return SK_FAIL(SK_EINVAL, "envelope: traceparent: expected a version-00 traceparent");
    }
    if (env->saga_step < -1 || env->saga_step > SK__MAX_SAGA_STEP) {
        return SK_FAIL(SK_EINVAL, "envelope: saga_step: expected -1..%d, got %d",
                       SK__MAX_SAGA_STEP, env->saga_step);
    }
    if (env->reply_to != NULL && (st = attr_check(env->reply_to, "reply_to")) != SK_OK) {
        return st;
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- RFC 3339 */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool read_digits(sk_slice s, size_t *pos, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (*pos + n > s.len) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s.ptr[*pos + i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    *pos += n;
    *out = v;
    return true;
}

static bool expect_char(sk_slice s, size_t *pos, const char *any)
{
    if (*pos >= s.len || s.ptr[*pos] == '\0' || strchr(any, s.ptr[*pos]) == NULL) {
        return false;
    }
    (*pos)++;
    return true;
}

sk_status sk__rfc3339_parse(sk_slice s, int64_t *epoch_ms)
{
    static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int64_t y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0;
    int64_t sign = 0;
    size_t pos = 0;

    if (epoch_ms == NULL || (s.ptr == NULL && s.len > 0)) {
        return SK_FAIL(SK_EINVAL, "sk__rfc3339_parse: NULL argument");
    }
    *epoch_ms = 0;
    if (!read_digits(s, &pos, 4, &y) || !expect_char(s, &pos, "-") ||
        !read_digits(s, &pos, 2, &mo) || !expect_char(s, &pos, "-") ||
        !read_digits(s, &pos, 2, &d) || !expect_char(s, &pos, "Tt ") ||
        !read_digits(s, &pos, 2, &h) || !expect_char(s, &pos, ":") ||
        !read_digits(s, &pos, 2, &mi) || !expect_char(s, &pos, ":") ||
        !read_digits(s, &pos, 2, &sec)) {
        goto bad;
    }
    if (pos < s.len && s.ptr[pos] == '.') {
        size_t n = 0;
        pos++;
        while (pos < s.len && s.ptr[pos] >= '0' && s.ptr[pos] <= '9') {
            if (n < 3) {
                ms = ms * 10 + (s.ptr[pos] - '0');
            }
            n++;
            pos++;
        }
        if (n == 0 || n > 9) {
            goto bad;
        }
        for (; n < 3; n++) {
            ms *= 10;
        }
    }
    if (pos < s.len && (s.ptr[pos] == 'Z' || s.ptr[pos] == 'z')) {
        pos++;
    } else if (pos < s.len && (s.ptr[pos] == '+' || s.ptr[pos] == '-')) {
        sign = s.ptr[pos] == '+' ? 1 : -1;
        pos++;
        if (!read_digits(s, &pos, 2, &oh) || !expect_char(s, &pos, ":") ||
            !read_digits(s, &pos, 2, &om) || oh > 23 || om > 59) {
            goto bad;
        }
    } else {
        goto bad;
    }
    if (pos != s.len || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60) {
        goto bad;
    }
    {
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int64_t dim = mdays[mo - 1] + (mo == 2 && leap ? 1 : 0);
        if (d > dim) {
            goto bad;
        }
    }
    if (sec == 60) {
        sec = 59; /* a leap second: keep the instant inside its minute */
    }
    {
        int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
        t -= sign * (oh * 3600 + om * 60);
        *epoch_ms = t * 1000 + ms;
    }
    return SK_OK;
bad:
    return SK_FAIL(SK_EPROTO,
                   "expected an RFC 3339 timestamp like 2026-11-25T10:00:00.123Z (%zu bytes given)",
                   s.len);
}

/* ---------------------------------------------------------------- encoding */

/* The header values of an envelope, formatted once for encode and JSON. */
typedef struct env_headers {
    const char *names[12];
    const char *values[12];
    size_t n;
    char time[SK_RFC3339_LEN];
    char schema[16];
    char step[16];
} env_headers;

static sk_status env_headers_build(const sk_envelope *env, env_headers *h)
{
    sk_status st = sk__envelope_validate(env);

    if (st != SK_OK) {
        return st;
    }
    memset(h, 0, sizeof(*h));
    sk_time_format_rfc3339(env->time_ms, h->time);
    snprintf(h->schema, sizeof(h->schema), "%d", env->schema_version);
#define ADD(nm, val)                                                                               \
    do {                                                                                           \
        h->names[h->n] = (nm);                                                                     \
        h->values[h->n] = (val);                                                                   \
        h->n++;                                                                                    \
    } while (0)
    ADD(SK__HDR_SPECVERSION, "1.0");
    ADD(SK__HDR_ID, env->id);
    ADD(SK__HDR_TYPE, env->type);
    ADD(SK__HDR_SOURCE, env->source);
    ADD(SK__HDR_TIME, h->time);
    ADD(SK__HDR_SUBJECT, env->subject);
    ADD(SK__HDR_SCHEMAVERSION, h->schema);
    ADD(SK__HDR_TRACEPARENT, env->traceparent);
    if (env->saga_step >= 0) {
        snprintf(h->step, sizeof(h->step), "%d", env->saga_step);
        ADD(SK__HDR_SAGASTEP, h->step);
    }
    if (env->reply_to != NULL) {
        ADD(SK__HDR_REPLYTO, env->reply_to);
    }
    ADD(SK__HDR_MSGID, env->id);
    ADD(SK__HDR_CONTENTTYPE, "application/json");
#undef ADD
    return SK_OK;
}

sk_status sk__envelope_encode(const sk_envelope *env, natsMsg *msg)
{
    env_headers h;
    sk_status st;

    if (msg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__envelope_encode: msg must not be NULL");
    }
    if ((st = env_headers_build(env, &h)) != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < h.n; i++) {
        natsStatus s = natsMsgHeader_Set(msg, h.names[i], h.values[i]);
        if (s != NATS_OK) {
            return sk__nats_fail(s, 0, "setting message header");
        }
    }
    return SK_OK;
}

/* Most bytes of the JSON form of one envelope's headers. */
#define HEADERS_JSON_MAX (64u * 1024u)

/*
 * Append @p s as a JSON string. Envelope values are validated visible
 * ASCII; escaping everything JSON requires keeps any other byte valid too.
 */
static sk_status json_string_append(sk_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    sk_status st = sk_buf_append(b, "\"", 1);

    for (const char *p = s; st == SK_OK && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        st = sk_buf_append(b, run, (size_t)(p - run));
        if (st == SK_OK && c >= 0x20) {
            const char esc[2] = { '\\', (char)c }; /* \" or \\ */
            st = sk_buf_append(b, esc, sizeof(esc));
        } else if (st == SK_OK) {
            const char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF] };
            st = sk_buf_append(b, esc, sizeof(esc));
        }
        run = p + 1;
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(b, run);
    }
    return st == SK_OK ? sk_buf_append(b, "\"", 1) : st;
}

/* Written directly rather than through a jansson tree: once per outbox row, on the writer thread. */
sk_status sk__envelope_to_json(const sk_envelope *env, char **out)
{
    sk_status st = SK_OK;
    env_headers h;
    sk_buf b;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__envelope_to_json: out must not be NULL");
    }
    *out = NULL;
    if ((st = env_headers_build(env, &h)) != SK_OK) {
        return st;
    }
    sk_buf_init(&b, HEADERS_JSON_MAX);
    st = sk_buf_append(&b, "{", 1);
    for (size_t i = 0; i < h.n && st == SK_OK; i++) {
        if (i > 0) {
            st = sk_buf_append(&b, ",", 1);
        }
        if (st == SK_OK) {
            st = json_string_append(&b, h.names[i]);
        }
        if (st == SK_OK) {
            st = sk_buf_append(&b, ":", 1);
        }
        if (st == SK_OK) {
            st = json_string_append(&b, h.values[i]);
        }
    }
    if (st == SK_OK) {
        st = sk_buf_append(&b, "}", 1);
    }
    if (st == SK_OK) {
        *out = sk_buf_take(&b, NULL);
    } else {
        st = SK_WRAP(st, "envelope: serialising the headers");
    }
    sk_buf_fini(&b);
    return st;
}

/* ---------------------------------------------------------------- decoding */

/* Copy an attribute into @p dst (SK_ENVELOPE_MAX_ATTR + 1 bytes) after checking it. */
static sk_status attr_copy(sk_slice v, const char *header, char *dst)
{
    if (!attr_is_valid(v)) {
        return SK_FAIL(SK_EPROTO, "header %s: expected 1..%d visible ASCII characters, got %zu bytes",
                       header, SK_ENVELOPE_MAX_ATTR, v.len);
    }
    memcpy(dst, v.ptr, v.len);
    dst[v.len] = '\0';
    return SK_OK;
}

static sk_status int_parse(sk_slice v, const char *header, int64_t min, int64_t max, int64_t *out)
{
    int64_t x = 0;

    if (v.len == 0 || v.len > 10) {
        goto bad;
    }
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') {
            goto bad;
        }
        x = x * 10 + (v.ptr[i] - '0');
    }
    if (x < min || x > max) {
        goto bad;
    }
    *out = x;
    return SK_OK;
bad:
    return SK_FAIL(SK_EPROTO, "header %s: expected an integer %lld..%lld", header, (long long)min,
                   (long long)max);
}

enum {
    H_SPEC,
    H_ID,
    H_TYPE,
    H_SOURCE,
    H_TIME,
    H_SUBJECT,
    H_SCHEMA,
    H_TRACE,
    H_STEP,
    H_REPLY,
    H_COUNT_
};

static const char *const header_names[H_COUNT_] = {
    SK__HDR_SPECVERSION, SK__HDR_ID,     SK__HDR_TYPE,          SK__HDR_SOURCE,
    SK__HDR_TIME,        SK__HDR_SUBJECT, SK__HDR_SCHEMAVERSION, SK__HDR_TRACEPARENT,
    SK__HDR_SAGASTEP,    SK__HDR_REPLYTO,
};

#define LEN(s) (sizeof(s) - 1)
static const size_t header_lens[H_COUNT_] = {
    LEN(SK__HDR_SPECVERSION),   LEN(SK__HDR_ID),          LEN(SK__HDR_TYPE),
    LEN(SK__HDR_SOURCE),        LEN(SK__HDR_TIME),        LEN(SK__HDR_SUBJECT),
    LEN(SK__HDR_SCHEMAVERSION), LEN(SK__HDR_TRACEPARENT), LEN(SK__HDR_SAGASTEP),
    LEN(SK__HDR_REPLYTO),
};
#undef LEN

/*
 * Which envelope header @p name is (any case), or -1. Every message's
 * headers go through this on the fetch thread, so lengths are compared
 * before any text.
 */
static int header_index(sk_slice name)
{
    for (int k = 0; k < H_COUNT_; k++) {
        if (name.len == header_lens[k] &&
            strncasecmp((const char *)name.ptr, header_names[k], name.len) == 0) {
            return k;
        }
    }
    return -1;
}

sk_status sk__envelope_decode(const sk__msg_header *hdrs,
                              size_t n_hdrs,
                              sk_envelope *env,
                              sk__envelope_buf *buf)
{
    const sk__msg_header *found[H_COUNT_] = { 0 };
    sk_status st;
    int64_t v;

    if (env == NULL || buf == NULL || (hdrs == NULL && n_hdrs > 0)) {
        return SK_FAIL(SK_EINVAL, "sk__envelope_decode: NULL argument");
    }
    memset(env, 0, sizeof(*env));
    env->saga_step = -1;
    for (size_t i = 0; i < n_hdrs; i++) {
        if (hdrs[i].name.ptr == NULL || (hdrs[i].value.ptr == NULL && hdrs[i].value.len > 0)) {
            return SK_FAIL(SK_EINVAL, "sk__envelope_decode: header %zu has a NULL pointer", i);
        }
        int k = header_index(hdrs[i].name);
        if (k >= 0) {
            if (found[k] != NULL) {
                return SK_FAIL(SK_EPROTO, "header %s: given more than once", header_names[k]);
            }
            found[k] = &hdrs[i];
        }
    }
    for (int k = 0; k <= H_SCHEMA; k++) {
        if (found[k] == NULL) {
            return SK_FAIL(SK_EPROTO, "header %s: missing", header_names[k]);
        }
    }
    if (!sk_slice_eq_str(found[H_SPEC]->value, "1.0")) {
        return SK_FAIL(SK_EPROTO, "header %s: expected \"1.0\"", SK__HDR_SPECVERSION);
    }
    if (found[H_ID]->value.len != SK_UUID_LEN - 1 || !sk_uuid_is_valid(found[H_ID]->value)) {
        return SK_FAIL(SK_EPROTO, "header %s: expected a UUID, got %zu bytes", SK__HDR_ID,
                       found[H_ID]->value.len);
    }
    memcpy(env->id, found[H_ID]->value.ptr, SK_UUID_LEN - 1);
    env->id[SK_UUID_LEN - 1] = '\0';
    if ((st = attr_copy(found[H_TYPE]->value, SK__HDR_TYPE, buf->type)) != SK_OK ||
        (st = attr_copy(found[H_SOURCE]->value, SK__HDR_SOURCE, buf->source)) != SK_OK ||
        (st = attr_copy(found[H_SUBJECT]->value, SK__HDR_SUBJECT, buf->subject)) != SK_OK) {
        return st;
    }
    env->type = buf->type;
    env->source = buf->source;
    env->subject = buf->subject;
    if (sk__rfc3339_parse(found[H_TIME]->value, &env->time_ms) != SK_OK) {
        return SK_FAIL(SK_EPROTO, "header %s: expected an RFC 3339 timestamp", SK__HDR_TIME);
    }
    /*
     * The same range sk__envelope_validate enforces: an accepted message must
     * stay re-sendable (dead-letter redrive, outbox JSON), so a time before
     * 1970 or past year 9999 once the offset is applied is refused here.
     */
    if (env->time_ms < 0 || env->time_ms > MAX_TIME_MS) {
        return SK_FAIL(SK_EPROTO,
                       "header %s: expected a time from 1970-01-01T00:00:00Z to "
                       "9999-12-31T23:59:59.999Z",
                       SK__HDR_TIME);
    }
    if ((st = int_parse(found[H_SCHEMA]->value, SK__HDR_SCHEMAVERSION, 1, SK__MAX_SCHEMA_VERSION,
                        &v)) != SK_OK) {
        return st;
    }
    env->schema_version = (int)v;
    if (found[H_STEP] != NULL) {
        if ((st = int_parse(found[H_STEP]->value, SK__HDR_SAGASTEP, 0, SK__MAX_SAGA_STEP, &v)) !=
            SK_OK) {
            return st;
        }
        env->saga_step = (int)v;
    }
    if (found[H_REPLY] != NULL) {
        if ((st = attr_copy(found[H_REPLY]->value, SK__HDR_REPLYTO, buf->reply_to)) != SK_OK) {
            return st;
        }
        env->reply_to = buf->reply_to;
    }
    if (found[H_TRACE] != NULL && found[H_TRACE]->value.len == SK_TRACEPARENT_LEN - 1 &&
        sk_trace_is_valid(found[H_TRACE]->value)) {
        memcpy(env->traceparent, found[H_TRACE]->value.ptr, SK_TRACEPARENT_LEN - 1);
        env->traceparent[SK_TRACEPARENT_LEN - 1] = '\0';
    } else {
        /* Tracing is best effort: a broken traceparent must not cost the message. */
        sk_trace_new(env->traceparent);
    }
    return SK_OK;
}

/* Scratch for decoding a headers column on the stack; longer columns use the heap. */
#define HEADERS_STACK_SCRATCH 4096

/*
 * Parse a headers column (a flat JSON object of strings) into @p m, decoding
 * into @p stack when it fits, else into *heap (the caller frees it).
 */
static sk_status headers_parse(sk_slice json,
                               char stack[HEADERS_STACK_SCRATCH],
                               char **heap,
                               sk_json_member m[MAX_JSON_HEADERS],
                               size_t *n)
{
    char *scratch = stack;

    *heap = NULL;
    if (json.len >= HEADERS_STACK_SCRATCH) {
        scratch = *heap = sk_malloc(json.len + 1);
        if (scratch == NULL) {
            return SK_FAIL(SK_ENOMEM, "headers of %zu bytes", json.len);
        }
    }
    return sk_json_parse_flat_strings(json, scratch, json.len + 1, m, MAX_JSON_HEADERS, n);
}

sk_status sk__envelope_from_json(sk_slice json, sk_envelope *env, sk__envelope_buf *buf)
{
    sk__msg_header hdrs[MAX_JSON_HEADERS];
    char stack[HEADERS_STACK_SCRATCH];
    char *heap = NULL;
    size_t n = 0;
    sk_status st;

    if (env == NULL || buf == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__envelope_from_json: NULL argument");
    }
    st = headers_parse(json, stack, &heap, hdrs, &n);
    if (st != SK_OK) {
        st = SK_WRAP(st, "envelope headers");
    } else {
        /* Decoding copies what it keeps into buf, so the scratch can go. */
        st = sk__envelope_decode(hdrs, n, env, buf);
    }
    sk_free(heap);
    return st;
}

sk_status sk__headers_json_apply(sk_slice json, natsMsg *msg)
{
    sk_json_member m[MAX_JSON_HEADERS];
    char stack[HEADERS_STACK_SCRATCH];
    char *heap = NULL;
    size_t n = 0;
    sk_status st;

    if (msg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__headers_json_apply: msg must not be NULL");
    }
    st = headers_parse(json, stack, &heap, m, &n);
    if (st != SK_OK) {
        st = SK_WRAP(st, "outbox headers");
    }
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        natsStatus s = natsMsgHeader_Set(msg, (const char *)m[i].name.ptr,
                                         (const char *)m[i].value.ptr);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, 0, "setting message header");
        }
    }
    sk_free(heap);
    return st;
}

/*
 * nats.c hands back arrays it allocated with its own malloc and documents
 * free() as the way to release them; sk_free is not guaranteed to be the
 * same allocator, so this is the one place outside core that calls free().
 */
void sk__nats_free(const void *p)
{
    free((void *)(uintptr_t)p);
}

sk_status sk__envelope_from_msg(natsMsg *msg, sk_envelope *env, sk__envelope_buf *buf)
{
    sk__msg_header hdrs[MAX_JSON_HEADERS];
    const char **keys = NULL;
    sk_status st = SK_OK;
    int n_keys = 0;
    size_t n = 0;
    natsStatus s;

    if (msg == NULL || env == NULL || buf == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__envelope_from_msg: NULL argument");
    }
    s = natsMsgHeader_Keys(msg, &keys, &n_keys);
    if (s == NATS_NOT_FOUND) {
        return SK_FAIL(SK_EPROTO, "message has no headers (expected a CloudEvents envelope)");
    }
    if (s != NATS_OK) {
        return sk__nats_fail(s, 0, "reading message headers");
    }
    for (int i = 0; i < n_keys; i++) {
        const char **values = NULL;
        int n_values = 0;
        sk_slice name = sk_slice_from_str(keys[i]);

        if (header_index(name) < 0) {
            continue;
        }
        s = natsMsgHeader_Values(msg, keys[i], &values, &n_values);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, 0, "reading message header");
            goto out;
        }
        for (int j = 0; j < n_values; j++) {
            if (n == MAX_JSON_HEADERS) {
                sk__nats_free(values);
                st = SK_FAIL(SK_ELIMIT, "message has more than %d envelope headers",
                             MAX_JSON_HEADERS);
                goto out;
            }
            hdrs[n].name = name;
            hdrs[n].value = sk_slice_from_str(values[j]);
            n++;
        }
        sk__nats_free(values);
    }
    /* The values point into the message, which outlives this call. */
    st = sk__envelope_decode(hdrs, n, env, buf);
out:
    sk__nats_free(keys);
    return st;
}
