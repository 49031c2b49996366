/* SPDX-License-Identifier: MIT */
/*
 * Upstream traffic policy (Istio field names): duration parsing and the
 * whole sk__upstream_policy with Istio's defaults where a field is absent
 * (docs/mesh.md has the table). Fields Istio defines but this mesh does not
 * implement are refused by name, never silently ignored.
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

    if (v == NULL || json_is_null(v)) {
        return SK_OK; /* keep the default already in *out */
    }
    if (!json_is_string(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected a duration string such as \"2s\"", path);
    }
    st = sk__mesh_duration_parse(
        (sk_slice){ (const uint8_t *)json_string_value(v), json_string_length(v) }, out);
    if (st != SK_OK) {
        return SK_WRAP(st, "%s", path);
    }
    if (*out <= 0) {
        return SK_FAIL(SK_EPROTO, "%s: must be at least 1ms", path);
    }
    return SK_OK;
}

/* An unsigned integer field in [lo, hi]; absent keeps *out. */
static sk_status policy_uint(
    const json_t *obj, const char *key, const char *path, int64_t lo, int64_t hi, uint32_t *out)
{
    const json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v)) {
        return SK_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        return SK_FAIL(SK_EPROTO, "%s: expected an integer %lld..%lld", path, (long long)lo,
                       (long long)hi);
    }
    *out = (uint32_t)json_integer_value(v);
    return SK_OK;
}

/* An optional object member; *out = NULL when absent. */
static sk_status
policy_object(const json_t *obj, const char *key, const char *path, const json_t **out)
{
    const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        return SK_OK;
    }
    if (!json_is_object(v)) {
        return SK_FAIL(SK_EPROTO, "%s: expected an object", path);
    }
    *out = v;
    return SK_OK;
}

/*
 * Every key of @p obj must be in @p known; keys in @p unsupported are valid
 * Istio fields this mesh does not implement and are refused by name rather
 * than silently ignored.
 */
static sk_status policy_keys(const json_t *obj,
                             const char *path,
                             const char *const *known,
                             const char *const *unsupported)
{
    const char *key;
    const json_t *v;

    json_object_foreach ((json_t *)(uintptr_t)obj, key, v) {
        bool is_known = false;
        (void)v;
        for (size_t i = 0; known[i] != NULL && !is_known; i++) {
            is_known = strcmp(key, known[i]) == 0;
        }
        if (is_known) {
            continue;
        }
        for (size_t i = 0; unsupported != NULL && unsupported[i] != NULL; i++) {
            if (strcmp(key, unsupported[i]) == 0) {
                return SK_FAIL(SK_EPROTO,
                               "%s.%s: an Istio field the in-process mesh does not implement "
                               "(see docs/mesh.md)",
                               path, key);
            }
        }
        char list[400] = "";
        size_t used = 0;
        for (size_t i = 0; known[i] != NULL && used < sizeof(list); i++) {
            int n = snprintf(list + used, sizeof(list) - used, "%s%s", i > 0 ? ", " : "", known[i]);
            used += n > 0 ? (size_t)n : 0;
        }
        return SK_FAIL(SK_EPROTO, "%s.%.40s: unknown field (expected one of: %s)", path, key, list);
    }
    return SK_OK;
}

static sk_status parse_lb(const json_t *tp, sk__upstream_policy *out)
{
    static const char *const keys[] = { "simple", NULL };
    static const char *const unsupported[] = { "consistentHash", "localityLbSetting",
                                               "warmupDurationSecs", NULL };
    const json_t *lb;
    sk_status st = policy_object(tp, "loadBalancer", "policy.trafficPolicy.loadBalancer", &lb);

    if (st != SK_OK || lb == NULL) {
        return st;
    }
    st = policy_keys(lb, "policy.trafficPolicy.loadBalancer", keys, unsupported);
    if (st != SK_OK) {
        return st;
    }
    const json_t *simple = json_object_get(lb, "simple");
    if (simple == NULL || json_is_null(simple)) {
        return SK_OK;
    }
    const char *s = json_is_string(simple) ? json_string_value(simple) : "";
    if (strcmp(s, "LEAST_REQUEST") == 0 || strcmp(s, "LEAST_CONN") == 0 ||
        strcmp(s, "UNSPECIFIED") == 0) {
        out->lb = SK__LB_LEAST_REQUEST;
    } else if (strcmp(s, "ROUND_ROBIN") == 0) {
        out->lb = SK__LB_ROUND_ROBIN;
    } else if (strcmp(s, "RANDOM") == 0) {
        out->lb = SK__LB_RANDOM;
    } else {
        return SK_FAIL(SK_EPROTO,
                       "policy.trafficPolicy.loadBalancer.simple: expected ROUND_ROBIN, "
                       "LEAST_REQUEST, LEAST_CONN or RANDOM, got \"%.32s\"",
                       s);
    }
    return SK_OK;
}

