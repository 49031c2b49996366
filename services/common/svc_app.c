/* SPDX-License-Identifier: MIT */
/*
 * The composition root shared by every service: platform providers in the
 * DI container, the internal HTTPS listener with authorization, discovery
 * registration and the signal-driven run loop. Objects are created lazily,
 * in dependency order, the first time something resolves them, and torn
 * down in reverse order by sk_di_destroy.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "svc.h"
#include "svc_int.h"

/* ---------------------------------------------------------------- helpers */

sk_status svc_get(svc_app *app, const char *name, void **out)
{
    sk_status st = sk_di_resolve(app->di, name, out);
    if (st != SK_OK) {
        SK_LOG_ERROR("resolving %s: %s", name, sk_error_message());
    }
    return st;
}

/* The schema must be set before the "store" provider is resolved. */
static void set_schema(svc_app *app, const svc_schema *schema)
{
    app->schema = *schema;
}

static void state_lock(svc_app *app)
{
    if (pthread_mutex_lock(&app->state_mu) != 0) {
        abort();
    }
}

static void state_unlock(svc_app *app)
{
    if (pthread_mutex_unlock(&app->state_mu) != 0) {
        abort();
    }
}

/* What start-up waits for now, shown by /readyz until the service is wired. */
static void startup_step_set(svc_app *app, const char *fmt, ...) SK_PRINTF(2, 3);
static void startup_step_set(svc_app *app, const char *fmt, ...)
{
    va_list ap;
    state_lock(app);
    va_start(ap, fmt);
    vsnprintf(app->startup_step, sizeof(app->startup_step), fmt, ap);
    va_end(ap);
    state_unlock(app);
}

/* Sleep @p ms in small steps; false as soon as a stop is asked. */
static bool startup_wait(svc_app *app, int64_t ms)
{
    for (int64_t slept = 0; slept < ms; slept += 50) {
        if (atomic_load(&app->is_stopping)) {
            return false;
        }
        svc_sleep_ms(50);
    }
    return !atomic_load(&app->is_stopping);
}

/*
 * A start-up step failed in a way that may pass (the broker still electing):
 * name it on /readyz, log it at most every 10 s, wait 500 ms. False when a
 * stop was asked meanwhile.
 */
static bool startup_retry_wait(svc_app *app, const char *what, int64_t *last_log_ms)
{
    startup_step_set(app, "%s: %s", what, sk_error_message());
    if (sk_time_mono_ms() - *last_log_ms >= 10000) {
        *last_log_ms = sk_time_mono_ms();
        SK_LOG_WARN("%s (retrying): %s", what, sk_error_message());
    }
    return startup_wait(app, 500);
}

/* A failure that waiting cures: the broker timed out or cannot answer for now (electing). */
static bool startup_is_transient(sk_status st)
{
    return st == SK_ETIMEDOUT || st == SK_EUNAVAILABLE;
}

/*
 * Resolve @p name, waiting while the broker cannot answer (a timeout, or
 * JetStream unavailable while a cluster elects): what it creates (consumers,
 * buckets) needs JetStream. Other failures are final, as with svc_get.
 */
static sk_status startup_resolve(svc_app *app, const char *name, void **out, int64_t *last_log_ms)
{
    char what[96];
    snprintf(what, sizeof(what), "resolving %s", name);
    for (;;) {
        sk_status st = sk_di_resolve(app->di, name, out);
        if (st == SK_OK) {
            return SK_OK;
        }
        if (!startup_is_transient(st)) {
            SK_LOG_ERROR("%s: %s", what, sk_error_message());
            return st;
        }
        if (!startup_retry_wait(app, what, last_log_ms)) {
            return SK_FAIL(SK_ECANCELED, "stopping while %s", what);
        }
    }
}

/*
 * Open the store, waiting while the database cannot be opened (the data
 * directory not writable, the file locked or not a database): /readyz
 * names the reason meanwhile. Other failures (a migration, memory) are final.
 */
static sk_status store_resolve(svc_app *app, sk_store **out)
{
    int64_t last_log = 0;
    for (;;) {
        sk_status st = sk_di_resolve(app->di, "store", (void **)out);
        if (st == SK_OK) {
            state_lock(app);
            app->db_reason[0] = '\0';
            state_unlock(app);
            return SK_OK;
        }
        if (st != SK_EDB && st != SK_EIO) {
            return st;
        }
        state_lock(app);
        snprintf(app->db_reason, sizeof(app->db_reason), "%s", sk_error_message());
        state_unlock(app);
        if (sk_time_mono_ms() - last_log >= 10000) {
            last_log = sk_time_mono_ms();
            SK_LOG_WARN("database unavailable (retrying): %s", sk_error_message());
        }
        if (!startup_wait(app, 500)) {
            return SK_FAIL(SK_ECANCELED, "stopping while waiting for the database");
        }
    }
}

