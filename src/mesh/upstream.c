/* SPDX-License-Identifier: MIT */
/*
 * Upstream: one named service reached through the HTTP client, its endpoint
 * set (replaced wholesale by discovery) and its traffic policy. Requests go
 * round-robin over a snapshot of the endpoints taken under the lock; the
 * policy's timeout is applied, the rest of the policy waits in
 * sk__upstream_policy for outlier detection, pool limits, retries and
 * faults. Thread-safe.
 */
#include "mesh/mesh_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_ENDPOINTS    1024u
#define MAX_ENDPOINT_LEN 255u

struct sk_upstream {
    sk_http_client *client; /* borrowed; outlives the upstream */
    char *service;
    sk__upstream_policy policy;
    sk_metrics *metrics;
    sk_counter *n_ok;    /* responses (any status) */
    sk_counter *n_error; /* transport failures */
    pthread_mutex_t mu;  /* protects endpoints, n_endpoints */
    char **endpoints;
    size_t n_endpoints;
    _Atomic uint64_t next; /* round-robin cursor */
};

/* The completion of one upstream request: counts the outcome, then calls the caller. */
typedef struct up_call {
    sk_upstream *u;
    sk_http_done_fn done;
    void *ctx;
} up_call;

static void lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) != 0) {
        abort();
    }
}

static void unlock(pthread_mutex_t *mu)
{
    if (pthread_mutex_unlock(mu) != 0) {
        abort();
    }
}

static void endpoints_free(char **eps, size_t n)
{
    for (size_t i = 0; eps != NULL && i < n; i++) {
        sk_free(eps[i]);
    }
    sk_free(eps);
}

/* "host:port" with an IPv4 address or name, or "[v6]:port"; port 1..65535. */
static bool endpoint_is_valid(const char *s)
{
    size_t n = strlen(s);
    const char *colon = strrchr(s, ':');
    long port = 0;

    if (n == 0 || n > MAX_ENDPOINT_LEN || colon == NULL || colon == s || colon[1] == '\0') {
        return false;
    }
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || port > 65535) {
            return false;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        return false;
    }
    if (s[0] == '[') {
        if (colon[-1] != ']') {
            return false;
        }
        for (const char *p = s + 1; p < colon - 1; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.')) {
                return false;
            }
        }
        return colon - s > 2;
    }
    for (const char *p = s; p < colon; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '.' || *p == '-')) {
            return false;
        }
    }
    return true;
}

sk_status sk_upstream_create(sk_upstream **out,
                             sk_http_client *client,
                             const char *service,
                             const json_t *policy,
                             sk_metrics *metrics)
{
    sk_status st = SK_OK;
    sk_upstream *u = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: out must not be NULL");
    }
    *out = NULL;
    if (client == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: client must not be NULL");
    }
    if (service == NULL || service[0] == '\0' || strlen(service) > SK_MESH_MAX_SERVICE ||
        strspn(service, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(service)) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_create: service must be 1..%d of [a-z0-9-]",
                       SK_MESH_MAX_SERVICE);
    }
    u = sk_calloc(1, sizeof(*u));
    if (u == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_upstream_create: allocating the upstream");
    }
    if (pthread_mutex_init(&u->mu, NULL) != 0) {
        abort();
    }
    u->client = client;
    u->metrics = metrics;
    u->service = sk_strdup(service);
    if (u->service == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_upstream_create: copying the service name");
        goto out;
    }
    st = sk__upstream_policy_parse(policy, &u->policy);
    if (st != SK_OK) {
        st = SK_WRAP(st, "upstream %s", service);
        goto out;
    }
    if (metrics != NULL) {
        char labels[80];
        snprintf(labels, sizeof(labels), "upstream=\"%s\",outcome=\"response\"", service);
        u->n_ok = sk_metrics_counter(metrics, "sk_upstream_requests_total",
                                     "Upstream requests by outcome", labels);
        snprintf(labels, sizeof(labels), "upstream=\"%s\",outcome=\"error\"", service);
        u->n_error = sk_metrics_counter(metrics, "sk_upstream_requests_total",
                                        "Upstream requests by outcome", labels);
        if (u->n_ok == NULL || u->n_error == NULL) {
            st = SK_WRAP(SK_ENOMEM, "sk_upstream_create: registering metrics");
            goto out;
        }
    }
    *out = u;
    u = NULL;
out:
    sk_upstream_destroy(u);
    return st;
}

void sk_upstream_destroy(sk_upstream *u)
{
    if (u == NULL) {
        return;
    }
    endpoints_free(u->endpoints, u->n_endpoints);
    sk__upstream_policy_fini(&u->policy);
    pthread_mutex_destroy(&u->mu);
    sk_free(u->service);
    sk_free(u);
}