static sk_status parse_pool(const json_t *tp, sk__upstream_policy *out)
{
    static const char *const keys[] = { "tcp", "http", NULL };
    static const char *const tcp_keys[] = { "maxConnections", "connectTimeout", NULL };
    static const char *const tcp_unsupported[] = { "tcpKeepalive", "maxConnectionDuration",
                                                   "idleTimeout", NULL };
    static const char *const http_keys[] = { "http1MaxPendingRequests", "maxRequestsPerConnection",
                                             NULL };
    static const char *const http_unsupported[] = {
        "http2MaxRequests",  "idleTimeout",          "maxRetries", "h2UpgradePolicy",
        "useClientProtocol", "maxConcurrentStreams", NULL
    };
    const json_t *cp;
    const json_t *tcp;
    const json_t *http;
    sk_status st = policy_object(tp, "connectionPool", "policy.trafficPolicy.connectionPool", &cp);

    if (st != SK_OK || cp == NULL) {
        return st;
    }
    st = policy_keys(cp, "policy.trafficPolicy.connectionPool", keys, NULL);
    if (st == SK_OK) {
        st = policy_object(cp, "tcp", "policy.trafficPolicy.connectionPool.tcp", &tcp);
    }
    if (st == SK_OK) {
        st = policy_object(cp, "http", "policy.trafficPolicy.connectionPool.http", &http);
    }
    if (st != SK_OK) {
        return st;
    }
    if (tcp != NULL) {
        st = policy_keys(tcp, "policy.trafficPolicy.connectionPool.tcp", tcp_keys, tcp_unsupported);
        if (st == SK_OK) {
            st = policy_uint(tcp, "maxConnections",
                             "policy.trafficPolicy.connectionPool.tcp.maxConnections", 1,
                             UINT32_MAX, &out->pool.max_connections);
        }
        if (st == SK_OK) {
            st = policy_duration(tcp, "connectTimeout",
                                 "policy.trafficPolicy.connectionPool.tcp.connectTimeout",
                                 &out->pool.connect_timeout_ms);
        }
        if (st != SK_OK) {
            return st;
        }
    }
    if (http != NULL) {
        st = policy_keys(http, "policy.trafficPolicy.connectionPool.http", http_keys,
                         http_unsupported);
        if (st == SK_OK) {
            st = policy_uint(http, "http1MaxPendingRequests",
                             "policy.trafficPolicy.connectionPool.http.http1MaxPendingRequests", 0,
                             UINT32_MAX, &out->pool.max_pending);
        }
        if (st == SK_OK) {
            st = policy_uint(http, "maxRequestsPerConnection",
                             "policy.trafficPolicy.connectionPool.http.maxRequestsPerConnection", 0,
                             INT32_MAX, &out->pool.max_requests_per_connection);
        }
    }
    return st;
}