sk_status svc_platform_resolve(svc_app *app, const svc_schema *schema, svc_platform *out)
{
    void *relay = NULL;
    set_schema(app, schema);
    startup_step_set(app, "opening the database");
    sk_status st = store_resolve(app, &out->store);
    if (st == SK_OK) {
        st = sk_di_resolve(app->di, "bus", (void **)&out->bus);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(app->di, "metrics", (void **)&out->metrics);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(app->di, "relay", &relay); /* publishes what the handlers put in the outbox */
    }
    return st;
}

sk_status svc_emit(svc_app *app,
                   sk_tx *tx,
                   const char *type,
                   const char *aggregate_id,
                   const json_t *data,
                   const char *traceparent)
{
    char subject[160];
    sk_envelope env;
    snprintf(subject, sizeof(subject), "%s.events.%s", app->self->context, type);
    sk_envelope_init(&env, type, app->source, aggregate_id, traceparent);
    return sk_outbox_add(tx, subject, &env, data);
}

/* Read DATA/run/nats.url (written by `skald up`) unless SKALD_NATS_URL is set. */
static char *nats_url(const svc_app *app)
{
    const char *env = getenv("SKALD_NATS_URL");
    if (env != NULL && env[0] != '\0') {
        return sk_strdup(env);
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/run/nats.url", app->args.data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return sk_strdup("tls://127.0.0.1:4222");
    }
    char line[512] = { 0 };
    if (fgets(line, sizeof(line), f) == NULL) {
        line[0] = '\0';
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return sk_strdup(line[0] != '\0' ? line : "tls://127.0.0.1:4222");
}

/* ---------------------------------------------------------------- providers */

static sk_status metrics_create(sk_di *di, void **out, void *ctx)
{
    (void)di;
    (void)ctx;
    return sk_metrics_create((sk_metrics **)out);
}

static void metrics_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_metrics_destroy(obj);
}

static sk_status health_create(sk_di *di, void **out, void *ctx)
{
    (void)di;
    (void)ctx;
    return sk_health_create((sk_health **)out);
}

static void health_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_health_destroy(obj);
}

static bool nats_check(char *reason, size_t reason_len, void *ctx)
{
    if (sk_bus_is_connected(ctx)) {
        return true;
    }
    snprintf(reason, reason_len, "not connected");
    return false;
}

static sk_status bus_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_health *health = NULL;
    sk_bus *bus = NULL;
    char name[128], inbox[128];
    char *url = nats_url(app);
    sk_status st = SK_OK;

    if (url == NULL) {
        return SK_FAIL(SK_ENOMEM, "bus: url");
    }
    st = sk_di_resolve(di, "health", (void **)&health);
    if (st != SK_OK) {
        goto out;
    }
    snprintf(name, sizeof(name), "%s", app->args.instance);
    snprintf(inbox, sizeof(inbox), "_INBOX.%s", app->args.instance);
    sk_bus_config cfg = {
        .servers = url,
        .ca_file = app->tls.ca_file,
        .cert_file = app->tls.cert_file,
        .key_file = app->tls.key_file,
        .name = name,
        .inbox_prefix = inbox,
        .replicas = app->sys->broker.replicas,
    };
    st = sk_bus_open(&bus, &cfg);
    if (st != SK_OK) {
        st = SK_WRAP(st, "connecting to NATS at %s", url);
        goto out;
    }
    /* Not connected yet is fine: the bus keeps trying, start-up waits for it (svc_app_run). */
    st = sk_health_add(health, "nats", nats_check, bus);
out:
    if (st != SK_OK) {
        sk_bus_close(bus);
        bus = NULL;
    }
    sk_free(url);
    *out = bus;
    return st;
}

static void bus_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_bus_close(obj);
}

static sk_status store_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    sk_migration *all = NULL;
    size_t n_msg = 0, n_cqrs = 0, n_saga = 0, n = 0;
    const sk_migration *msg_m = sk_msg_migrations(&n_msg);
    const sk_migration *cqrs_m = sk_cqrs_migrations(&n_cqrs);
    const sk_migration *saga_m = app->schema.uses_saga ? sk_saga_migrations(&n_saga) : NULL;
    char dir[600], url[700];
    sk_status st = SK_OK;
    (void)di;

    if (app->self->database[0] == '\0' || strcmp(app->self->database, "none") == 0) {
        return SK_FAIL(SK_ESTATE, "service %s has no database", app->args.service);
    }
    all = sk_calloc(app->schema.n_own + n_msg + n_cqrs + n_saga + 1, sizeof(*all));
    if (all == NULL) {
        return SK_FAIL(SK_ENOMEM, "store: migrations");
    }
    for (size_t i = 0; i < app->schema.n_own; i++) {
        all[n++] = app->schema.own[i];
    }
    for (size_t i = 0; i < n_msg; i++) {
        all[n++] = msg_m[i];
    }
    for (size_t i = 0; i < n_cqrs; i++) {
        all[n++] = cqrs_m[i];
    }
    for (size_t i = 0; i < n_saga; i++) {
        all[n++] = saga_m[i];
    }
    snprintf(dir, sizeof(dir), "%s/db", app->args.data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        st = SK_FAIL(SK_EIO, "creating %s: %s", dir, strerror(errno));
        goto out;
    }
    /* One database per service, shared by its instances (they agree through its locks who
     * publishes the outbox and who projects the read models). */
    snprintf(url, sizeof(url), "sqlite:%s/%s.db", dir, app->self->database);
    sk_store_config cfg = { .url = url, .migrations = all, .n_migrations = n };
    st = sk_store_open((sk_store **)out, &cfg);
