/* SPDX-License-Identifier: MIT */
/*
 * The system file (skald.yaml): parse with sk_yaml_parse, validate every
 * field and build sk_system. Errors name the file and the field path
 * ("skald.yaml: services.order.instances: expected an integer in 1..16, got
 * 0"). Unknown keys inside services, routes, upstreams and authorization
 * rules are errors (typo protection); keys starting with "x-" are ignored
 * there for extensions. Top-level and gateway sections stay open for other
 * modules, which read them from sys->root. An sk_system is immutable after
 * parsing and may be read from any thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_int.h"

#define PATH_MAX_LEN 256
#define IDENT_MAX 64
#define DEFAULT_GATEWAY_PORT 8080

static const char *const methods_allowed[] = { "GET", "POST", "PUT", "PATCH", "DELETE", NULL };
static const char *const service_keys[] = { "context", "instances", "database", "gateway",
                                            "commands", "queries", "emits", "consumes",
                                            "upstreams", "authorization", NULL };
static const char *const route_keys[] = { "method", "path", "service", "target", NULL };
static const char *const upstream_keys[] = { "service", "trafficPolicy", "retries", "timeout",
                                             "fault", NULL };
static const char *const authz_keys[] = { "from", "methods", "paths", NULL };
static const char *const broker_keys[] = { "nodes", "replicas", NULL };

/* ------------------------------------------------------------ destroy */

static void str_list_free(char **list, size_t n)
{
    if (list == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sk_free(list[i]);
    }
    sk_free(list);
}

static void service_fini(sk_sys_service *s)
{
    sk_free(s->name);
    sk_free(s->context);
    sk_free(s->database);
    str_list_free(s->commands, s->n_commands);
    str_list_free(s->queries, s->n_queries);
    str_list_free(s->emits, s->n_emits);
    str_list_free(s->consumes, s->n_consumes);
    if (s->upstreams != NULL) {
        for (size_t i = 0; i < s->n_upstreams; i++) {
            sk_free(s->upstreams[i].service);
        }
        sk_free(s->upstreams);
    }
    if (s->authz != NULL) {
        for (size_t i = 0; i < s->n_authz; i++) {
            str_list_free(s->authz[i].from, s->authz[i].n_from);
            str_list_free(s->authz[i].methods, s->authz[i].n_methods);
            sk_free(s->authz[i].path_prefix);
        }
        sk_free(s->authz);
    }
}

void sk_system_destroy(sk_system *sys)
{
    if (sys == NULL) {
        return;
    }
    sk_free(sys->name);
    if (sys->services != NULL) {
        for (size_t i = 0; i < sys->n_services; i++) {
            service_fini(&sys->services[i]);
        }
        sk_free(sys->services);
    }
    if (sys->routes != NULL) {
        for (size_t i = 0; i < sys->n_routes; i++) {
            sk_free(sys->routes[i].method);
            sk_free(sys->routes[i].path);
            sk_free(sys->routes[i].service);
            sk_free(sys->routes[i].target);
        }
        sk_free(sys->routes);
    }
    json_decref(sys->root);
    sk_free(sys);
}

