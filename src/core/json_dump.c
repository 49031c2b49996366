/* SPDX-License-Identifier: MIT */
/*
 * sk_json_dump: a jansson tree as compact JSON text, written straight into
 * an sk_buf.
 *
 * Why not json_dump_callback: jansson walks every string a code point at a
 * time and hands each token (every brace, comma, key and run of characters)
 * to a callback, which here appended it to the buffer: 4 µs for a 637-byte
 * order view (bench_json), and 15 % of order's store writer at 1,000
 * orders/s (outbox events, saga state, HTTP answers). This walks the same
 * tree and copies runs of plain bytes with one check per byte.
 *
 * The text is byte for byte what json_dump_callback(JSON_COMPACT |
 * JSON_ENCODE_ANY) writes: members in the object's order, "\\u%04X" for the
 * control characters without a short escape, reals formatted by jansson
 * itself (json_dumpb of the one value: its precision and its ".0" rules).
 * fuzz/json.c compares the two on every document it parses. Two deliberate
 * differences, for trees built in code only (our parser makes neither):
 * a key that is not valid UTF-8 fails like such a value does (jansson
 * writes broken JSON for it), and so does nesting deeper than
 * DUMP_MAX_DEPTH (jansson recurses without a bound).
 */
#include <string.h>

#include "core/core_int.h"

/* Deeper than anything our parser accepts; a tree that contains itself ends here. */
#define DUMP_MAX_DEPTH 2048
/* Input bytes measured and copied per reservation. */
#define STRING_CHUNK 256

typedef struct dumper {
    sk_buf *out;
    int depth;
} dumper;

static sk_status put(dumper *d, const char *s, size_t len)
{
    return sk_buf_append(d->out, s, len);
}

/* Bytes that a JSON string cannot hold as they are: '"', '\\' and the control characters. */
static bool needs_escape(uint8_t c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* Write @p c escaped at @p w, or only measure it when @p w is NULL; @return its length (2 or 6). */
static size_t escape(uint8_t c, char *w)
{
    static const char hex[] = "0123456789ABCDEF";
    char short_form = 0;

    switch (c) {
    case '"':
        short_form = '"';
        break;
    case '\\':
        short_form = '\\';
        break;
    case '\b':
        short_form = 'b';
        break;
    case '\f':
        short_form = 'f';
        break;
    case '\n':
        short_form = 'n';
        break;
    case '\r':
        short_form = 'r';
        break;
    case '\t':
        short_form = 't';
        break;
    default:
        break;
    }
    if (w == NULL) {
        return short_form != 0 ? 2 : 6;
    }
    w[0] = '\\';
    if (short_form != 0) {
        w[1] = short_form;
        return 2;
    }
    memcpy(w + 1, "u00", 3);
    w[4] = hex[c >> 4];
    w[5] = hex[c & 0xf];
    return 6;
}

static sk_status string(dumper *d, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    uint8_t high = 0; /* OR of every byte: bit 7 set when there is non-ASCII text to check */
    sk_buf *b = d->out;
    sk_status st;

    st = put(d, "\"", 1);
    while (st == SK_OK && len > 0) {
        size_t n = len < STRING_CHUNK ? len : STRING_CHUNK;
        size_t out_len = n;
        /* Measure first: reserving the worst case could pass a limit the text itself fits in. */
        for (size_t i = 0; i < n; i++) {
            high |= p[i];
            if (needs_escape(p[i])) {
                out_len += escape(p[i], NULL) - 1;
            }
        }
        st = sk__buf_reserve(b, out_len);
        if (st != SK_OK) {
            break;
        }
        char *w = b->data + b->len;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = p[i];
            if (needs_escape(c)) {
                w += escape(c, w);
            } else {
                *w++ = (char)c;
            }
        }
        b->len = (size_t)(w - b->data);
        b->data[b->len] = '\0';
        p += n;
        len -= n;
    }
    if (st == SK_OK && (high & 0x80) != 0 &&
        !sk__utf8_is_valid((sk_slice){ (const uint8_t *)s, (size_t)(p - (const uint8_t *)s) },
                           NULL)) {
        st = SK_FAIL(SK_EPROTO, "sk_json_dump: a string is not valid UTF-8");
    }
    return st == SK_OK ? put(d, "\"", 1) : st;
}