out:
    sk_free(all);
    return st;
}

static void store_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_store_close(obj);
}

static sk_status relay_create(sk_di *di, void **out, void *ctx)
{
    sk_store *store = NULL;
    sk_bus *bus = NULL;
    sk_metrics *metrics = NULL;
    sk_status st = sk_di_resolve(di, "store", (void **)&store);
    (void)ctx;
    if (st == SK_OK) {
        st = sk_di_resolve(di, "bus", (void **)&bus);
    }
    if (st == SK_OK) {
        st = sk_di_resolve(di, "metrics", (void **)&metrics);
    }
    if (st == SK_OK) {
        st = sk_relay_start((sk_relay **)out, store, bus, metrics);
    }
    return st;
}

static void relay_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_relay_stop(obj);
}

static sk_status registry_create(sk_di *di, void **out, void *ctx)
{
    sk_bus *bus = NULL;
    sk_status st = sk_di_resolve(di, "bus", (void **)&bus);
    (void)ctx;
    if (st == SK_OK) {
        st = sk_registry_open((sk_registry **)out, bus, 0);
    }
    return st;
}

static void registry_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_registry_close(obj);
}

static sk_status client_create(sk_di *di, void **out, void *ctx)
{
    svc_app *app = ctx;
    (void)di;
    return sk_http_client_create((sk_http_client **)out, &app->tls);
}

static void client_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_http_client_destroy(obj);
}

static sk_status bus_kind_create(sk_di *di, void **out, sk_cqrs_kind kind)
{
    sk_metrics *metrics = NULL;
    sk_status st = sk_di_resolve(di, "metrics", (void **)&metrics);
    if (st == SK_OK) {
        st = sk_cqrs_bus_create((sk_cqrs_bus **)out, kind, metrics);
    }
    return st;
}

static sk_status commands_create(sk_di *di, void **out, void *ctx)
{
    (void)ctx;
    return bus_kind_create(di, out, SK_CQRS_COMMAND);
}

static sk_status queries_create(sk_di *di, void **out, void *ctx)
{
    (void)ctx;
    return bus_kind_create(di, out, SK_CQRS_QUERY);
}

static void cqrs_destroy(void *obj, void *ctx)
{
    (void)ctx;
    sk_cqrs_bus_destroy(obj);
}

static sk_status router_create(sk_di *di, void **out, void *ctx)
{
    (void)di;
    (void)ctx;
    return svc_router_create((svc_router **)out);
}

static void router_destroy(void *obj, void *ctx)
{
    (void)ctx;
    svc_router_destroy(obj);
}

/* ---------------------------------------------------------------- init */

static sk_status register_platform(svc_app *app)
{
    struct {
        const char *name;
        sk_di_create_fn create;
        sk_di_destroy_fn destroy;
    } providers[] = {
        { "metrics", metrics_create, metrics_destroy },
        { "health", health_create, health_destroy },
        { "bus", bus_create, bus_destroy },
        { "store", store_create, store_destroy },
        { "relay", relay_create, relay_destroy },
        { "registry", registry_create, registry_destroy },
        { "http_client", client_create, client_destroy },
        { "upstreams", svc__upstreams_create, svc__upstreams_destroy },
        { "commands", commands_create, cqrs_destroy },
        { "queries", queries_create, cqrs_destroy },
        { "router", router_create, router_destroy },
    };
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++) {
        sk_status st = sk_di_register(app->di, providers[i].name, SK_DI_SINGLETON, providers[i].create,
                                      providers[i].destroy, app);
        if (st != SK_OK) {
            return st;
        }
    }
    return SK_OK;
}