const sk_sys_service *sk_system_service_find(const sk_system *sys, const char *name)
{
    if (sys == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sys->n_services; i++) {
        if (strcmp(sys->services[i].name, name) == 0) {
            return &sys->services[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ helpers */

typedef struct vctx {
    const char *origin;
} vctx;

static sk_status bad(const vctx *v, const char *path, const char *fmt, ...) SK_PRINTF(3, 4);

static sk_status bad(const vctx *v, const char *path, const char *fmt, ...)
{
    char problem[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    return SK_FAIL(SK_EPROTO, "%s: %s: %s", v->origin, path, problem);
}

static sk_status oom(const vctx *v)
{
    return SK_FAIL(SK_ENOMEM, "%s: out of memory building the system", v->origin);
}

/* Join a field path; names are bounded, so truncation only shortens messages. */
static void join(char *out, const char *base, const char *key)
{
    int n = snprintf(out, PATH_MAX_LEN, "%s%s%s", base, base[0] != '\0' ? "." : "", key);
    if (n < 0 || n >= PATH_MAX_LEN) {
        out[PATH_MAX_LEN - 1] = '\0'; /* a shortened path in an error message is fine */
    }
}

static void join_index(char *out, const char *base, size_t i)
{
    int n = snprintf(out, PATH_MAX_LEN, "%s[%zu]", base, i);
    if (n < 0 || n >= PATH_MAX_LEN) {
        out[PATH_MAX_LEN - 1] = '\0';
    }
}

bool sk__system_name_is_valid(const char *s)
{
    size_t n;

    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z')) {
        return false;
    }
    for (n = 1; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool ident_is_valid(const char *s)
{
    size_t n;

    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
        return false;
    }
    for (n = 1; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= IDENT_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (strcmp(s, *list) == 0) {
            return true;
        }
    }
    return false;
}

/* Shorten untrusted text for an error message. */
static const char *ell(const char *s)
{
    return strlen(s) > 40 ? "..." : "";
}

static sk_status check_keys(const vctx *v, const char *path, const json_t *obj,
                            const char *const *allowed)
{
    const char *key;
    json_t *val;
    char p[PATH_MAX_LEN];
    char list[256];
    size_t len = 0;

    json_object_foreach ((json_t *)obj, key, val) {
        (void)val;
        if (strncmp(key, "x-", 2) == 0 || in_list(key, allowed)) {
            continue;
        }
        list[0] = '\0';
        for (size_t i = 0; allowed[i] != NULL && len < sizeof(list); i++) {
            int n = snprintf(list + len, sizeof(list) - len, "%s%s", i > 0 ? ", " : "",
                             allowed[i]);
            len += n > 0 ? (size_t)n : 0;
        }
        join(p, path, key);
        return bad(v, p, "unknown key (expected one of: %s; or x-... for extensions)", list);
    }
    return SK_OK;
}

/* Optional string member: *out NULL when absent. */
static sk_status opt_string(const vctx *v, const char *base, const json_t *obj, const char *key,
                            const char **out)
{
    json_t *m = json_object_get(obj, key);
    char p[PATH_MAX_LEN];

    *out = NULL;
    if (m == NULL) {
        return SK_OK;
    }
    join(p, base, key);
    if (!json_is_string(m)) {
        return bad(v, p, "expected a string, got %s", sk__json_type_name(m));
    }
    if (strlen(json_string_value(m)) != json_string_length(m)) {
        return bad(v, p, "must not contain NUL characters");
    }
    *out = json_string_value(m);
    return SK_OK;
}

static sk_status req_string(const vctx *v, const char *base, const json_t *obj, const char *key,
                            const char **out)
{
    sk_status st = opt_string(v, base, obj, key, out);
    char p[PATH_MAX_LEN];

    if (st == SK_OK && *out == NULL) {
        join(p, base, key);
        return bad(v, p, "required");
    }
    return st;
}

static sk_status name_field(const vctx *v, const char *base, const json_t *obj, const char *key,
                            const char *dflt, char **out)
{
    const char *s;
    char p[PATH_MAX_LEN];
    sk_status st = opt_string(v, base, obj, key, &s);

    if (st != SK_OK) {
        return st;
    }
    if (s == NULL) {
        s = dflt;
    } else if (!sk__system_name_is_valid(s)) {
        join(p, base, key);
        return bad(v, p, "expected a name matching [a-z][a-z0-9-]{0,31}, got \"%.40s%s\"", s,
                   ell(s));
    }
    *out = sk_strdup(s);
    return *out == NULL ? oom(v) : SK_OK;
}

/* A list of strings checked by @p valid; NULL/absent gives an empty list. */
static sk_status str_list(const vctx *v, const char *path, const json_t *arr,
                          bool (*valid)(const char *), const char *expected, char ***out,
                          size_t *n_out)
{
    size_t n, i;
    char p[PATH_MAX_LEN];
    char **list;

    *out = NULL;
    *n_out = 0;
    if (arr != NULL && !json_is_array(arr) && !json_is_null(arr)) {
        return bad(v, path, "expected a list, got %s", sk__json_type_name(arr));
    }
    n = arr != NULL && json_is_array(arr) ? json_array_size(arr) : 0;
    list = sk_calloc(n > 0 ? n : 1, sizeof(*list));
    if (list == NULL) {
        return oom(v);
    }
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        const char *s;
        join_index(p, path, i);
        if (!json_is_string(e)) {
            str_list_free(list, i);
            return bad(v, p, "expected a string, got %s", sk__json_type_name(e));
        }
        s = json_string_value(e);
        if (strlen(s) != json_string_length(e) || !valid(s)) {
            str_list_free(list, i);
            return bad(v, p, "expected %s, got \"%.40s%s\"", expected, s, ell(s));
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j], s) == 0) {
                str_list_free(list, i);
                return bad(v, p, "\"%s\" is listed twice", s);
            }
        }
        list[i] = sk_strdup(s);
        if (list[i] == NULL) {
            str_list_free(list, i);
            return oom(v);
        }
    }
    *out = list;
    *n_out = n;
    return SK_OK;
}

static bool method_is_valid(const char *s)
{
    return in_list(s, methods_allowed);
}

static bool from_is_valid(const char *s)
{
    return strcmp(s, "*") == 0 || sk__system_name_is_valid(s);
}

static bool path_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~%!$&'()*+,;=:@", c) != NULL;
}

