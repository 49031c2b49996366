/* SPDX-License-Identifier: MIT */
/*
 * Upstream traffic policy (Istio field names): duration parsing and the
 * sk__upstream_policy seam. Today only `timeout` is applied; `retries` is
 * validated and stored, and the whole object is kept for the features that
 * plug in later (outlier detection, pool limits, fault injection).
 */
#include "mesh/mesh_int.h"

#include <string.h>

#define NS_PER_MS INT64_C(1000000)
/* A day is far beyond any sensible request timeout and keeps the arithmetic small. */
#define MAX_DURATION_NS (INT64_C(24) * 3600 * 1000 * NS_PER_MS)

/* Nanoseconds per unit at the start of @p p, and the unit's length; 0 when none. */
static int64_t unit_ns(const uint8_t *p, size_t left, size_t *unit_len)
{
    if (left >= 2 && p[0] == 'm' && p[1] == 's') {
        *unit_len = 2;
        return NS_PER_MS;
    }
    if (left >= 2 && p[0] == 'u' && p[1] == 's') {
        *unit_len = 2;
        return 1000;
    }
    if (left >= 2 && p[0] == 'n' && p[1] == 's') {
        *unit_len = 2;
        return 1;
    }
    if (left >= 1 && p[0] == 'h') {
        *unit_len = 1;
        return 3600 * 1000 * NS_PER_MS;
    }
    if (left >= 1 && p[0] == 'm') {
        *unit_len = 1;
        return 60 * 1000 * NS_PER_MS;
    }
    if (left >= 1 && p[0] == 's') {
        *unit_len = 1;
        return 1000 * NS_PER_MS;
    }
    *unit_len = 0;
    return 0;
}

sk_status sk__mesh_duration_parse(sk_slice text, int64_t *out_ms)
{
    int64_t total_ns = 0;
    size_t i = 0;

    if (out_ms == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__mesh_duration_parse: out_ms must not be NULL");
    }
    *out_ms = 0;
    if (text.ptr == NULL && text.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk__mesh_duration_parse: text.ptr is NULL");
    }
    if (text.len == 0) {
        return SK_FAIL(SK_EPROTO, "duration: expected e.g. \"2s\" or \"250ms\", got \"\"");
    }
    while (i < text.len) {
        int64_t whole = 0;
        int64_t frac_num = 0;
        int64_t frac_den = 1;
        size_t n_digits = 0;
        size_t start = i;

        while (i < text.len && text.ptr[i] >= '0' && text.ptr[i] <= '9') {
            if (whole > MAX_DURATION_NS) {
                return SK_FAIL(SK_ELIMIT, "duration \"%.*s\": at most 24h", (int)text.len,
                               (const char *)text.ptr);
            }
            whole = whole * 10 + (text.ptr[i] - '0');
            i++;
            n_digits++;
        }
        if (i < text.len && text.ptr[i] == '.') {
            i++;
            while (i < text.len && text.ptr[i] >= '0' && text.ptr[i] <= '9') {
                /* Digits past nanosecond precision of the largest unit do not matter. */
                if (frac_den < INT64_C(1000000000000)) {
                    frac_num = frac_num * 10 + (text.ptr[i] - '0');
                    frac_den *= 10;
                }
                i++;
                n_digits++;
            }
        }
        if (n_digits == 0) {
            return SK_FAIL(SK_EPROTO,
                           "duration \"%.*s\": expected a number at offset %zu (e.g. \"2s\", "
                           "\"250ms\")",
                           (int)(text.len > 64 ? 64 : text.len), (const char *)text.ptr, start);
        }
        size_t ulen = 0;
        int64_t per = unit_ns(text.ptr + i, text.len - i, &ulen);
        if (per == 0) {
            return SK_FAIL(SK_EPROTO,
                           "duration \"%.*s\": expected a unit (h, m, s, ms, us, ns) at offset %zu",
                           (int)(text.len > 64 ? 64 : text.len), (const char *)text.ptr, i);
        }
        i += ulen;
        if (whole > MAX_DURATION_NS / per) {
            return SK_FAIL(SK_ELIMIT, "duration \"%.*s\": at most 24h",
                           (int)(text.len > 64 ? 64 : text.len), (const char *)text.ptr);
        }
        /* frac_num / frac_den < 1 and per <= 3.6e12, so per / frac_den * frac_num stays small. */
        int64_t part = whole * per + (int64_t)((double)per * (double)frac_num / (double)frac_den);
        total_ns += part;
        if (total_ns > MAX_DURATION_NS) {
            return SK_FAIL(SK_ELIMIT, "duration \"%.*s\": at most 24h",
                           (int)(text.len > 64 ? 64 : text.len), (const char *)text.ptr);
        }
    }
    *out_ms = (total_ns + NS_PER_MS - 1) / NS_PER_MS;
    return SK_OK;
}

static sk_status policy_duration(const json_t *obj, const char *key, const char *path, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    sk_status st;

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return SK_OK;
    }
    if (!json_is_string(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected a duration string such as \"2s\"", path);
    }
    st = sk__mesh_duration_parse(
        (sk_slice){ (const uint8_t *)json_string_value(v), json_string_length(v) }, out);
    if (st != SK_OK) {
        return SK_WRAP(st, "%s", path);
    }
    return SK_OK;
}

sk_status sk__upstream_policy_parse(const json_t *policy, sk__upstream_policy *out)
{
    sk_status st = SK_OK;
    const json_t *retries = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__upstream_policy_parse: out must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (policy == NULL || json_is_null(policy)) {
        return SK_OK;
    }
    if (!json_is_object(policy)) {
        return SK_FAIL(SK_EPROTO, "policy: expected an object");
    }
    static const char *const objects[] = { "trafficPolicy", "retries", "fault" };
    for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
        const json_t *v = json_object_get(policy, objects[i]);
        if (v != NULL && !json_is_null(v) && !json_is_object(v)) {
            return SK_FAIL(SK_EPROTO, "policy.%s: expected an object", objects[i]);
        }
    }
    st = policy_duration(policy, "timeout", "policy.timeout", &out->timeout_ms);
    if (st != SK_OK) {
        goto out;
    }
    retries = json_object_get(policy, "retries");
    if (json_is_object(retries)) {
        const json_t *a = json_object_get(retries, "attempts");
        if (a != NULL && !json_is_null(a)) {
            if (!json_is_integer(a) || json_integer_value(a) < 0 || json_integer_value(a) > 10) {
                st = SK_FAIL(SK_EPROTO, "policy.retries.attempts: expected an integer 0..10");
                goto out;
            }
            out->retries_attempts = (int)json_integer_value(a);
        }
        st = policy_duration(retries, "perTryTimeout", "policy.retries.perTryTimeout",
                             &out->per_try_timeout_ms);
        if (st != SK_OK) {
            goto out;
        }
    }
    out->raw = json_deep_copy(policy);
    if (out->raw == NULL) {
        st = SK_FAIL(SK_ENOMEM, "policy: copying the object");
        goto out;
    }
out:
    if (st != SK_OK) {
        sk__upstream_policy_fini(out);
    }
    return st;
}

void sk__upstream_policy_fini(sk__upstream_policy *p)
{
    if (p == NULL) {
        return;
    }
    json_decref(p->raw);
    memset(p, 0, sizeof(*p));
}