int svc_app_init(svc_app *app, int argc, char **argv, const char *service)
{
    static char instance_default[80];
    sigset_t set;

    memset(app, 0, sizeof(*app));
    if (pthread_mutex_init(&app->state_mu, NULL) != 0) {
        abort();
    }
    atomic_init(&app->is_wired, false);
    atomic_init(&app->is_stopping, false);
    atomic_init(&app->is_draining, false);
    atomic_init(&app->is_startup_failed, false);
    atomic_init(&app->n_inflight, 0);
    /* Block the stop and reload signals before any thread exists, so only sigwait sees them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (svc_args_parse(&app->args, argc, argv, service) != SK_OK) {
        return 2;
    }
    if (app->args.instance == NULL) {
        snprintf(instance_default, sizeof(instance_default), "%s-1", app->args.service);
        app->args.instance = instance_default;
    }
    if (sk_init(app->args.instance) != SK_OK) {
        fprintf(stderr, "skald-%s: init: %s\n", service, sk_error_message());
        return 1;
    }
    if (sk_system_load(app->args.config_path, &app->sys) != SK_OK) {
        fprintf(stderr, "skald-%s: %s\n", service, sk_error_message());
        return 2;
    }
    app->self = sk_system_service_find(app->sys, app->args.service);
    if (app->self == NULL) {
        fprintf(stderr, "skald-%s: %s: no service \"%s\"\n", service, app->args.config_path, app->args.service);
        return 2;
    }
    snprintf(app->source, sizeof(app->source), "/skald/%s", app->args.service);
    snprintf(app->pki_dir, sizeof(app->pki_dir), "%s/pki", app->args.data_dir);
    /* Before any thread: it sets environment variables. */
    if (sk_tls_default_trust_set(app->pki_dir) != SK_OK ||
        sk_tls_files_init(&app->tls, app->pki_dir, app->args.service) != SK_OK ||
        sk_di_create(&app->di) != SK_OK || register_platform(app) != SK_OK) {
        fprintf(stderr, "skald-%s: %s\n", service, sk_error_message());
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- HTTP front */

/* Deny by default: a caller needs a rule naming it for the path prefix and method. */
static bool is_authorized(const sk_sys_service *self, const char *peer, const char *method, const char *path)
{
    if (peer == NULL) {
        return false;
    }
    for (size_t i = 0; i < self->n_authz; i++) {
        const sk_sys_authz_rule *r = &self->authz[i];
        size_t plen = strlen(r->path_prefix);
        if (strncmp(path, r->path_prefix, plen) != 0 || (path[plen] != '\0' && path[plen] != '/' && r->path_prefix[plen - 1] != '/')) {
            continue;
        }
        bool method_ok = r->n_methods == 0;
        for (size_t m = 0; m < r->n_methods && !method_ok; m++) {
            method_ok = strcmp(r->methods[m], method) == 0;
        }
        bool from_ok = false;
        for (size_t f = 0; f < r->n_from && !from_ok; f++) {
            from_ok = strcmp(r->from[f], "*") == 0 || strcmp(r->from[f], peer) == 0;
        }
        if (method_ok && from_ok) {
            return true;
        }
    }
    return false;
}

/* Answered to any authenticated peer (mTLS: a certificate of the system's CA), like /metrics. */
static bool is_operational_path(const char *path)
{
    return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0 ||
           strcmp(path, SVC_MESH_UPSTREAMS_PATH) == 0;
}

static void route_healthz(sk_http_req *req, const svc_params *p, void *ctx);
static void route_readyz(sk_http_req *req, const svc_params *p, void *ctx);
static void route_metrics(sk_http_req *req, const svc_params *p, void *ctx);

static bool is_admin_path(const char *path)
{
    return strncmp(path, "/admin/", 7) == 0 || strcmp(path, "/admin") == 0;
}

static void http_front(sk_http_req *req, void *ctx)
{
    svc_app *app = ctx;
    svc_router *router = app->router;
    const char *method = sk_http_req_method(req);
    const char *path = sk_http_req_path(req);
    svc_route_fn fn = NULL;
    void *route_ctx = NULL;
    svc_params params;
    char allow[64];

    /* Until start-up is done the router is still being filled: answer only the probes. */
    if (!atomic_load(&app->is_wired) && is_operational_path(path) && strcmp(method, "GET") == 0) {
        if (strcmp(path, "/healthz") == 0) {
            route_healthz(req, NULL, app);
        } else if (strcmp(path, "/readyz") == 0) {
            route_readyz(req, NULL, app);
        } else if (strcmp(path, "/metrics") == 0) {
            route_metrics(req, NULL, app);
        } else {
            sk_http_req_respond_problem(req, 503, "Service Unavailable", "starting");
        }
        return;
    }
    if (!atomic_load(&app->is_wired) || (atomic_load(&app->is_draining) && !is_operational_path(path))) {
        static const char *const close_headers[] = { "Connection: close", NULL };
        bool draining = atomic_load(&app->is_draining);
        json_t *body = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", "Service Unavailable",
                                 "status", 503, "detail", draining ? "shutting down" : "starting");
        if (body == NULL) {
            sk_http_req_respond_problem(req, 503, "Service Unavailable", "unavailable");
            return;
        }
        char *text = sk_json_dumps(body);
        json_decref(body);
        if (text == NULL) {
            sk_http_req_respond_problem(req, 503, "Service Unavailable", "unavailable");
            return;
        }
        sk_http_req_respond(req, 503, "application/problem+json", text, strlen(text),
                            draining ? close_headers : NULL);
        sk_free(text);
        return;
    }
    if (is_admin_path(path) && !app->self->is_gateway) {
        /* Operator routes: the CLI's identity only, whatever the system file says. */
        const char *peer = sk_http_req_peer_service(req);
        if (peer == NULL || strcmp(peer, SVC_ADMIN_IDENTITY) != 0) {
            sk_http_req_respond_problem(req, 403, "Forbidden", "identity %s may not call %s %s",
                                        peer != NULL ? peer : "(none)", method, path);
            return;
        }
    } else if (strncmp(path, "/test/", 6) == 0 && svc__test_routes_enabled()) {
        /* Test routes: any peer the mesh authenticated. */
    } else if (!app->self->is_gateway && !is_operational_path(path)) {
        const char *peer = sk_http_req_peer_service(req);
        if (!is_authorized(app->self, peer, method, path)) {
            sk_http_req_respond_problem(req, 403, "Forbidden", "identity %s may not call %s %s",
                                        peer != NULL ? peer : "(none)", method, path);
            return;
        }
    }
    sk_status st = svc_router_match(router, method, path, &fn, &route_ctx, &params, allow, sizeof(allow));
    if (st == SK_ENOTFOUND) {
        sk_http_req_respond_problem(req, 404, "Not Found", "no resource at %s", path);
        return;
    }
    if (st == SK_ESTATE) {
        char allow_header[96];
        snprintf(allow_header, sizeof(allow_header), "Allow: %s", allow);
        const char *headers[] = { allow_header, NULL };
        /* jansson escapes the method, which the client chose. */
        json_t *body = json_pack("{s:s, s:s, s:i, s:s+}", "type", "about:blank", "title", "Method Not Allowed",
                                 "status", 405, "detail", "method not allowed here; allowed: ", allow);
        char *text = body != NULL ? sk_json_dumps(body) : NULL;
        json_decref(body);
        if (text == NULL) {
            sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
            return;
        }
        sk_http_req_respond(req, 405, "application/problem+json", text, strlen(text), headers);
        sk_free(text);
        return;
    }
    if (st != SK_OK) {
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "routing failed");
        return;
    }
    svc_inflight_enter(app);
    fn(req, &params, route_ctx);
    svc_inflight_leave(app);
    svc_params_fini(&params);
}