/*
 * A URL path: starts with '/', at most 256 bytes, no query, fragment, spaces
 * or control characters. With @p placeholders, "{name}" may fill a whole
 * segment; without, braces are refused.
 */
static bool path_is_valid(const char *s, bool placeholders)
{
    size_t len = strlen(s);

    if (len == 0 || len > 256 || s[0] != '/') {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        if (s[i] == '/') {
            if (s[i - 1] == '/') {
                return false; /* empty segment */
            }
            continue;
        }
        if (s[i] == '{' && placeholders && s[i - 1] == '/') {
            size_t j = i + 1;
            if (!((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_')) {
                return false;
            }
            while ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                   (s[j] >= '0' && s[j] <= '9') || s[j] == '_') {
                j++;
            }
            if (s[j] != '}' || (s[j + 1] != '/' && s[j + 1] != '\0')) {
                return false;
            }
            i = j;
            continue;
        }
        if (!path_char_ok(s[i])) {
            return false;
        }
    }
    return true;
}

static bool prefix_is_valid(const char *s)
{
    return path_is_valid(s, false);
}

/* True when placeholder "{name}" (with braces, @p len bytes) occurs in @p path. */
static bool has_placeholder(const char *path, const char *ph, size_t len)
{
    for (const char *p = strchr(path, '{'); p != NULL; p = strchr(p + 1, '{')) {
        if (strncmp(p, ph, len) == 0) {
            return true;
        }
    }
    return false;
}

/* Istio duration: digits, optional fraction, unit ms/s/m/h ("2s", "500ms", "1.5s"). */
static bool duration_is_valid(const char *s)
{
    size_t i = 0;

    if (!(s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (s[i] == '.') {
        i++;
        if (!(s[i] >= '0' && s[i] <= '9')) {
            return false;
        }
        while (s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    return strcmp(s + i, "ms") == 0 || strcmp(s + i, "s") == 0 || strcmp(s + i, "m") == 0 ||
           strcmp(s + i, "h") == 0;
}

/* ------------------------------------------------------------ services */

static sk_status read_upstreams(const vctx *v, const char *base, const json_t *svc,
                                sk_sys_service *s)
{
    json_t *arr = json_object_get(svc, "upstreams");
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN], q[PATH_MAX_LEN];
    size_t n;
    sk_status st;

    join(path, base, "upstreams");
    if (arr == NULL || json_is_null(arr)) {
        return SK_OK;
    }
    if (!json_is_array(arr)) {
        return bad(v, path, "expected a list, got %s", sk__json_type_name(arr));
    }
    n = json_array_size(arr);
    s->upstreams = sk_calloc(n > 0 ? n : 1, sizeof(*s->upstreams));
    if (s->upstreams == NULL) {
        return oom(v);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *u = json_array_get(arr, i);
        const char *name, *timeout;
        static const char *const object_keys[] = { "trafficPolicy", "retries", "fault", NULL };

        join_index(p, path, i);
        if (!json_is_object(u)) {
            return bad(v, p, "expected a mapping, got %s", sk__json_type_name(u));
        }
        st = check_keys(v, p, u, upstream_keys);
        if (st == SK_OK) {
            st = req_string(v, p, u, "service", &name);
        }
        if (st == SK_OK && !sk__system_name_is_valid(name)) {
            join(q, p, "service");
            st = bad(v, q, "expected a service name, got \"%.40s%s\"", name, ell(name));
        }
        for (size_t j = 0; st == SK_OK && j < s->n_upstreams; j++) {
            if (strcmp(s->upstreams[j].service, name) == 0) {
                join(q, p, "service");
                st = bad(v, q, "upstream \"%s\" is listed twice", name);
            }
        }
        for (size_t k = 0; st == SK_OK && object_keys[k] != NULL; k++) {
            json_t *o = json_object_get(u, object_keys[k]);
            if (o != NULL && !json_is_object(o)) {
                join(q, p, object_keys[k]);
                st = bad(v, q, "expected a mapping, got %s", sk__json_type_name(o));
            }
        }
        if (st == SK_OK) {
            st = opt_string(v, p, u, "timeout", &timeout);
        }
        if (st == SK_OK && timeout != NULL && !duration_is_valid(timeout)) {
            join(q, p, "timeout");
            st = bad(v, q, "expected a duration like 2s or 500ms, got \"%.40s%s\"", timeout,
                     ell(timeout));
        }
        if (st != SK_OK) {
            return st;
        }
        s->upstreams[s->n_upstreams].service = sk_strdup(name);
        if (s->upstreams[s->n_upstreams].service == NULL) {
            return oom(v);
        }
        s->upstreams[s->n_upstreams].policy = u; /* borrowed from sys->root */
        s->n_upstreams++;
    }
    return SK_OK;
}

static sk_status copy_list(char **src, size_t n, char ***out)
{
    *out = sk_calloc(n > 0 ? n : 1, sizeof(char *));
    if (*out == NULL) {
        return SK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        (*out)[i] = sk_strdup(src[i]);
        if ((*out)[i] == NULL) {
            return SK_ENOMEM; /* the caller frees the partial list: entries are NULL-safe */
        }
    }
    return SK_OK;
}

static sk_status read_authz(const vctx *v, const char *base, const json_t *svc, sk_sys_service *s)
{
    json_t *arr = json_object_get(svc, "authorization");
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN], q[PATH_MAX_LEN];
    sk_status st = SK_OK;
    size_t n, total = 0;

    join(path, base, "authorization");
    if (arr == NULL || json_is_null(arr)) {
        return SK_OK;
    }
    if (!json_is_array(arr)) {
        return bad(v, path, "expected a list, got %s", sk__json_type_name(arr));
    }
    n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *paths = json_object_get(json_array_get(arr, i), "paths");
        total += json_is_array(paths) ? json_array_size(paths) : 0;
    }
    s->authz = sk_calloc(total > 0 ? total : 1, sizeof(*s->authz));
    if (s->authz == NULL) {
        return oom(v);
    }
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        json_t *r = json_array_get(arr, i);
        char **from = NULL, **methods = NULL, **prefixes = NULL;
        size_t n_from = 0, n_methods = 0, n_prefixes = 0;

        join_index(p, path, i);
        if (!json_is_object(r)) {
            return bad(v, p, "expected a mapping, got %s", sk__json_type_name(r));
        }
        st = check_keys(v, p, r, authz_keys);
        if (st == SK_OK) {
            join(q, p, "from");
            st = str_list(v, q, json_object_get(r, "from"), from_is_valid,
                          "a service name or \"*\"", &from, &n_from);
            if (st == SK_OK && n_from == 0) {
                st = bad(v, q, "required: a non-empty list of service names or \"*\"");
            }
        }
        if (st == SK_OK) {
            join(q, p, "methods");
            st = str_list(v, q, json_object_get(r, "methods"), method_is_valid,
                          "one of GET, POST, PUT, PATCH, DELETE", &methods, &n_methods);
        }
        if (st == SK_OK) {
            join(q, p, "paths");
            st = str_list(v, q, json_object_get(r, "paths"), prefix_is_valid,
                          "a path prefix starting with '/'", &prefixes, &n_prefixes);
            if (st == SK_OK && n_prefixes == 0) {
                st = bad(v, q, "required: a non-empty list of path prefixes");
            }
        }
        /* One rule per prefix, each owning its own copies of from and methods. */
        for (size_t k = 0; st == SK_OK && k < n_prefixes; k++) {
            sk_sys_authz_rule *rule = &s->authz[s->n_authz];
            SK_ASSERT(s->n_authz < total);
            rule->path_prefix = prefixes[k];
            prefixes[k] = NULL;
            rule->n_from = n_from;
            rule->n_methods = n_methods;
            s->n_authz++;
            if (copy_list(from, n_from, &rule->from) != SK_OK ||
                copy_list(methods, n_methods, &rule->methods) != SK_OK) {
                st = oom(v);
            }
        }
        str_list_free(from, n_from);
        str_list_free(methods, n_methods);
        str_list_free(prefixes, n_prefixes);
    }
    return st;
}

static sk_status read_service(const vctx *v, const char *name, const json_t *svc,
                              sk_sys_service *s)
{
    static const struct {
        const char *key;
        size_t off_list;
        size_t off_n;
    } lists[] = {
        { "commands", offsetof(sk_sys_service, commands), offsetof(sk_sys_service, n_commands) },
        { "queries", offsetof(sk_sys_service, queries), offsetof(sk_sys_service, n_queries) },
        { "emits", offsetof(sk_sys_service, emits), offsetof(sk_sys_service, n_emits) },
        { "consumes", offsetof(sk_sys_service, consumes), offsetof(sk_sys_service, n_consumes) },
    };
    char base[PATH_MAX_LEN], p[PATH_MAX_LEN];
    const char *db;
    json_t *m;
    sk_status st;

    (void)snprintf(base, sizeof(base), "services.%s", name);
    if (!sk__system_name_is_valid(name)) {
        return bad(v, base, "service names must match [a-z][a-z0-9-]{0,31}");
    }
    s->name = sk_strdup(name);
    if (s->name == NULL) {
        return oom(v);
    }
    s->instances = 1;
    if (json_is_null(svc)) {
        svc = NULL; /* "psp:" with nothing under it: all defaults */
    } else if (!json_is_object(svc)) {
        return bad(v, base, "expected a mapping, got %s", sk__json_type_name(svc));
    }
    if (svc != NULL) {
        st = check_keys(v, base, svc, service_keys);
        if (st != SK_OK) {
            return st;
        }
    }
    st = name_field(v, base, svc, "context", name, &s->context);
    if (st != SK_OK) {
        return st;
    }
    m = json_object_get(svc, "instances");
    if (m != NULL) {
        join(p, base, "instances");
        if (!json_is_integer(m) || json_integer_value(m) < 1 || json_integer_value(m) > 16) {
            return bad(v, p, "expected an integer in 1..16, got %s",
                       json_is_integer(m) ? "out of range" : sk__json_type_name(m));
        }
        s->instances = (int)json_integer_value(m);
    }
    st = opt_string(v, base, svc, "database", &db);
    if (st != SK_OK) {
        return st;
    }
    if (db != NULL && strcmp(db, "none") == 0) {
        s->database = sk_strdup("");
    } else if (db != NULL && !sk__system_name_is_valid(db)) {
        join(p, base, "database");
        return bad(v, p, "expected \"none\" or a name matching [a-z][a-z0-9-]{0,31}, got \"%.40s%s\"",
                   db, ell(db));
    } else {
        s->database = sk_strdup(db != NULL ? db : name);
    }
    if (s->database == NULL) {
        return oom(v);
    }
    m = json_object_get(svc, "gateway");
    if (m != NULL) {
        if (!json_is_boolean(m)) {
            join(p, base, "gateway");
            return bad(v, p, "expected true or false, got %s", sk__json_type_name(m));
        }
        s->is_gateway = json_is_true(m);
    }
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        join(p, base, lists[i].key);
        st = str_list(v, p, json_object_get(svc, lists[i].key), ident_is_valid,
                      "an identifier like OrderCreated ([A-Za-z][A-Za-z0-9_]{0,63})",
                      (char ***)(void *)((char *)s + lists[i].off_list),
                      (size_t *)(void *)((char *)s + lists[i].off_n));
        if (st != SK_OK) {
            return st;
        }
    }
    st = read_upstreams(v, base, svc, s);
    if (st != SK_OK) {
        return st;
    }
    return read_authz(v, base, svc, s);
}

