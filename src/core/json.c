/* SPDX-License-Identifier: MIT */
/*
 * JSON helpers over jansson for external input: typed field readers whose
 * errors name the field and the expected range, and compact serialisation
 * into sk_buf. Parsing is json_parse.c (trees), json_flat.c
 * (flat string objects) and json_lex.c (what the two share).
 * Stateless and thread-safe (jansson values themselves are not).
 */
#include <string.h>

#include "core/core_int.h"

const char *sk__json_type_name(const json_t *v)
{
    if (v == NULL) {
        return "nothing";
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Common checks of the typed readers; sets *member when the key is present. */
static sk_status
get_member(const json_t *obj, const char *key, const void *out, const char *fn, json_t **member)
{
    *member = NULL;
    if (obj == NULL || key == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "%s: %s must not be NULL", fn,
                       obj == NULL   ? "obj"
                       : key == NULL ? "key"
                                     : "out");
    }
    if (!json_is_object(obj)) {
        return SK_FAIL(SK_EPROTO, "%s: expected a JSON object holding it, got %s", key,
                       sk__json_type_name(obj));
    }
    *member = json_object_get(obj, key);
    if (*member == NULL) {
        return SK_FAIL(SK_EPROTO, "%s: required", key);
    }
    return SK_OK;
}

sk_status sk_json_get_string(
    const json_t *obj, const char *key, size_t min_chars, size_t max_chars, const char **out)
{
    json_t *v;
    const uint8_t *s;
    size_t len, chars = 0, i = 0;
    sk_status st;

    if (out != NULL) {
        *out = NULL;
    }
    st = get_member(obj, key, out, "sk_json_get_string", &v);
    if (st != SK_OK) {
        return st;
    }
    if (min_chars > max_chars) {
        return SK_FAIL(SK_EINVAL, "sk_json_get_string: min_chars %zu > max_chars %zu", min_chars,
                       max_chars);
    }
    if (!json_is_string(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected a string, got %s", key, sk__json_type_name(v));
    }
    s = (const uint8_t *)json_string_value(v);
    len = json_string_length(v);
    if (memchr(s, '\0', len) != NULL) {
        return SK_FAIL(SK_EPROTO, "%s: must not contain NUL characters", key);
    }
    while (i < len) {
        size_t n = sk__utf8_decode(s + i, len - i, NULL);
        if (n == 0) {
            return SK_FAIL(SK_EPROTO, "%s: invalid UTF-8 at byte %zu", key, i);
        }
        i += n;
        chars++;
    }
    if (chars < min_chars || chars > max_chars) {
        return SK_FAIL(SK_EPROTO, "%s: expected a string of %zu..%zu characters, got %zu", key,
                       min_chars, max_chars, chars);
    }
    *out = (const char *)s;
    return SK_OK;
}

sk_status
sk_json_get_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out)
{
    json_t *v;
    json_int_t n;
    sk_status st;

    if (out != NULL) {
        *out = 0;
    }
    st = get_member(obj, key, out, "sk_json_get_int", &v);
    if (st != SK_OK) {
        return st;
    }
    if (min > max) {
        return SK_FAIL(SK_EINVAL, "sk_json_get_int: min %lld > max %lld", (long long)min,
                       (long long)max);
    }
    if (!json_is_integer(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected an integer in %lld..%lld, got %s", key,
                       (long long)min, (long long)max, sk__json_type_name(v));
    }
    n = json_integer_value(v);
    if (n < min || n > max) {
        return SK_FAIL(SK_EPROTO, "%s: expected an integer in %lld..%lld, got %lld", key,
                       (long long)min, (long long)max, (long long)n);
    }
    *out = (int64_t)n;
    return SK_OK;
}

typedef struct dump_ctx {
    sk_buf *buf;
    sk_status st;
} dump_ctx;

static int dump_cb(const char *buffer, size_t size, void *data)
{
    dump_ctx *ctx = data;

    ctx->st = sk_buf_append(ctx->buf, buffer, size);
    return ctx->st == SK_OK ? 0 : -1;
}

sk_status sk_json_dump(const json_t *value, sk_buf *out)
{
    dump_ctx ctx;
    size_t start;

    if (value == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_json_dump: %s must not be NULL",
                       value == NULL ? "value" : "out");
    }
    start = out->len;
    ctx.buf = out;
    ctx.st = SK_OK;
    if (json_dump_callback(value, dump_cb, &ctx, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        out->len = start; /* a failed append leaves the buffer as it was */
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
        if (ctx.st != SK_OK) {
            return ctx.st;
        }
        /* jansson fails on its own only for out of memory or a value that contains itself. */
        return SK_FAIL(SK_ENOMEM, "sk_json_dump: serialisation failed");
    }
    if (out->data == NULL) {
        return sk_buf_append(out, "", 0);
    }
    return SK_OK;
}

char *sk_json_dumps(const json_t *value)
{
    sk_buf b;

    sk_buf_init(&b, SIZE_MAX - 1);
    if (sk_json_dump(value, &b) != SK_OK) {
        sk_buf_fini(&b);
        return NULL;
    }
    return sk_buf_take(&b, NULL);
}