/* Built-in operational routes. */
static void route_healthz(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    char body[96];
    (void)p;
    /* in_flight: requests in service code besides this one (routed requests count themselves). */
    long n = atomic_load(&app->n_inflight) - (atomic_load(&app->is_wired) ? 1 : 0);
    int len = snprintf(body, sizeof(body), "{\"status\":\"ok\",\"in_flight\":%ld}", n > 0 ? n : 0);
    sk_http_req_respond(req, 200, "application/json", body, (size_t)len, NULL);
}

static void route_readyz(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    sk_health *health = app->health;
    sk_buf out;
    (void)p;
    sk_buf_init(&out, 64 * 1024);
    bool ok = sk_health_evaluate(health, &out);
    if (ok) {
        sk_http_req_respond(req, 200, "application/json", out.data != NULL ? out.data : "{}",
                            out.data != NULL ? out.len : 2, NULL);
        sk_buf_fini(&out);
        return;
    }
    /* Not ready: problem+json whose detail names each failing check ("nats: not connected"). */
    json_t *doc = NULL;
    json_t *checks = NULL;
    char detail[1024] = "";
    size_t len = 0;
    if (out.data != NULL && sk_json_parse_object((sk_slice){ (const uint8_t *)out.data, out.len }, &doc) == SK_OK) {
        checks = json_object_get(doc, "checks");
        const char *name = NULL;
        json_t *c = NULL;
        json_object_foreach(checks, name, c)
        {
            if (json_is_true(json_object_get(c, "ok")) || len >= sizeof(detail) - 1) {
                continue;
            }
            const char *reason = json_string_value(json_object_get(c, "reason"));
            int n = snprintf(detail + len, sizeof(detail) - len, "%s%s: %s", len > 0 ? "; " : "", name,
                             reason != NULL ? reason : "check failed");
            len = n > 0 ? len + (size_t)n : len;
            len = len < sizeof(detail) ? len : sizeof(detail) - 1;
        }
    }
    sk_buf_fini(&out);
    json_t *problem = json_pack("{s:s, s:s, s:i, s:s, s:O}", "type", "about:blank", "title",
                                "Service Unavailable", "status", 503, "detail",
                                detail[0] != '\0' ? detail : "not ready", "checks",
                                checks != NULL ? checks : json_null());
    char *text = problem != NULL ? sk_json_dumps(problem) : NULL;
    json_decref(problem);
    json_decref(doc);
    if (text == NULL) {
        sk_http_req_respond_problem(req, 503, "Service Unavailable", "not ready");
        return;
    }
    sk_http_req_respond(req, 503, "application/problem+json", text, strlen(text), NULL);
    sk_free(text);
}

