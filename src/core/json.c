/* SPDX-License-Identifier: MIT */
/*
 * JSON helpers over jansson for external input: typed field readers whose
 * errors name the field and the expected range. Parsing is json_parse.c
 * (trees), json_flat.c (flat string objects) and json_lex.c (what the two
 * share); serialising is json_dump.c.
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
