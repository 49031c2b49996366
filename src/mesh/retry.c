/* SPDX-License-Identifier: MIT */
/*
 * Retry policy (VirtualService retries with Envoy's semantics): retryOn
 * parsing, the retriable test, Envoy's fully jittered exponential back-off,
 * Retry-After parsing and the idempotency rule. Two deliberate departures
 * from the sidecars: a request that may have reached the upstream is retried
 * only when it is idempotent (istio/istio#50506: retried POSTs paid twice),
 * and 4xx answers are never retried except by explicit request (409 through
 * retriable-4xx, or a numeric code such as 429, which then waits Retry-After).
 */
#include "mesh/mesh_int.h"

#include <string.h>
#include <strings.h>
#include <time.h>

static bool word_is(const uint8_t *p, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(p, w, n) == 0;
}

static sk_status add_code(sk__retry_policy *p, int code)
{
    for (size_t i = 0; i < p->n_codes; i++) {
        if (p->codes[i] == code) {
            return SK_OK;
        }
    }
    if (p->n_codes >= SK__RETRY_MAX_CODES) {
        return SK_FAIL(SK_ELIMIT, "retryOn: at most %d status codes", SK__RETRY_MAX_CODES);
    }
    p->codes[p->n_codes++] = code;
    p->on |= SK__RETRY_STATUS_CODES;
    return SK_OK;
}

sk_status sk__retry_on_parse(sk_slice text, sk__retry_policy *p)
{
    size_t i = 0;

    if (p == NULL || (text.ptr == NULL && text.len > 0)) {
        return SK_FAIL(SK_EINVAL, "sk__retry_on_parse: NULL argument");
    }
    p->on = 0;
    p->n_codes = 0;
    while (i <= text.len) {
        size_t start = i;
        while (i < text.len && text.ptr[i] != ',') {
            i++;
        }
        const uint8_t *w = text.ptr + start;
        size_t n = i - start;
        while (n > 0 && (w[0] == ' ' || w[0] == '\t')) {
            w++;
            n--;
        }
        while (n > 0 && (w[n - 1] == ' ' || w[n - 1] == '\t')) {
            n--;
        }
        i++; /* past the comma */
        if (n == 0) {
            if (text.len == 0) {
                break; /* "" = retry on nothing */
            }
            return SK_FAIL(SK_EPROTO, "retryOn: empty entry at offset %zu", start);
        }
        if (word_is(w, n, "5xx")) {
            p->on |= SK__RETRY_5XX;
        } else if (word_is(w, n, "gateway-error")) {
            p->on |= SK__RETRY_GATEWAY_ERROR;
        } else if (word_is(w, n, "connect-failure")) {
            p->on |= SK__RETRY_CONNECT_FAILURE;
        } else if (word_is(w, n, "reset")) {
            p->on |= SK__RETRY_RESET;
        } else if (word_is(w, n, "retriable-4xx")) {
            p->on |= SK__RETRY_RETRIABLE_4XX;
        } else if (word_is(w, n, "retriable-status-codes")) {
            /* Istio's retriable status code list is 503. */
            sk_status st = add_code(p, 503);
            if (st != SK_OK) {
                return st;
            }
        } else if (word_is(w, n, "refused-stream") || word_is(w, n, "unavailable") ||
                   word_is(w, n, "cancelled") || word_is(w, n, "deadline-exceeded") ||
                   word_is(w, n, "resource-exhausted") || word_is(w, n, "internal")) {
            /* HTTP/2 and gRPC conditions: valid in Istio, never arise over our HTTP/1.1 client. */
        } else if (n == 3 && w[0] >= '1' && w[0] <= '5' && w[1] >= '0' && w[1] <= '9' &&
                   w[2] >= '0' && w[2] <= '9') {
            sk_status st = add_code(p, (w[0] - '0') * 100 + (w[1] - '0') * 10 + (w[2] - '0'));
            if (st != SK_OK) {
                return st;
            }
        } else {
            return SK_FAIL(SK_EPROTO,
                           "retryOn: unknown condition \"%.*s\" (expected 5xx, gateway-error, "
                           "connect-failure, reset, retriable-4xx, retriable-status-codes, "
                           "refused-stream, a gRPC condition or a status code such as 503)",
                           (int)(n > 40 ? 40 : n), (const char *)w);
        }
    }
    return SK_OK;
}

static bool has_code(const sk__retry_policy *p, int status)
{
    for (size_t i = 0; i < p->n_codes; i++) {
        if (p->codes[i] == status) {
            return true;
        }
    }
    return false;
}