/* ------------------------------------------------------------ gateway */

static sk_status read_routes(const vctx *v, sk_system *sys, const json_t *gw)
{
    json_t *arr = json_object_get(gw, "routes");
    const char *path_base = "gateway.routes";
    char p[PATH_MAX_LEN], q[PATH_MAX_LEN];
    size_t n;
    sk_status st = SK_OK;

    if (arr == NULL || json_is_null(arr)) {
        return SK_OK;
    }
    if (!json_is_array(arr)) {
        return bad(v, path_base, "expected a list, got %s", sk__json_type_name(arr));
    }
    n = json_array_size(arr);
    sys->routes = sk_calloc(n > 0 ? n : 1, sizeof(*sys->routes));
    if (sys->routes == NULL) {
        return oom(v);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(arr, i);
        const char *method = NULL, *path = NULL, *service = NULL, *target = NULL;
        sk_sys_route *route;

        join_index(p, path_base, i);
        if (!json_is_object(r)) {
            return bad(v, p, "expected a mapping, got %s", sk__json_type_name(r));
        }
        st = check_keys(v, p, r, route_keys);
        if (st == SK_OK) {
            st = req_string(v, p, r, "method", &method);
        }
        if (st == SK_OK && !method_is_valid(method)) {
            join(q, p, "method");
            st = bad(v, q, "expected one of GET, POST, PUT, PATCH, DELETE, got \"%.40s%s\"",
                     method, ell(method));
        }
        if (st == SK_OK) {
            st = req_string(v, p, r, "path", &path);
        }
        if (st == SK_OK && !path_is_valid(path, true)) {
            join(q, p, "path");
            st = bad(v, q, "expected a path starting with '/' (placeholders as whole {segments}), got \"%.40s%s\"",
                     path, ell(path));
        }
        if (st == SK_OK) {
            st = req_string(v, p, r, "service", &service);
        }
        if (st == SK_OK && sk_system_service_find(sys, service) == NULL) {
            join(q, p, "service");
            st = bad(v, q, "no service named \"%.40s%s\" in services", service, ell(service));
        }
        if (st == SK_OK) {
            st = req_string(v, p, r, "target", &target);
        }
        if (st == SK_OK && !path_is_valid(target, true)) {
            join(q, p, "target");
            st = bad(v, q, "expected a path starting with '/' (placeholders as whole {segments}), got \"%.40s%s\"",
                     target, ell(target));
        }
        for (const char *ph = st == SK_OK ? strchr(target, '{') : NULL; ph != NULL;
             ph = strchr(ph + 1, '{')) {
            size_t len = (size_t)(strchr(ph, '}') - ph) + 1;
            if (!has_placeholder(path, ph, len)) {
                join(q, p, "target");
                st = bad(v, q, "placeholder %.*s does not appear in path %s", (int)len, ph, path);
                break;
            }
        }
        for (size_t j = 0; st == SK_OK && j < sys->n_routes; j++) {
            if (strcmp(sys->routes[j].method, method) == 0 &&
                strcmp(sys->routes[j].path, path) == 0) {
                st = bad(v, p, "%s %s is already routed by gateway.routes[%zu]", method, path, j);
            }
        }
        if (st != SK_OK) {
            return st;
        }
        route = &sys->routes[sys->n_routes++];
        route->method = sk_strdup(method);
        route->path = sk_strdup(path);
        route->service = sk_strdup(service);
        route->target = sk_strdup(target);
        if (route->method == NULL || route->path == NULL || route->service == NULL ||
            route->target == NULL) {
            return oom(v);
        }
    }
    return SK_OK;
}