static sk_status parse_outlier(const json_t *tp, sk__upstream_policy *out)
{
    static const char *const keys[] = {
        "consecutive5xxErrors", "consecutiveGatewayErrors", "interval", "baseEjectionTime",
        "maxEjectionPercent",   "minHealthPercent",         NULL
    };
    static const char *const unsupported[] = { "consecutiveErrors",
                                               "splitExternalLocalOriginErrors",
                                               "consecutiveLocalOriginFailures", NULL };
    const char *path = "policy.trafficPolicy.outlierDetection";
    const json_t *od;
    sk__outlier_policy *p = &out->outlier;
    sk_status st = policy_object(tp, "outlierDetection", path, &od);

    if (st != SK_OK || od == NULL) {
        return st;
    }
    p->is_enabled = true;
    st = policy_keys(od, path, keys, unsupported);
    if (st == SK_OK) {
        st = policy_uint(od, "consecutive5xxErrors",
                         "policy.trafficPolicy.outlierDetection.consecutive5xxErrors", 0,
                         UINT32_MAX, &p->consecutive_5xx);
    }
    if (st == SK_OK) {
        st = policy_uint(od, "consecutiveGatewayErrors",
                         "policy.trafficPolicy.outlierDetection.consecutiveGatewayErrors", 0,
                         UINT32_MAX, &p->consecutive_gateway);
    }
    if (st == SK_OK) {
        st = policy_duration(od, "interval", "policy.trafficPolicy.outlierDetection.interval",
                             &p->interval_ms);
    }
    if (st == SK_OK) {
        st = policy_duration(od, "baseEjectionTime",
                             "policy.trafficPolicy.outlierDetection.baseEjectionTime",
                             &p->base_ejection_ms);
    }
    if (st == SK_OK) {
        st = policy_uint(od, "maxEjectionPercent",
                         "policy.trafficPolicy.outlierDetection.maxEjectionPercent", 0, 100,
                         &p->max_ejection_percent);
    }
    if (st == SK_OK) {
        st = policy_uint(od, "minHealthPercent",
                         "policy.trafficPolicy.outlierDetection.minHealthPercent", 0, 100,
                         &p->min_health_percent);
    }
    if (p->base_ejection_ms > p->max_ejection_ms) {
        p->max_ejection_ms = p->base_ejection_ms; /* Envoy: max(300 s, baseEjectionTime) */
    }
    return st;
}

static sk_status parse_retries(const json_t *policy, sk__upstream_policy *out)
{
    static const char *const keys[] = { "attempts", "perTryTimeout", "retryOn", NULL };
    static const char *const unsupported[] = { "retryRemoteLocalities", "backoff", NULL };
    const json_t *r;
    sk_status st = policy_object(policy, "retries", "policy.retries", &r);

    if (st != SK_OK || r == NULL) {
        return st;
    }
    st = policy_keys(r, "policy.retries", keys, unsupported);
    if (st != SK_OK) {
        return st;
    }
    const json_t *a = json_object_get(r, "attempts");
    if (a != NULL && !json_is_null(a)) {
        if (!json_is_integer(a) || json_integer_value(a) < 0 ||
            json_integer_value(a) > SK__RETRY_MAX_ATTEMPTS) {
            return SK_FAIL(SK_EPROTO, "policy.retries.attempts: expected an integer 0..%d",
                           SK__RETRY_MAX_ATTEMPTS);
        }
        out->retry.attempts = (int)json_integer_value(a);
    }
    st = policy_duration(r, "perTryTimeout", "policy.retries.perTryTimeout",
                         &out->retry.per_try_timeout_ms);
    if (st != SK_OK) {
        return st;
    }
    const json_t *on = json_object_get(r, "retryOn");
    if (on != NULL && !json_is_null(on)) {
        if (!json_is_string(on)) {
            return SK_FAIL(SK_EPROTO, "policy.retries.retryOn: expected a string such as "
                                      "\"connect-failure,reset,5xx\"");
        }
        st = sk__retry_on_parse(
            (sk_slice){ (const uint8_t *)json_string_value(on), json_string_length(on) },
            &out->retry);
        if (st != SK_OK) {
            return SK_WRAP(st, "policy.retries");
        }
    }
    return SK_OK;
}

static sk_status parse_routes(const json_t *policy, sk__upstream_policy *out)
{
    const json_t *routes = json_object_get(policy, "x-idempotent-routes");
    size_t n;

    if (routes == NULL || json_is_null(routes)) {
        return SK_OK;
    }
    if (!json_is_array(routes) || json_array_size(routes) > 64) {
        return SK_FAIL(SK_EPROTO, "policy.x-idempotent-routes: expected a list of at most 64 "
                                  "\"METHOD /path\" strings");
    }
    n = json_array_size(routes);
    out->idempotent_routes = sk_calloc(n > 0 ? n : 1, sizeof(char *));
    if (out->idempotent_routes == NULL) {
        return SK_FAIL(SK_ENOMEM, "policy.x-idempotent-routes: copying");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(routes, i);
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        const char *sp = s != NULL ? strchr(s, ' ') : NULL;
        if (s == NULL || sp == NULL || sp == s || sp[1] != '/' || strlen(s) > 256 ||
            strchr(sp + 1, ' ') != NULL) {
            return SK_FAIL(SK_EPROTO,
                           "policy.x-idempotent-routes[%zu]: expected \"METHOD /path\" (a trailing "
                           "'*' matches a prefix)",
                           i);
        }
        out->idempotent_routes[i] = sk_strdup(s);
        if (out->idempotent_routes[i] == NULL) {
            return SK_FAIL(SK_ENOMEM, "policy.x-idempotent-routes: copying");
        }
        out->n_idempotent_routes = i + 1;
    }
    return SK_OK;
}