static void route_metrics(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    sk_metrics *metrics = app->metrics;
    sk_buf out;
    (void)p;
    sk_buf_init(&out, 16 * 1024 * 1024);
    if (sk_metrics_render(metrics, &out) != SK_OK) {
        sk_buf_fini(&out);
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "rendering metrics failed");
        return;
    }
    sk_http_req_respond(req, 200, "text/plain; version=0.0.4", out.data != NULL ? out.data : "",
                        out.len, NULL);
    sk_buf_fini(&out);
}

/* {"upstreams": {"psp": [endpoint, ...], ...}} for `skald status`. */
static void route_mesh_upstreams(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    json_t *ups = NULL;
    json_t *body = NULL;
    char *text = NULL;
    (void)p;

    if (svc_upstreams_describe(app->upstreams, &ups) != SK_OK) {
        SK_LOG_ERROR("GET %s: %s", SVC_MESH_UPSTREAMS_PATH, sk_error_message());
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "describing the upstreams failed");
        return;
    }
    body = json_pack("{s:o}", "upstreams", ups); /* "o" takes ups, even on failure */
    text = body != NULL ? sk_json_dumps(body) : NULL;
    json_decref(body);
    if (text == NULL) {
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    sk_http_req_respond(req, 200, "application/json", text, strlen(text), NULL);
    sk_free(text);
}

/* ---------------------------------------------------------------- run */

static int gateway_port(const svc_app *app)
{
    const char *env = getenv("SKALD_GATEWAY_PORT");
    if (app->args.port > 0) {
        return app->args.port;
    }
    if (env != NULL && env[0] != '\0') {
        int p = atoi(env);
        if (p > 0 && p < 65536) {
            return p;
        }
    }
    return app->sys->gateway_port;
}

/* ---------------------------------------------------------------- readiness checks */

static bool startup_check(char *reason, size_t reason_len, void *ctx)
{
    svc_app *app = ctx;
    if (atomic_load(&app->is_draining)) {
        snprintf(reason, reason_len, "shutting down");
        return false;
    }
    if (atomic_load(&app->is_wired)) {
        return true;
    }
    state_lock(app);
    snprintf(reason, reason_len, "%s", app->startup_step[0] != '\0' ? app->startup_step : "starting");
    state_unlock(app);
    return false;
}

static bool database_check(char *reason, size_t reason_len, void *ctx)
{
    svc_app *app = ctx;
    state_lock(app);
    bool ok = app->db_reason[0] == '\0';
    if (!ok) {
        snprintf(reason, reason_len, "%s", app->db_reason);
    }
    state_unlock(app);
    return ok;
}

static bool has_database(const svc_app *app)
{
    return app->self->database[0] != '\0' && strcmp(app->self->database, "none") != 0;
}

/* ---------------------------------------------------------------- start-up */

/*
 * Start-up thread: everything that needs NATS or the database, retried
 * until they are there, while the HTTP server already answers /readyz
 * with the reason (503). Only this thread touches the container until
 * is_wired is set; after that only the main thread does.
 */
static void *startup_main(void *arg)
{
    svc_app *app = arg;
    sk_bus *bus = NULL;
    sk_registry *registry = NULL;
    void *service = NULL;
    int64_t last_log = 0;
    sk_status st;

    sk_thread_name("sk-startup");
    startup_step_set(app, "connecting to NATS");
    if (svc_get(app, "bus", (void **)&bus) != SK_OK) {
        goto fail;
    }
    while (!sk_bus_is_connected(bus)) {
        startup_step_set(app, "waiting for NATS");
        if (!startup_wait(app, 100)) {
            return NULL;
        }
    }
    for (;;) {
        st = sk_bus_system_streams_ensure(bus, app->sys);
        if (st == SK_OK) {
            break;
        }
        if (!startup_retry_wait(app, "checking the streams", &last_log)) {
            return NULL;
        }
    }
    startup_step_set(app, "starting %s", app->args.service);
    /* The service's own provider builds its handlers, consumers and routes. */
    last_log = 0;
    if (startup_resolve(app, app->args.service, &service, &last_log) != SK_OK) {
        goto fail;
    }
    /* After the service's provider (which usually creates them already, so
     * the teardown order stays as it was): handlers read app->upstreams,
     * never the container. Empty for a service without any. */
    if (startup_resolve(app, "upstreams", (void **)&app->upstreams, &last_log) != SK_OK) {
        goto fail;
    }
    if (svc__fault_watch_start(app, bus) != SK_OK) {
        /* Serving matters more than the test lever: run without it. */
        SK_LOG_WARN("run-time fault injection unavailable: %s", sk_error_message());
    }
    if (startup_resolve(app, "registry", (void **)&registry, &last_log) != SK_OK) {
        goto fail;
    }
    char address[64];
    snprintf(address, sizeof(address), "127.0.0.1:%d", sk_http_server_port(app->server));
    sk_instance self = {
        .service = app->args.service,
        .instance = app->args.instance,
        .address = address,
        .is_ready = true,
        .pid = (int)getpid(),
    };
    /* The bucket may not answer yet (a broker cluster electing): keep trying, as for the
     * streams, instead of exiting into the supervisor's growing restart backoff. */
    last_log = 0;
    while ((st = sk_registry_register(registry, &self)) != SK_OK) {
        if (!startup_is_transient(st)) {
            SK_LOG_ERROR("registering in discovery: %s", sk_error_message());
            goto fail;
        }
        if (!startup_retry_wait(app, "registering in discovery", &last_log)) {
            return NULL;
        }
    }
    app->bus = bus;
    app->registry = registry;
    startup_step_set(app, "%s", "");
    atomic_store(&app->is_wired, true); /* publishes the router and everything above */
    SK_LOG_INFO("%s ready on %s://%s", app->args.instance, app->self->is_gateway ? "http" : "https", address);
    return NULL;
fail:
    if (!atomic_load(&app->is_stopping)) {
        fprintf(stderr, "skald-%s: start-up failed: %s\n", app->args.service, sk_error_message());
        atomic_store(&app->is_startup_failed, true);
        kill(getpid(), SIGTERM); /* wakes the main thread's sigtimedwait */
    }
    return NULL;
}