static sk_status read_gateway(const vctx *v, sk_system *sys, const json_t *root)
{
    json_t *gw = json_object_get(root, "gateway");
    json_t *port;

    sys->gateway_port = DEFAULT_GATEWAY_PORT;
    if (gw == NULL || json_is_null(gw)) {
        return SK_OK;
    }
    if (!json_is_object(gw)) {
        return bad(v, "gateway", "expected a mapping, got %s", sk__json_type_name(gw));
    }
    port = json_object_get(gw, "port");
    if (port != NULL) {
        if (!json_is_integer(port) || json_integer_value(port) < 1 ||
            json_integer_value(port) > 65535) {
            return bad(v, "gateway.port", "expected an integer in 1..65535, got %s",
                       json_is_integer(port) ? "out of range" : sk__json_type_name(port));
        }
        sys->gateway_port = (int)json_integer_value(port);
    }
    return read_routes(v, sys, gw);
}

/*
 * broker: {nodes: N, replicas: R}. Both optional; R defaults to N. Unknown
 * keys are errors like in services (x-... allowed).
 */
static sk_status read_broker(const vctx *v, sk_system *sys, const json_t *root)
{
    json_t *b = json_object_get(root, "broker");
    static const char *const fields[] = { "nodes", "replicas" };
    int values[2] = { 1, 0 };
    sk_status st;

    if (b != NULL && !json_is_null(b)) {
        if (!json_is_object(b)) {
            return bad(v, "broker", "expected a mapping, got %s", sk__json_type_name(b));
        }
        st = check_keys(v, "broker", b, broker_keys);
        if (st != SK_OK) {
            return st;
        }
        for (size_t i = 0; i < 2; i++) {
            json_t *m = json_object_get(b, fields[i]);
            int max = i == 0 ? SK_SYS_BROKER_MAX_NODES : values[0];
            char p[PATH_MAX_LEN];
            if (m == NULL || json_is_null(m)) {
                continue;
            }
            join(p, "broker", fields[i]);
            if (!json_is_integer(m) || json_integer_value(m) < 1 ||
                json_integer_value(m) > max) {
                return bad(v, p, "expected an integer in 1..%d%s, got %s", max,
                           i == 1 ? " (at most broker.nodes)" : "",
                           json_is_integer(m) ? "out of range" : sk__json_type_name(m));
            }
            values[i] = (int)json_integer_value(m);
        }
    }
    sys->broker.nodes = values[0];
    sys->broker.replicas = values[1] > 0 ? values[1] : values[0];
    return SK_OK;
}

