/* SPDX-License-Identifier: MIT */
/*
 * Operator routes of every service, for the `skald` CLI only: the read
 * models a service offers for replay (GET /admin/projections[/NAME], POST
 * /admin/projections/NAME/replay), the count of requests in flight that
 * the drain at SIGTERM waits for, and a slow route for shutdown tests
 * (only with SKALD_TEST_ROUTES=1).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc.h"
#include "svc_int.h"

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

void svc_inflight_enter(svc_app *app)
{
    atomic_fetch_add(&app->n_inflight, 1);
}

void svc_inflight_leave(svc_app *app)
{
    atomic_fetch_sub(&app->n_inflight, 1);
}

/* ---------------------------------------------------------------- read models */

sk_status svc_readmodel_add(svc_app *app, const char *name, sk_readmodel *rm)
{
    sk_status st = SK_OK;

    if (app == NULL || rm == NULL || name == NULL || name[0] == '\0' ||
        strlen(name) >= sizeof(app->readmodels[0].name)) {
        return SK_FAIL(SK_EINVAL,
                       "svc_readmodel_add: app, rm and a name of 1..63 bytes are required");
    }
    lock(&app->state_mu);
    for (size_t i = 0; i < app->n_readmodels; i++) {
        if (strcmp(app->readmodels[i].name, name) == 0) {
            st = SK_FAIL(SK_EEXIST, "read model %s registered twice", name);
        }
    }
    if (st == SK_OK && app->n_readmodels == SVC_READMODELS_MAX) {
        st = SK_FAIL(SK_ELIMIT, "more than %d read models", SVC_READMODELS_MAX);
    }
    if (st == SK_OK) {
        snprintf(app->readmodels[app->n_readmodels].name, sizeof(app->readmodels[0].name), "%s",
                 name);
        app->readmodels[app->n_readmodels].rm = rm;
        app->n_readmodels++;
    }
    unlock(&app->state_mu);
    return st;
}

void svc_readmodel_remove(svc_app *app, sk_readmodel *rm)
{
    if (app == NULL || rm == NULL) {
        return;
    }
    lock(&app->state_mu);
    for (size_t i = 0; i < app->n_readmodels; i++) {
        if (app->readmodels[i].rm == rm) {
            app->readmodels[i] = app->readmodels[app->n_readmodels - 1];
            app->n_readmodels--;
            break;
        }
    }
    unlock(&app->state_mu);
}