/* SIGHUP: certificate rotation. Only once wired (the container is the main thread's then). */
static void reload_tls(svc_app *app)
{
    /* The files in DATA/pki were re-issued (skald up does that on SIGHUP). New handshakes
     * use them; a failed reload keeps the current credentials. */
    if (!app->self->is_gateway && sk_http_server_reload_tls(app->server) != SK_OK) {
        SK_LOG_ERROR("SIGHUP: reloading the server certificate: %s", sk_error_message());
    } else if (!app->self->is_gateway) {
        SK_LOG_INFO("SIGHUP: server certificate reloaded");
    }
    if (!atomic_load(&app->is_wired)) {
        SK_LOG_WARN("SIGHUP: still starting; the NATS and client certificates are read when they are first used");
        return;
    }
    sk_http_client *client = NULL;
    if (sk_di_resolve(app->di, "http_client", (void **)&client) != SK_OK) {
        SK_LOG_ERROR("SIGHUP: resolving the HTTP client: %s", sk_error_message());
    } else if (sk_http_client_reload_tls(client) != SK_OK) {
        SK_LOG_ERROR("SIGHUP: reloading the client certificate: %s", sk_error_message());
    } else {
        SK_LOG_INFO("SIGHUP: client certificate reloaded");
    }
    if (app->bus == NULL) {
        SK_LOG_ERROR("SIGHUP: no NATS connection to reload");
    } else if (sk_bus_reload_tls(app->bus) != SK_OK) {
        SK_LOG_ERROR("SIGHUP: reloading the NATS client certificate: %s", sk_error_message());
    } else {
        SK_LOG_INFO("SIGHUP: NATS client certificate reloaded (new connection)");
    }
}

static int64_t drain_timeout_ms(void)
{
    const char *env = getenv("SKALD_DRAIN_TIMEOUT_MS");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        long long v = strtoll(env, &end, 10);
        if (end != env && *end == '\0' && v >= 0 && v <= 60000) {
            return v;
        }
        SK_LOG_WARN("SKALD_DRAIN_TIMEOUT_MS: expected 0..60000, got \"%.32s\"; using %d", env,
                    SVC_DRAIN_TIMEOUT_MS);
    }
    return SVC_DRAIN_TIMEOUT_MS;
}

/*
 * The HTTP drain: stop announcing readiness, stop listening, refuse new
 * requests on open connections (503, Connection: close), and wait until every request already in service code
 * has been answered, at most the drain timeout.
 */
static void drain(svc_app *app)
{
    int64_t deadline = sk_time_mono_ms() + drain_timeout_ms();
    atomic_store(&app->is_draining, true);
    /* New connections are reset: callers retry them on another instance (connect failure). */
    sk_http_server_stop_listening(app->server);
    if (app->registry != NULL) {
        sk_registry_set_ready(app->registry, false);
    }
    long n = atomic_load(&app->n_inflight);
    if (n > 0) {
        SK_LOG_INFO("draining: %ld request(s) in flight", n);
    }
    while ((n = atomic_load(&app->n_inflight)) > 0 && sk_time_mono_ms() < deadline) {
        svc_sleep_ms(5);
    }
    if (n > 0) {
        SK_LOG_WARN("drain timeout: %ld request(s) still in flight are answered 503", n);
    }
}

