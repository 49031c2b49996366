/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the mesh tests (header-only, static functions): a test
 * HTTP handler with a few behaviours chosen by path, and a recorder for
 * client completions that tests wait on with a deadline.
 *
 *   /echo    200 JSON {method,path,q,x_test,body_len,peer,request_id}
 *   /later   answered 200 "later" from another thread after ~20 ms
 *   /hold    kept in held_req (answered by the test, or by stop)
 *   /big     200 with SK_MAX_HTTP_BODY + 1 bytes
 *   /problem 409 problem+json
 *   other    404 problem+json
 */
#ifndef SK_MESH_TEST_UTIL_H
#define SK_MESH_TEST_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <skald/mesh.h>

#include "sk_test.h"

/* ---------------------------------------------------------------- server side */

typedef struct test_srv {
    pthread_mutex_t mu;
    sk_http_req *held_req; /* last /hold request */
    _Atomic int n_held;
    _Atomic int n_handled;
    pthread_t later[512];
    size_t n_later;
    char last_peer[64]; /* peer service seen by the last /echo ("" = none) */
} test_srv;

static inline void test_srv_init(test_srv *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
}

static inline void *test_srv_later_main(void *arg)
{
    sk_http_req *req = arg;
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL); /* simulates work finishing later on another thread */
    sk_http_req_respond(req, 200, "text/plain", "later", 5, NULL);
    return NULL;
}

static inline void test_srv_handler(sk_http_req *req, void *ctx)
{
    test_srv *t = ctx;
    const char *path = sk_http_req_path(req);

    atomic_fetch_add(&t->n_handled, 1);
    if (strcmp(path, "/echo") == 0 || strncmp(path, "/echo/", 6) == 0) {
        json_t *o = json_object();
        const char *q = sk_http_req_query(req, "q");
        const char *x = sk_http_req_header(req, "x-test");
        const char *peer = sk_http_req_peer_service(req);
        pthread_mutex_lock(&t->mu);
        snprintf(t->last_peer, sizeof(t->last_peer), "%s", peer != NULL ? peer : "");
        pthread_mutex_unlock(&t->mu);
        json_object_set_new(o, "method", json_string(sk_http_req_method(req)));
        json_object_set_new(o, "path", json_string(path));
        json_object_set_new(o, "q", q != NULL ? json_string(q) : json_null());
        json_object_set_new(o, "x_test", x != NULL ? json_string(x) : json_null());
        json_object_set_new(o, "body_len", json_integer((json_int_t)sk_http_req_body(req).len));
        json_object_set_new(o, "peer", peer != NULL ? json_string(peer) : json_null());
        static const char *const hdrs[] = { "X-Extra: yes", "Location: /somewhere",
                                            "Retry-After: 3", NULL };
        sk_http_req_respond_json(req, 200, o, hdrs);
        json_decref(o);
    } else if (strcmp(path, "/later") == 0) {
        pthread_mutex_lock(&t->mu);
        if (t->n_later < sizeof(t->later) / sizeof(t->later[0]) &&
            pthread_create(&t->later[t->n_later], NULL, test_srv_later_main, req) == 0) {
            t->n_later++;
            pthread_mutex_unlock(&t->mu);
        } else {
            pthread_mutex_unlock(&t->mu);
            sk_http_req_respond(req, 500, NULL, NULL, 0, NULL);
        }
    } else if (strcmp(path, "/hold") == 0) {
        pthread_mutex_lock(&t->mu);
        t->held_req = req;
        pthread_mutex_unlock(&t->mu);
        atomic_fetch_add(&t->n_held, 1);
    } else if (strcmp(path, "/big") == 0) {
        size_t n = SK_MAX_HTTP_BODY + 1u;
        char *big = sk_malloc(n);
        memset(big, 'x', n);
        sk_http_req_respond(req, 200, "text/plain", big, n, NULL);
        sk_free(big);
    } else if (strcmp(path, "/problem") == 0) {
        sk_http_req_respond_problem(req, 409, "Conflict", "order %d is already paid", 42);
    } else {
        sk_http_req_respond_problem(req, 404, NULL, "no route for %s", path);
    }
}

/* Take the held request (NULL if none). */
static inline sk_http_req *test_srv_take_held(test_srv *t)
{
    pthread_mutex_lock(&t->mu);
    sk_http_req *r = t->held_req;
    t->held_req = NULL;
    pthread_mutex_unlock(&t->mu);
    return r;
}

static inline void test_srv_fini(test_srv *t)
{
    for (size_t i = 0; i < t->n_later; i++) {
        pthread_join(t->later[i], NULL);
    }
    pthread_mutex_destroy(&t->mu);
}

static inline bool test_srv_has_held(void *ctx)
{
    test_srv *t = ctx;
    return atomic_load(&t->n_held) > 0;
}

/* ---------------------------------------------------------------- client side */

typedef struct done_rec {
    pthread_mutex_t mu;
    _Atomic int n_done;
    sk_status st;
    int status;
    char *body;
    size_t body_len;
    char content_type[128];
    char location[128];
    char retry_after[32];
    char err[1024];
    _Atomic int n_ok;     /* responses with status 200 */
    _Atomic int n_failed; /* anything else */
} done_rec;

static inline void done_rec_init(done_rec *d)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    d->st = SK_EINTERNAL;
}

static inline void done_rec_fini(done_rec *d)
{
    sk_free(d->body);
    pthread_mutex_destroy(&d->mu);
}

static inline void done_rec_cb(sk_status st, const sk_http_response *resp, void *ctx)
{
    done_rec *d = ctx;
    pthread_mutex_lock(&d->mu);
    d->st = st;
    d->status = resp->status;
    sk_free(d->body);
    d->body = sk_strndup((const char *)resp->body.ptr, resp->body.len);
    d->body_len = resp->body.len;
    snprintf(d->content_type, sizeof(d->content_type), "%s",
             resp->content_type != NULL ? resp->content_type : "");
    snprintf(d->location, sizeof(d->location), "%s", resp->location != NULL ? resp->location : "");
    snprintf(d->retry_after, sizeof(d->retry_after), "%s",
             resp->retry_after != NULL ? resp->retry_after : "");
    snprintf(d->err, sizeof(d->err), "%s", sk_error_message());
    if (st == SK_OK && resp->status == 200) {
        atomic_fetch_add(&d->n_ok, 1);
    } else {
        atomic_fetch_add(&d->n_failed, 1);
    }
    pthread_mutex_unlock(&d->mu);
    atomic_fetch_add(&d->n_done, 1);
}

typedef struct done_wait {
    done_rec *d;
    int n;
} done_wait;

static inline bool done_rec_reached(void *ctx)
{
    done_wait *w = ctx;
    return atomic_load(&w->d->n_done) >= w->n;
}

/* Wait until @p d has seen @p n completions; false on deadline. */
static inline bool done_rec_wait(done_rec *d, int n, int64_t timeout_ms)
{
    done_wait w = { d, n };
    return sk_test_wait_until(done_rec_reached, &w, timeout_ms);
}

#endif /* SK_MESH_TEST_UTIL_H */