/* ------------------------------------------------------------ cross-checks */

static sk_status check_references(const vctx *v, const sk_system *sys)
{
    const sk_sys_service *gateway = NULL;
    char p[PATH_MAX_LEN];

    for (size_t i = 0; i < sys->n_services; i++) {
        const sk_sys_service *s = &sys->services[i];
        if (s->is_gateway) {
            if (gateway != NULL) {
                (void)snprintf(p, sizeof(p), "services.%s.gateway", s->name);
                return bad(v, p, "only one service may be the gateway; %s already is",
                           gateway->name);
            }
            gateway = s;
        }
        for (size_t j = 0; s->database[0] != '\0' && j < i; j++) {
            if (strcmp(sys->services[j].database, s->database) == 0) {
                (void)snprintf(p, sizeof(p), "services.%s.database", s->name);
                return bad(v, p, "database \"%s\" is already used by service %s (one database per service)",
                           s->database, sys->services[j].name);
            }
        }
        for (size_t j = 0; j < s->n_upstreams; j++) {
            if (sk_system_service_find(sys, s->upstreams[j].service) == NULL) {
                (void)snprintf(p, sizeof(p), "services.%s.upstreams[%zu].service", s->name, j);
                return bad(v, p, "no service named \"%s\" in services", s->upstreams[j].service);
            }
        }
        for (size_t j = 0; j < s->n_authz; j++) {
            for (size_t k = 0; k < s->authz[j].n_from; k++) {
                const char *from = s->authz[j].from[k];
                if (strcmp(from, "*") != 0 && sk_system_service_find(sys, from) == NULL) {
                    (void)snprintf(p, sizeof(p), "services.%s.authorization", s->name);
                    return bad(v, p, "from: no service named \"%s\" in services", from);
                }
            }
        }
    }
    return SK_OK;
}