static void policy_defaults(sk__upstream_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->lb = SK__LB_LEAST_REQUEST;
    out->pool.max_connections = UINT32_MAX;
    out->pool.connect_timeout_ms = 10000;
    out->pool.max_pending = UINT32_MAX;
    out->pool.max_requests_per_connection = 0;
    out->outlier.is_enabled = false;
    out->outlier.consecutive_5xx = 5;
    out->outlier.consecutive_gateway = 0;
    out->outlier.interval_ms = 10000;
    out->outlier.base_ejection_ms = 30000;
    out->outlier.max_ejection_ms = 300000;
    out->outlier.max_ejection_percent = 10;
    out->outlier.min_health_percent = 0;
    /* Istio's default retry policy: 2 retries on connect-failure, refused-stream, unavailable,
     * cancelled and retriable-status-codes (503). 503 is then retried only when idempotent. */
    out->retry.attempts = 2;
    out->retry.on = SK__RETRY_CONNECT_FAILURE | SK__RETRY_STATUS_CODES;
    out->retry.codes[0] = 503;
    out->retry.n_codes = 1;
}

sk_status sk__upstream_policy_parse(const json_t *policy, sk__upstream_policy *out)
{
    static const char *const top_unsupported[] = { "mirror",  "mirrorPercentage", "corsPolicy",
                                                   "rewrite", "redirect",         "headers",
                                                   NULL };
    sk_status st = SK_OK;
    const json_t *tp = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk__upstream_policy_parse: out must not be NULL");
    }
    policy_defaults(out);
    if (policy == NULL || json_is_null(policy)) {
        goto out;
    }
    if (!json_is_object(policy)) {
        return SK_FAIL(SK_EPROTO, "policy: expected an object");
    }
    for (size_t i = 0; top_unsupported[i] != NULL; i++) {
        if (json_object_get(policy, top_unsupported[i]) != NULL) {
            st = SK_FAIL(SK_EPROTO,
                         "policy.%s: an Istio field the in-process mesh does not implement",
                         top_unsupported[i]);
            goto out;
        }
    }
    static const char *const objects[] = { "trafficPolicy", "retries", "fault" };
    for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++) {
        const json_t *v = json_object_get(policy, objects[i]);
        if (v != NULL && !json_is_null(v) && !json_is_object(v)) {
            st = SK_FAIL(SK_EPROTO, "policy.%s: expected an object", objects[i]);
            goto out;
        }
    }
    st = policy_duration(policy, "timeout", "policy.timeout", &out->timeout_ms);
    if (st == SK_OK) {
        st = policy_object(policy, "trafficPolicy", "policy.trafficPolicy", &tp);
    }
    if (st == SK_OK && tp != NULL) {
        static const char *const tp_keys[] = { "loadBalancer", "connectionPool", "outlierDetection",
                                               NULL };
        static const char *const tp_unsupported[] = { "tls", "portLevelSettings", "tunnel",
                                                      "proxyProtocol", NULL };
        st = policy_keys(tp, "policy.trafficPolicy", tp_keys, tp_unsupported);
        if (st == SK_OK) {
            st = parse_lb(tp, out);
        }
        if (st == SK_OK) {
            st = parse_pool(tp, out);
        }
        if (st == SK_OK) {
            st = parse_outlier(tp, out);
        }
    }
    if (st == SK_OK) {
        st = parse_retries(policy, out);
    }
    if (st == SK_OK) {
        st = sk__fault_parse(json_object_get(policy, "fault"), "policy.fault", &out->fault);
    }
    if (st == SK_OK) {
        st = parse_routes(policy, out);
    }
    if (st == SK_OK) {
        out->raw = json_deep_copy(policy);
        if (out->raw == NULL) {
            st = SK_FAIL(SK_ENOMEM, "policy: copying the object");
        }
    }
out:
    out->retries_attempts = out->retry.attempts;
    out->per_try_timeout_ms = out->retry.per_try_timeout_ms;
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
    for (size_t i = 0; p->idempotent_routes != NULL && i < p->n_idempotent_routes; i++) {
        sk_free(p->idempotent_routes[i]);
    }
    sk_free(p->idempotent_routes);
    json_decref(p->raw);
    memset(p, 0, sizeof(*p));
}