/* The status document of one read model, with its public name and this instance. Lock held. */
static json_t *readmodel_doc(svc_app *app, size_t i)
{
    json_t *doc = NULL;
    if (sk_readmodel_status_json(app->readmodels[i].rm, &doc) != SK_OK) {
        return NULL;
    }
    if (json_object_set_new(doc, "projection", json_string(app->readmodels[i].name)) != 0 ||
        json_object_set_new(doc, "instance", json_string(app->args.instance)) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void respond_doc(sk_http_req *req, int status, json_t *doc)
{
    if (doc == NULL) {
        SK_LOG_ERROR("admin %s %s: %s", sk_http_req_method(req), sk_http_req_path(req),
                     sk_error_message());
        sk_http_req_respond_problem(req, 500, "Internal Server Error",
                                    "reading the read model failed");
        return;
    }
    sk_http_req_respond_json(req, status, doc, NULL);
    json_decref(doc);
}

static void route_projections(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    json_t *list = json_array();
    (void)p;
    lock(&app->state_mu);
    for (size_t i = 0; list != NULL && i < app->n_readmodels; i++) {
        json_t *doc = readmodel_doc(app, i);
        if (doc == NULL || json_array_append_new(list, doc) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    unlock(&app->state_mu);
    respond_doc(req, 200, list != NULL ? json_pack("{s:o}", "projections", list) : NULL);
}

/* Index of read model @p name, or -1. Lock held. */
static long readmodel_find(svc_app *app, const char *name)
{
    for (size_t i = 0; name != NULL && i < app->n_readmodels; i++) {
        if (strcmp(app->readmodels[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static void route_projection(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    const char *name = svc_params_get(p, "name");
    lock(&app->state_mu);
    long i = readmodel_find(app, name);
    json_t *doc = i >= 0 ? readmodel_doc(app, (size_t)i) : NULL;
    unlock(&app->state_mu);
    if (i < 0) {
        sk_http_req_respond_problem(req, 404, "Not Found", "no read model named %s in %s", name,
                                    app->args.instance);
        return;
    }
    respond_doc(req, 200, doc);
}

/*
 * Start a replay. It creates the new version's tables and consumers before
 * answering (a few milliseconds on the server thread); the rebuild itself
 * runs on the read model's own threads.
 */
static void route_replay(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    const char *name = svc_params_get(p, "name");
    int64_t version = 0;
    lock(&app->state_mu);
    long i = readmodel_find(app, name);
    sk_status st = i >= 0 ? sk_readmodel_replay(app->readmodels[i].rm, &version) : SK_ENOTFOUND;
    json_t *doc = i >= 0 && st == SK_OK ? readmodel_doc(app, (size_t)i) : NULL;
    unlock(&app->state_mu);
    if (i < 0) {
        sk_http_req_respond_problem(req, 404, "Not Found", "no read model named %s in %s", name,
                                    app->args.instance);
        return;
    }
    if (st == SK_ESTATE) {
        sk_http_req_respond_problem(req, 409, "Conflict", "%s", sk_error_message());
        return;
    }
    if (st != SK_OK) {
        SK_LOG_ERROR("replay of %s: %s", name, sk_error_message());
        sk_http_req_respond_problem(req, 500, "Internal Server Error",
                                    "starting the replay failed");
        return;
    }
    SK_LOG_INFO("replay of read model %s into version %lld started by %s", name, (long long)version,
                SVC_ADMIN_IDENTITY);
    respond_doc(req, 202, doc);
}

/* ---------------------------------------------------------------- test route */

typedef struct slow_job {
    svc_app *app;
    sk_http_req *req;
    int64_t ms;
} slow_job;

static void *slow_main(void *arg)
{
    sk_thread_name("sk-admin-job");
    slow_job *j = arg;
    svc_sleep_ms(j->ms);
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"slept_ms\":%lld}", (long long)j->ms);
    sk_http_req_respond(j->req, 200, "application/json", body, (size_t)n, NULL);
    svc_inflight_leave(j->app);
    sk_free(j);
    return NULL;
}

/* GET /test/slow?ms=N (0..30000): answered after N ms, from another thread, like a slow handler. */
static void route_slow(sk_http_req *req, const svc_params *p, void *ctx)
{
    svc_app *app = ctx;
    const char *ms_text = sk_http_req_query(req, "ms");
    char *end = NULL;
    long ms = ms_text != NULL ? strtol(ms_text, &end, 10) : -1;
    pthread_t t;
    pthread_attr_t attr;
    (void)p;
    if (ms_text == NULL || end == ms_text || *end != '\0' || ms < 0 || ms > 30000) {
        sk_http_req_respond_problem(req, 400, "Bad Request", "ms: expected an integer in 0..30000");
        return;
    }
    slow_job *j = sk_calloc(1, sizeof(*j));
    if (j == NULL) {
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    j->app = app;
    j->req = req;
    j->ms = ms;
    svc_inflight_enter(app);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, slow_main, j) != 0) {
        svc_inflight_leave(app);
        sk_free(j);
        sk_http_req_respond_problem(req, 500, "Internal Server Error", "no thread");
    }
    pthread_attr_destroy(&attr);
}

bool svc__test_routes_enabled(void)
{
    const char *v = getenv("SKALD_TEST_ROUTES");
    return v != NULL && strcmp(v, "1") == 0;
}

sk_status svc__admin_routes_add(svc_app *app, svc_router *router)
{
    sk_status st = svc_router_add(router, "GET", "/admin/projections", route_projections, app);
    if (st == SK_OK) {
        st = svc_router_add(router, "GET", "/admin/projections/{name}", route_projection, app);
    }
    if (st == SK_OK) {
        st = svc_router_add(router, "POST", "/admin/projections/{name}/replay", route_replay, app);
    }
    if (st == SK_OK && svc__test_routes_enabled()) {
        SK_LOG_WARN("SKALD_TEST_ROUTES=1: test routes enabled (GET /test/slow)");
        st = svc_router_add(router, "GET", "/test/slow", route_slow, app);
    }
    return st;
}