sk_status sk_upstream_set_endpoints(sk_upstream *u, const char *const *addrs, size_t n)
{
    char **eps = NULL;
    char **old;
    size_t n_old;

    if (u == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_set_endpoints: u must not be NULL");
    }
    if (addrs == NULL && n > 0) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_set_endpoints: addrs is NULL but n is %zu", n);
    }
    if (n > MAX_ENDPOINTS) {
        return SK_FAIL(SK_ELIMIT, "sk_upstream_set_endpoints: %zu endpoints, at most %u", n,
                       MAX_ENDPOINTS);
    }
    for (size_t i = 0; i < n; i++) {
        if (addrs[i] == NULL || !endpoint_is_valid(addrs[i])) {
            return SK_FAIL(SK_EINVAL,
                           "sk_upstream_set_endpoints: addrs[%zu] must be \"host:port\", got "
                           "\"%.64s\"",
                           i, addrs[i] != NULL ? addrs[i] : "(null)");
        }
    }
    if (n > 0) {
        eps = sk_calloc(n, sizeof(char *));
        if (eps == NULL) {
            return SK_FAIL(SK_ENOMEM, "sk_upstream_set_endpoints: copying endpoints");
        }
        for (size_t i = 0; i < n; i++) {
            eps[i] = sk_strdup(addrs[i]);
            if (eps[i] == NULL) {
                endpoints_free(eps, n);
                return SK_FAIL(SK_ENOMEM, "sk_upstream_set_endpoints: copying endpoints");
            }
        }
    }
    lock(&u->mu);
    old = u->endpoints;
    n_old = u->n_endpoints;
    u->endpoints = eps;
    u->n_endpoints = n;
    unlock(&u->mu);
    endpoints_free(old, n_old);
    return SK_OK;
}

size_t sk_upstream_endpoint_count(sk_upstream *u)
{
    size_t n;

    if (u == NULL) {
        return 0;
    }
    lock(&u->mu);
    n = u->n_endpoints;
    unlock(&u->mu);
    return n;
}

static void on_upstream_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    up_call *call = ctx;

    if (call->u->n_ok != NULL) {
        sk_counter_add(st == SK_OK ? call->u->n_ok : call->u->n_error, 1);
    }
    call->done(st, resp, call->ctx);
    sk_free(call);
}

sk_status
sk_upstream_send(sk_upstream *u, const sk_http_request *req, sk_http_done_fn done, void *ctx)
{
    sk_status st = SK_OK;
    char *url = NULL;
    up_call *call = NULL;
    sk_http_request r;
    bool is_tls;

    if (u == NULL || req == NULL || done == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_upstream_send: %s must not be NULL",
                       u == NULL     ? "u"
                       : req == NULL ? "req"
                                     : "done");
    }
    if (req->url == NULL || req->url[0] != '/') {
        return SK_FAIL(SK_EINVAL, "sk_upstream_send: req->url must be a path starting with '/'");
    }
    is_tls = sk__http_client_is_tls(u->client);
    lock(&u->mu);
    if (u->n_endpoints > 0) {
        uint64_t k = atomic_fetch_add(&u->next, 1);
        url = sk_asprintf("%s://%s%s", is_tls ? "https" : "http", u->endpoints[k % u->n_endpoints],
                          req->url);
    }
    size_t n = u->n_endpoints;
    unlock(&u->mu);
    if (n == 0) {
        return SK_FAIL(SK_EUNAVAILABLE, "upstream %s: no endpoint", u->service);
    }
    if (url == NULL) {
        return SK_FAIL(SK_ENOMEM, "upstream %s: building the URL", u->service);
    }
    call = sk_malloc(sizeof(*call));
    if (call == NULL) {
        st = SK_FAIL(SK_ENOMEM, "upstream %s: allocating the call", u->service);
        goto out;
    }
    *call = (up_call){ u, done, ctx };
    r = *req;
    r.url = url;
    r.expect_service = is_tls ? u->service : NULL;
    /* TODO(#mesh-policy): retries, outlier detection, pool limits and faults hook in here. */
    if (u->policy.timeout_ms > 0 && (r.timeout_ms == 0 || r.timeout_ms > u->policy.timeout_ms)) {
        r.timeout_ms = u->policy.timeout_ms;
    }
    st = sk_http_client_send(u->client, &r, on_upstream_done, call);
    if (st != SK_OK) {
        st = SK_WRAP(st, "upstream %s", u->service);
        goto out;
    }
    call = NULL;
out:
    sk_free(call);
    sk_free(url);
    return st;
}