bool sk__retry_is_retriable(const sk__retry_policy *p,
                            sk__attempt a,
                            int http_status,
                            bool is_idempotent)
{
    if (p == NULL) {
        return false;
    }
    switch (a) {
    case SK__ATTEMPT_CONNECT_FAILURE:
        /* Nothing reached the upstream: always safe. 5xx and gateway-error include it in Envoy. */
        return (p->on & (SK__RETRY_CONNECT_FAILURE | SK__RETRY_5XX | SK__RETRY_GATEWAY_ERROR |
                         SK__RETRY_RESET)) != 0;
    case SK__ATTEMPT_RESET:
    case SK__ATTEMPT_TIMEOUT:
        /* "reset" covers disconnects and read timeouts; a per-try timeout is a 504 for 5xx and
         * gateway-error. The upstream may have acted on it. */
        return is_idempotent &&
               (p->on & (SK__RETRY_RESET | SK__RETRY_5XX | SK__RETRY_GATEWAY_ERROR)) != 0;
    case SK__ATTEMPT_RESPONSE:
        if (!is_idempotent) {
            return false;
        }
        if (http_status >= 500) {
            if ((p->on & SK__RETRY_5XX) != 0) {
                return true;
            }
            if ((p->on & SK__RETRY_GATEWAY_ERROR) != 0 && http_status >= 502 &&
                http_status <= 504) {
                return true;
            }
            return has_code(p, http_status);
        }
        if (http_status == 409 && (p->on & SK__RETRY_RETRIABLE_4XX) != 0) {
            return true;
        }
        /* Other answers only when named, e.g. 429 (the caller then waits Retry-After). */
        return http_status >= 400 && has_code(p, http_status);
    case SK__ATTEMPT_OTHER:
    default:
        return false;
    }
}

int64_t sk__retry_backoff_ms(int n, uint64_t rnd)
{
    int64_t limit;

    if (n < 1) {
        n = 1;
    }
    /* (2^n - 1) x base, capped: 25, 75, 175, 250, 250 ... */
    limit = n >= 8 ? SK__RETRY_BACKOFF_MAX_MS : ((INT64_C(1) << n) - 1) * SK__RETRY_BACKOFF_BASE_MS;
    if (limit > SK__RETRY_BACKOFF_MAX_MS) {
        limit = SK__RETRY_BACKOFF_MAX_MS;
    }
    return (int64_t)(rnd % (uint64_t)limit);
}

static int month_of(const char *s)
{
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    for (int i = 0; i < 12; i++) {
        if (strncmp(s, months[i], 3) == 0) {
            return i;
        }
    }
    return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 0-based). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    m += 1;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool sk__retry_after_parse(const char *value, int64_t now_epoch_ms, int64_t *out_ms)
{
    size_t n;

    if (value == NULL || out_ms == NULL) {
        return false;
    }
    *out_ms = 0;
    n = strlen(value);
    if (n > 0 && n <= 9 && strspn(value, "0123456789") == n) {
        int64_t secs = 0;
        for (size_t i = 0; i < n; i++) {
            secs = secs * 10 + (value[i] - '0');
        }
        *out_ms = secs * 1000;
        return true;
    }
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes). */
    if (n != 29 || value[3] != ',' || value[4] != ' ' || value[7] != ' ' || value[11] != ' ' ||
        value[16] != ' ' || value[19] != ':' || value[22] != ':' || value[25] != ' ' ||
        strcmp(value + 26, "GMT") != 0) {
        return false;
    }
    const char *digits[] = { value + 5, value + 12, value + 17, value + 20, value + 23 };
    const size_t widths[] = { 2, 4, 2, 2, 2 };
    int64_t v[5];
    for (size_t k = 0; k < 5; k++) {
        v[k] = 0;
        for (size_t j = 0; j < widths[k]; j++) {
            char ch = digits[k][j];
            if (ch < '0' || ch > '9') {
                return false;
            }
            v[k] = v[k] * 10 + (ch - '0');
        }
    }
    int month = month_of(value + 8);
    if (month < 0 || v[0] < 1 || v[0] > 31 || v[2] > 23 || v[3] > 59 || v[4] > 60) {
        return false;
    }
    int64_t epoch_s =
        days_from_civil(v[1], month, (int)v[0]) * 86400 + v[2] * 3600 + v[3] * 60 + v[4];
    int64_t delta = epoch_s * 1000 - now_epoch_ms;
    *out_ms = delta > 0 ? delta : 0;
    return true;
}

static bool route_matches(const char *route, const char *method, const char *path)
{
    const char *sp = strchr(route, ' ');
    size_t mlen;
    size_t plen;

    if (sp == NULL) {
        return false;
    }
    mlen = (size_t)(sp - route);
    if (strlen(method) != mlen || strncmp(route, method, mlen) != 0) {
        return false;
    }
    route = sp + 1;
    plen = strlen(route);
    if (plen > 0 && route[plen - 1] == '*') {
        return strncmp(path, route, plen - 1) == 0;
    }
    return strcmp(path, route) == 0;
}

bool sk__http_is_idempotent(const char *method,
                            const char *path,
                            const char *const *headers,
                            char *const *routes,
                            size_t n_routes)
{
    static const char *const safe[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };

    if (method == NULL) {
        return false;
    }
    for (size_t i = 0; safe[i] != NULL; i++) {
        if (strcmp(method, safe[i]) == 0) {
            return true;
        }
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        if (strncasecmp(headers[i], "Idempotency-Key:", 16) == 0) {
            const char *v = headers[i] + 16;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            if (*v != '\0') {
                return true;
            }
        }
    }
    for (size_t i = 0; path != NULL && i < n_routes; i++) {
        if (route_matches(routes[i], method, path)) {
            return true;
        }
    }
    return false;
}