/* ------------------------------------------------------------ entry points */

sk_status sk_system_parse(sk_slice text, const char *origin, sk_system **out)
{
    sk_status st;
    sk_system *sys = NULL;
    json_t *root = NULL, *services;
    const char *name, *key;
    json_t *val;
    vctx v;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_system_parse: out must not be NULL");
    }
    *out = NULL;
    if (text.ptr == NULL && text.len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_system_parse: text.ptr must not be NULL when len > 0");
    }
    v.origin = origin != NULL ? origin : "<system>";
    st = sk_yaml_parse(text, v.origin, &root);
    if (st != SK_OK) {
        return st;
    }
    if (!json_is_object(root)) {
        st = SK_FAIL(SK_EPROTO, "%s: expected a mapping at the top level, got %s", v.origin,
                     sk__json_type_name(root));
        goto out;
    }
    sys = sk_calloc(1, sizeof(*sys));
    if (sys == NULL) {
        st = oom(&v);
        goto out;
    }
    sys->root = root; /* owned by sys from here on */
    root = NULL;
    st = req_string(&v, "", sys->root, "system", &name);
    if (st == SK_OK && !sk__system_name_is_valid(name)) {
        st = bad(&v, "system", "expected a name matching [a-z][a-z0-9-]{0,31}, got \"%.40s%s\"",
                 name, ell(name));
    }
    if (st != SK_OK) {
        goto out;
    }
    sys->name = sk_strdup(name);
    if (sys->name == NULL) {
        st = oom(&v);
        goto out;
    }
    services = json_object_get(sys->root, "services");
    if (services == NULL) {
        st = bad(&v, "services", "required");
        goto out;
    }
    if (!json_is_object(services) || json_object_size(services) == 0) {
        st = bad(&v, "services", "expected a mapping of at least one service, got %s",
                 json_is_object(services) ? "an empty one" : sk__json_type_name(services));
        goto out;
    }
    sys->services = sk_calloc(json_object_size(services), sizeof(*sys->services));
    if (sys->services == NULL) {
        st = oom(&v);
        goto out;
    }
    json_object_foreach (services, key, val) {
        /* Count first, so that destroy frees a half-read service too. */
        sk_sys_service *s = &sys->services[sys->n_services++];
        st = read_service(&v, key, val, s);
        if (st != SK_OK) {
            goto out;
        }
    }
    st = read_gateway(&v, sys, sys->root);
    if (st == SK_OK) {
        st = read_broker(&v, sys, sys->root);
    }
    if (st == SK_OK) {
        st = check_references(&v, sys);
    }
    if (st == SK_OK) {
        *out = sys;
        sys = NULL;
    }
