/* SPDX-License-Identifier: MIT */
/*
 * A small HTTP router: METHOD + pattern ("/orders/{id}/cancel"), where a
 * "{name}" segment captures exactly one non-empty path segment. A path that
 * matches a pattern under another method is reported separately, so the
 * caller can answer 405 with an Allow header rather than 404.
 */
#include <stdio.h>
#include <string.h>

#include "svc.h"

#define MAX_ROUTES 64
#define MAX_SEGMENTS 16

typedef struct route {
    char *method;
    char *pattern;
    svc_route_fn fn;
    void *ctx;
} route;

struct svc_router {
    route routes[MAX_ROUTES];
    size_t n_routes;
};

sk_status svc_router_create(svc_router **out)
{
    *out = sk_calloc(1, sizeof(**out));
    if (*out == NULL) {
        return SK_FAIL(SK_ENOMEM, "svc_router_create");
    }
    return SK_OK;
}

void svc_router_destroy(svc_router *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_routes; i++) {
        sk_free(r->routes[i].method);
        sk_free(r->routes[i].pattern);
    }
    sk_free(r);
}

sk_status svc_router_add(svc_router *r, const char *method, const char *pattern, svc_route_fn fn, void *ctx)
{
    if (r == NULL || method == NULL || pattern == NULL || pattern[0] != '/' || fn == NULL) {
        return SK_FAIL(SK_EINVAL, "svc_router_add: bad arguments");
    }
    if (r->n_routes == MAX_ROUTES) {
        return SK_FAIL(SK_ELIMIT, "svc_router_add: more than %d routes", MAX_ROUTES);
    }
    route *rt = &r->routes[r->n_routes];
    rt->method = sk_strdup(method);
    rt->pattern = sk_strdup(pattern);
    if (rt->method == NULL || rt->pattern == NULL) {
        sk_free(rt->method);
        sk_free(rt->pattern);
        return SK_FAIL(SK_ENOMEM, "svc_router_add");
    }
    rt->fn = fn;
    rt->ctx = ctx;
    r->n_routes++;
    return SK_OK;
}

void svc_params_fini(svc_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        sk_free(p->names[i]);
        sk_free(p->values[i]);
        p->names[i] = NULL;
        p->values[i] = NULL;
    }
    p->n = 0;
}

const char *svc_params_get(const svc_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->names[i], name) == 0) {
            return p->values[i];
        }
    }
    return NULL;
}

/* Split "/a/b/c" into segments pointing into @p path (not NUL-terminated). */
static size_t split(const char *path, const char *seg[], size_t len[])
{
    size_t n = 0;
    const char *p = path;
    while (*p == '/') {
        p++;
        const char *start = p;
        while (*p != '\0' && *p != '/') {
            p++;
        }
        if (n == MAX_SEGMENTS) {
            return MAX_SEGMENTS + 1;
        }
        seg[n] = start;
        len[n] = (size_t)(p - start);
        n++;
    }
    return *p == '\0' ? n : MAX_SEGMENTS + 1;
}

/* True when @p path matches @p pattern; captures go to @p params when non-NULL. */
static bool matches(const route *rt, const char *path, svc_params *params)
{
    const char *ps[MAX_SEGMENTS + 1], *qs[MAX_SEGMENTS + 1];
    size_t pl[MAX_SEGMENTS + 1], ql[MAX_SEGMENTS + 1];
    size_t np = split(rt->pattern, ps, pl);
    size_t nq = split(path, qs, ql);
    if (np != nq || np > MAX_SEGMENTS) {
        return false;
    }
    for (size_t i = 0; i < np; i++) {
        bool is_capture = pl[i] >= 2 && ps[i][0] == '{' && ps[i][pl[i] - 1] == '}';
        if (is_capture) {
            if (ql[i] == 0) {
                return false;
            }
            continue;
        }
        if (pl[i] != ql[i] || memcmp(ps[i], qs[i], pl[i]) != 0) {
            return false;
        }
    }
    if (params == NULL) {
        return true;
    }
    params->n = 0;
    for (size_t i = 0; i < np; i++) {
        bool is_capture = pl[i] >= 2 && ps[i][0] == '{' && ps[i][pl[i] - 1] == '}';
        if (!is_capture || params->n == 8) {
            continue;
        }
        char *name = sk_strndup(ps[i] + 1, pl[i] - 2);
        char *value = sk_strndup(qs[i], ql[i]);
        if (name == NULL || value == NULL) {
            sk_free(name);
            sk_free(value);
            svc_params_fini(params);
            return false;
        }
        params->names[params->n] = name;
        params->values[params->n] = value;
        params->n++;
    }
    return true;
}

sk_status svc_router_match(svc_router *r,
                           const char *method,
                           const char *path,
                           svc_route_fn *fn,
                           void **ctx,
                           svc_params *params,
                           char *allow,
                           size_t allow_len)
{
    bool path_known = false;
    memset(params, 0, sizeof(*params));
    if (allow_len > 0) {
        allow[0] = '\0';
    }
    for (size_t i = 0; i < r->n_routes; i++) {
        const route *rt = &r->routes[i];
        if (!matches(rt, path, NULL)) {
            continue;
        }
        if (strcmp(rt->method, method) == 0) {
            if (!matches(rt, path, params)) {
                return SK_FAIL(SK_ENOMEM, "svc_router_match");
            }
            *fn = rt->fn;
            *ctx = rt->ctx;
            return SK_OK;
        }
        if (allow_len > 0 && strstr(allow, rt->method) == NULL) {
            size_t used = strlen(allow);
            snprintf(allow + used, allow_len - used, "%s%s", used > 0 ? ", " : "", rt->method);
        }
        path_known = true;
    }
    if (path_known) {
        return SK_FAIL(SK_ESTATE, "method %s not allowed on %s", method, path);
    }
    return SK_FAIL(SK_ENOTFOUND, "no route for %s", path);
}