int svc_app_run(svc_app *app)
{
    svc_router *router = NULL;
    sk_metrics *metrics = NULL;
    sk_http_server *server = NULL;
    int rc = 1;

    if (svc_get(app, "router", (void **)&router) != SK_OK || svc_get(app, "metrics", (void **)&metrics) != SK_OK ||
        svc_get(app, "health", (void **)&app->health) != SK_OK) {
        goto out;
    }
    app->router = router;
    app->metrics = metrics;
    if (svc_router_add(router, "GET", "/healthz", route_healthz, app) != SK_OK ||
        svc_router_add(router, "GET", "/readyz", route_readyz, app) != SK_OK ||
        svc_router_add(router, "GET", "/metrics", route_metrics, app) != SK_OK ||
        svc_router_add(router, "GET", SVC_MESH_UPSTREAMS_PATH, route_mesh_upstreams, app) != SK_OK ||
        svc__admin_routes_add(app, router) != SK_OK) {
        fprintf(stderr, "skald-%s: routes: %s\n", app->args.service, sk_error_message());
        goto out;
    }
    if (sk_health_add(app->health, "startup", startup_check, app) != SK_OK ||
        (has_database(app) && sk_health_add(app->health, "database", database_check, app) != SK_OK)) {
        fprintf(stderr, "skald-%s: readiness checks: %s\n", app->args.service, sk_error_message());
        goto out;
    }
    /* The gateway's server runs on its HTTP client's thread: a proxied request stays on it. */
    sk_http_client *loop = NULL;
    if (app->self->is_gateway && svc_get(app, "http_client", (void **)&loop) != SK_OK) {
        goto out;
    }
    /* Listen first, so /healthz and /readyz answer while NATS or the database are not there yet. */
    sk_http_server_config cfg = {
        .bind_addr = "127.0.0.1",
        .port = app->self->is_gateway ? gateway_port(app) : app->args.port,
        .tls = app->self->is_gateway ? NULL : &app->tls,
        .require_client_cert = !app->self->is_gateway,
        .n_threads = 2,
        .loop = loop,
        .handler = http_front,
        .ctx = app,
        .metrics = metrics,
    };
    if (sk_http_server_start(&server, &cfg) != SK_OK) {
        fprintf(stderr, "skald-%s: listening on 127.0.0.1:%d: %s\n", app->args.service, cfg.port,
                sk_error_message());
        goto out;
    }
    app->server = server;
    SK_LOG_INFO("%s listening on %s://127.0.0.1:%d (starting)", app->args.instance,
                app->self->is_gateway ? "http" : "https", sk_http_server_port(server));
    if (pthread_create(&app->startup_thread, NULL, startup_main, app) != 0) {
        fprintf(stderr, "skald-%s: creating the start-up thread\n", app->args.service);
        goto out;
    }
    app->has_startup_thread = true;

    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* The heartbeat to skald up's supervisor has its thread (svc_watchdog.c). Between signals
     * the main thread gives the heap's free pages back while the process is idle (svc_memory.c). */
    svc_watchdog watchdog;
    svc__watchdog_open(&watchdog, getenv("SKALD_WATCHDOG_FD"),
                       sk_time_mono_ms()); /* cli/cli.h's CLI_WATCHDOG_ENV */
    svc__watchdog_start(&watchdog);
    bool is_watching = false;
    svc_memory memory;
    svc__memory_init(&memory, sk_time_mono_ms());
    const struct timespec tick = { SVC__MEMORY_TICK_MS / 1000,
                                   (long)(SVC__MEMORY_TICK_MS % 1000) * 1000000L };
    for (;;) {
        /* Once wired the container is this thread's: hand the watchdog what it looks at. */
        if (!is_watching && atomic_load(&app->is_wired)) {
            sk_store *store = NULL;
            if (!has_database(app) || svc_get(app, "store", (void **)&store) == SK_OK) {
                svc__watchdog_watch(&watchdog, store, loop, server);
                is_watching = true;
            }
        }
        int got = sigtimedwait(&set, NULL, &tick);
        if (got == SIGTERM || got == SIGINT) {
            sig = got;
            break;
        }
        if (got == SIGHUP) {
            reload_tls(app);
        } else if (got < 0 && errno == EAGAIN) {
            (void)svc__memory_tick(&memory, sk_time_mono_ms()); /* trimmed or not: both fine */
        }
    }
    /* Stopping on purpose: the drain and teardown are not a hang. */
    svc__watchdog_stop(&watchdog);
    SK_LOG_INFO("signal %d: stopping", sig);
    atomic_store(&app->is_stopping, true);
    pthread_join(app->startup_thread, NULL);
    app->has_startup_thread = false;
    if (atomic_load(&app->is_wired)) {
        drain(app);
    }
    rc = atomic_load(&app->is_startup_failed) ? 1 : 0;
out:
    atomic_store(&app->is_stopping, true);
    if (app->has_startup_thread) {
        pthread_join(app->startup_thread, NULL);
        app->has_startup_thread = false;
    }
    /* Stop accepting; the container then stops the consumers (each finishes and acknowledges
     * the units it has in flight, nothing else) and tears down the rest in reverse order. */
    svc__fault_watch_stop(app);
    sk_http_server_stop(server);
    app->server = NULL;
    return rc;
}

void svc_app_fini(svc_app *app)
{
    sk_di_destroy(app->di);
    app->di = NULL;
    svc__edges_free(app);
    sk_tls_files_fini(&app->tls);
    sk_system_destroy(app->sys);
    app->sys = NULL;
    pthread_mutex_destroy(&app->state_mu);
    sk_shutdown();
}