out:
    sk_system_destroy(sys);
    json_decref(root);
    return st;
}

sk_status sk_system_load(const char *path, sk_system **out)
{
    sk_status st;
    struct stat sb;
    sk_buf b;
    char chunk[8192];
    int fd;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_system_load: out must not be NULL");
    }
    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "sk_system_load: path must be a non-empty string");
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return SK_FAIL(SK_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        (void)close(fd);
        return SK_FAIL(SK_EIO, "%s: not a regular file", path);
    }
    if (sb.st_size > (off_t)SK_MAX_CONFIG_BYTES) {
        (void)close(fd);
        return SK_FAIL(SK_ELIMIT, "%s: %lld bytes is more than the limit of %u bytes", path,
                       (long long)sb.st_size, SK_MAX_CONFIG_BYTES);
    }
    /* The buffer's limit also catches a file that grows while we read it. */
    sk_buf_init(&b, SK_MAX_CONFIG_BYTES);
    st = SK_OK;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            st = SK_FAIL(SK_EIO, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        st = sk_buf_append(&b, chunk, (size_t)n);
        if (st != SK_OK) {
            st = SK_WRAP(st, "%s", path);
            break;
        }
    }
    (void)close(fd);
    if (st == SK_OK) {
        sk_slice s = { (const uint8_t *)b.data, b.len };
        st = sk_system_parse(s, path, out);
    }
    sk_buf_fini(&b);
    return st;
}