static sk_status integer(dumper *d, json_int_t v)
{
    char text[24];
    char *w = text + sizeof(text);
    /* The magnitude as unsigned, so that the most negative value has one too. */
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        *--w = (char)('0' + m % 10);
        m /= 10;
    } while (m != 0);
    if (v < 0) {
        *--w = '-';
    }
    return put(d, w, (size_t)(text + sizeof(text) - w));
}

/* Reals are rare in our documents: jansson formats them, so they stay its text exactly. */
static sk_status real(dumper *d, const json_t *v)
{
    char text[64];
    size_t n = json_dumpb(v, text, sizeof(text), JSON_COMPACT | JSON_ENCODE_ANY);

    if (n == 0) { /* jansson's json_real holds finite values only: its allocation failed */
        return SK_FAIL(SK_ENOMEM, "sk_json_dump: formatting a real number");
    }
    if (n > sizeof(text)) {
        return SK_FAIL(SK_EINTERNAL, "sk_json_dump: a real number longer than %zu bytes",
                       sizeof(text));
    }
    return put(d, text, n);
}

static sk_status value(dumper *d, const json_t *v);

static sk_status object(dumper *d, const json_t *obj)
{
    const char *key;
    size_t key_len;
    json_t *member;
    bool is_first = true;
    sk_status st = put(d, "{", 1);

    json_object_keylen_foreach ((json_t *)(uintptr_t)obj, key, key_len, member) {
        if (st != SK_OK) {
            break;
        }
        if (!is_first) {
            st = put(d, ",", 1);
        }
        is_first = false;
        if (st == SK_OK) {
            st = string(d, key, key_len);
        }
        if (st == SK_OK) {
            st = put(d, ":", 1);
        }
        if (st == SK_OK) {
            st = value(d, member);
        }
    }
    return st == SK_OK ? put(d, "}", 1) : st;
}

static sk_status array(dumper *d, const json_t *arr)
{
    size_t n = json_array_size(arr);
    sk_status st = put(d, "[", 1);

    for (size_t i = 0; st == SK_OK && i < n; i++) {
        if (i > 0) {
            st = put(d, ",", 1);
        }
        if (st == SK_OK) {
            st = value(d, json_array_get(arr, i));
        }
    }
    return st == SK_OK ? put(d, "]", 1) : st;
}

static sk_status value(dumper *d, const json_t *v)
{
    sk_status st;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return string(d, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return integer(d, json_integer_value(v));
    case JSON_REAL:
        return real(d, v);
    case JSON_TRUE:
        return put(d, "true", 4);
    case JSON_FALSE:
        return put(d, "false", 5);
    case JSON_NULL:
        return put(d, "null", 4);
    case JSON_OBJECT:
    case JSON_ARRAY:
        if (++d->depth > DUMP_MAX_DEPTH) {
            return SK_FAIL(SK_ELIMIT,
                           "sk_json_dump: nested deeper than %d levels (or contains itself)",
                           DUMP_MAX_DEPTH);
        }
        st = json_is_object(v) ? object(d, v) : array(d, v);
        d->depth--;
        return st;
    }
    return SK_FAIL(SK_EINTERNAL, "sk_json_dump: a value of unknown type");
}

sk_status sk_json_dump(const json_t *value_in, sk_buf *out)
{
    dumper d;
    size_t start;
    sk_status st;

    if (value_in == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_json_dump: %s must not be NULL",
                       value_in == NULL ? "value" : "out");
    }
    start = out->len;
    d.out = out;
    d.depth = 0;
    st = value(&d, value_in);
    if (st != SK_OK) {
        out->len = start; /* a failure leaves the buffer as it was */
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
    }
    return st;
}

char *sk_json_dumps(const json_t *value_in)
{
    sk_buf b;

    sk_buf_init(&b, SIZE_MAX - 1);
    if (sk_json_dump(value_in, &b) != SK_OK) {
        sk_buf_fini(&b);
        return NULL;
    }
    return sk_buf_take(&b, NULL);
}
