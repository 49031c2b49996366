/* SPDX-License-Identifier: MIT */
/*
 * Fault injection (Istio HTTPFaultInjection): parse {delay: {percentage:
 * {value}, fixedDelay}, abort: {percentage: {value}, httpStatus}} and decide
 * per request with an injectable random source. As in Envoy, delay and abort
 * are drawn independently, the delay comes first; percentages have
 * millionth precision (Envoy's FractionalPercent MILLION).
 */
#include "mesh/mesh_int.h"

#include <stdlib.h>
#include <string.h>

#define PPM_FULL 1000000u

sk_status sk__mesh_percent_parse(const json_t *v, const char *path, uint32_t *out_ppm)
{
    double d;

    *out_ppm = 0;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
    } else if (json_is_real(v)) {
        d = json_real_value(v);
    } else if (json_is_string(v)) {
        /* YAML hands decimals over as strings ("0.5"). */
        const char *s = json_string_value(v);
        char *end = NULL;
        if (s[0] == '\0' || strspn(s, "0123456789.") != strlen(s)) {
            return SK_FAIL(SK_EPROTO, "%s: expected a number 0..100, got \"%.20s\"", path, s);
        }
        d = strtod(s, &end);
        if (end == NULL || *end != '\0') {
            return SK_FAIL(SK_EPROTO, "%s: expected a number 0..100, got \"%.20s\"", path, s);
        }
    } else {
        return SK_FAIL(SK_EPROTO, "%s: expected a number 0..100", path);
    }
    if (!(d >= 0.0 && d <= 100.0)) {
        return SK_FAIL(SK_EPROTO, "%s: expected a number 0..100, got %g", path, d);
    }
    *out_ppm = (uint32_t)(d * 10000.0 + 0.5);
    return SK_OK;
}

/* percentage: {value: N}; absent = 100 %. */
static sk_status read_percentage(const json_t *obj, const char *path, uint32_t *out_ppm)
{
    const json_t *pct = json_object_get(obj, "percentage");
    const char *key;
    const json_t *v;
    char sub[160];

    *out_ppm = PPM_FULL;
    if (pct == NULL || json_is_null(pct)) {
        return SK_OK;
    }
    if (!json_is_object(pct)) {
        return SK_FAIL(SK_EPROTO, "%s.percentage: expected an object {value: 0..100}", path);
    }
    json_object_foreach ((json_t *)(uintptr_t)pct, key, v) {
        if (strcmp(key, "value") != 0) {
            return SK_FAIL(SK_EPROTO, "%s.percentage.%.40s: unknown field (expected value)", path,
                           key);
        }
    }
    v = json_object_get(pct, "value");
    if (v == NULL) {
        *out_ppm = 0; /* protobuf: an absent double is 0 */
        return SK_OK;
    }
    snprintf(sub, sizeof(sub), "%s.percentage.value", path);
    return sk__mesh_percent_parse(v, sub, out_ppm);
}

static sk_status check_keys(const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    const json_t *v;

    json_object_foreach ((json_t *)(uintptr_t)obj, key, v) {
        bool ok = false;
        (void)v;
        for (size_t i = 0; allowed[i] != NULL; i++) {
            ok = ok || strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            return SK_FAIL(SK_EPROTO, "%s.%.40s: unknown or unsupported field", path, key);
        }
    }
    return SK_OK;
}

sk_status sk__fault_parse(const json_t *fault, const char *path, sk__fault_policy *out)
{
    static const char *const top_keys[] = { "delay", "abort", NULL };
    static const char *const delay_keys[] = { "percentage", "fixedDelay", NULL };
    static const char *const abort_keys[] = { "percentage", "httpStatus", NULL };
    const json_t *delay;
    const json_t *abrt;
    char sub[160];
    sk_status st;

    if (out == NULL || path == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__fault_parse: out and path must not be NULL");
    }
    memset(out, 0, sizeof(*out));
    if (fault == NULL || json_is_null(fault)) {
        return SK_OK;
    }
    if (!json_is_object(fault)) {
        return SK_FAIL(SK_EPROTO, "%s: expected an object with delay and/or abort", path);
    }
    st = check_keys(fault, path, top_keys);
    if (st != SK_OK) {
        return st;
    }
    delay = json_object_get(fault, "delay");
    if (delay != NULL && !json_is_null(delay)) {
        snprintf(sub, sizeof(sub), "%s.delay", path);
        if (!json_is_object(delay)) {
            return SK_FAIL(SK_EPROTO, "%s: expected an object {percentage, fixedDelay}", sub);
        }
        st = check_keys(delay, sub, delay_keys);
        if (st == SK_OK) {
            st = read_percentage(delay, sub, &out->delay_ppm);
        }
        if (st != SK_OK) {
            return st;
        }
        const json_t *fd = json_object_get(delay, "fixedDelay");
        if (!json_is_string(fd)) {
            return SK_FAIL(SK_EPROTO, "%s.fixedDelay: required, a duration such as \"2s\"", sub);
        }
        st = sk__mesh_duration_parse(
            (sk_slice){ (const uint8_t *)json_string_value(fd), json_string_length(fd) },
            &out->delay_ms);
        if (st != SK_OK) {
            return SK_WRAP(st, "%s.fixedDelay", sub);
        }
        out->has_delay = out->delay_ms > 0;
    }
    abrt = json_object_get(fault, "abort");
    if (abrt != NULL && !json_is_null(abrt)) {
        snprintf(sub, sizeof(sub), "%s.abort", path);
        if (!json_is_object(abrt)) {
            return SK_FAIL(SK_EPROTO, "%s: expected an object {percentage, httpStatus}", sub);
        }
        st = check_keys(abrt, sub, abort_keys);
        if (st == SK_OK) {
            st = read_percentage(abrt, sub, &out->abort_ppm);
        }
        if (st != SK_OK) {
            return st;
        }
        const json_t *hs = json_object_get(abrt, "httpStatus");
        if (!json_is_integer(hs) || json_integer_value(hs) < 200 || json_integer_value(hs) > 599) {
            return SK_FAIL(SK_EPROTO, "%s.httpStatus: required, an integer 200..599", sub);
        }
        out->abort_status = (int)json_integer_value(hs);
        out->has_abort = true;
    }
    return SK_OK;
}

void sk__fault_decide(
    const sk__fault_policy *f, sk__rand_fn rnd, void *rnd_ctx, int64_t *delay_ms, int *abort_status)
{
    *delay_ms = 0;
    *abort_status = 0;
    if (f == NULL || (!f->has_delay && !f->has_abort)) {
        return;
    }
    if (rnd == NULL) {
        rnd = sk__mesh_rand_default;
    }
    if (f->has_delay && rnd(rnd_ctx) % PPM_FULL < f->delay_ppm) {
        *delay_ms = f->delay_ms;
    }
    if (f->has_abort && rnd(rnd_ctx) % PPM_FULL < f->abort_ppm) {
        *abort_status = f->abort_status;
    }
}
