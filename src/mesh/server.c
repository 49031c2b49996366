/* SPDX-License-Identifier: MIT */
/*
 * HTTP server on libmicrohttpd (GnuTLS): a thread pool polls with poll(), the
 * body is gathered up to a limit, the handler runs once the body is in and
 * the connection is suspended until sk_http_req_respond is called from any
 * thread. Internal listeners use TLS 1.3 and refuse clients without a
 * certificate signed by our CA during the handshake.
 *
 * Lifetime: a request is shared by MHD (until its completion callback) and,
 * once the handler ran, by the handler (until its answer); whoever lets go
 * last frees it. Requests point to a small reference-counted "hub" (lock and
 * list of unanswered requests) rather than to the server, so an answer that
 * arrives after sk_http_server_stop is a safe no-op.
 *
 * TLS credentials (key, certificate and CA) live in a reference-counted
 * tls_creds that sk_http_server_reload_tls swaps under creds_mu. Each new
 * connection pins the current one and installs it on its GnuTLS session
 * before the handshake, so a reload only affects handshakes that start after
 * it, and client certificates are verified against the CA of that generation.
 */
#include "mesh/mesh_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#define DEFAULT_THREADS 2u
#define MAX_THREADS     64u
/*
 * MHD's per-connection memory pool (read buffer, a record per header field and per query
 * argument, response headers). Twice SK_HTTP_MAX_HEADER_BYTES, so that a request line plus
 * headers within the limit always fits and those between the two get our 431 problem+json;
 * beyond the pool libmicrohttpd answers 431 itself, or closes the connection when the query
 * has more arguments than records fit (several hundred). It stays resident for as long as the
 * connection is open, and a service keeps one per pooled connection of each caller (64 from
 * the gateway under load): 64 KiB pools made the order service's RSS at 1,000 orders/s 2-4 MiB
 * larger and all services' PSS 12-15 MiB larger than these 32 KiB (libmicrohttpd's default).
 */
#define CONN_MEMORY_BYTES (32u * 1024u)
#define MIN_TIMEOUT_MS    100
#define MAX_TIMEOUT_MS    3600000
#define MAX_PEM_BYTES   (64u * 1024u)
/* How long stop waits for the 503 answers it queued to go out. */
#define STOP_DRAIN_MS 1000
/* A client streaming more than this many times the body limit is disconnected. */
#define DISCARD_FACTOR 4u
/* TLS 1.3 only on internal (mutual TLS) listeners; 1.2 is kept for public TLS ones. */
#define PRIORITIES_INTERNAL "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define PRIORITIES_PUBLIC   "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* Shared between the server and its requests; freed by whoever drops the last reference. */
typedef struct hub {
    /* Protects every field below and, in each request, state, refs, has_user_ref, is_answered,
     * resp, resp_status, prev/next/is_live and conn. Never held while calling the handler. */
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* signalled when n_outstanding drops */
    size_t refs;          /* the server + one per live request */
    sk_http_req *live;    /* handed to the handler, not answered yet */
    size_t n_outstanding; /* handed to the handler, MHD not completed yet */
    bool is_stopping;
    bool is_daemon_gone; /* MHD_stop_daemon has returned: never call MHD again */
    sk_http_client *loop; /* runs the daemon (hosted server), told of every resumed connection */
} hub;

typedef enum req_state {
    REQ_RECEIVING,  /* headers and body arriving */
    REQ_IN_HANDLER, /* the handler runs on an MHD thread */
    REQ_SUSPENDED,  /* waiting for an answer from any thread */
    REQ_QUEUED,     /* the response went to MHD */
    REQ_DONE        /* MHD completed the request */
} req_state;

typedef struct kv {
    const char *key;
    const char *value;
    enum MHD_ValueKind kind;
} kv;

struct sk_http_req {
    hub *hub;
    struct MHD_Connection *conn;
    req_state state;
    int refs;
    bool has_user_ref;
    bool is_answered;
    bool is_outstanding;
    bool is_live;
    struct MHD_Response *resp;
    int resp_status;
    sk_http_req *prev, *next;

    /* Written on the MHD thread before the handler runs, read-only afterwards. */
    char *method;
    char *path;
    kv *kvs; /* headers and query arguments, strings in the same allocation */
    size_t n_kvs;
    sk_buf body;
    bool is_too_large;
    size_t n_discarded; /* body bytes dropped after the limit was passed */
    int sent_status;    /* status queued to MHD, 0 when none (MHD thread only) */
    int64_t start_ns;
    char request_id[SK_MESH_MAX_REQUEST_ID + 1];
    char peer_service[SK_MESH_MAX_SERVICE + 1];
    bool has_peer_service;
    void *user;
};

/*
 * One generation of TLS credentials: key + certificate (+ trust anchors when
 * client certificates are required). Immutable once built; freed when the
 * server and every connection that pinned it have let go.
 */
typedef struct tls_creds {
    _Atomic size_t refs;
    gnutls_certificate_credentials_t cred;
} tls_creds;

/* Per connection (MHD socket context): pinned credentials and the verified peer identity. */
typedef struct conn_ctx {
    sk__guarded guard; /* slow-client deadline of this connection */
    tls_creds *creds;  /* installed on the session; NULL when that failed */
    bool has_bad_target;
    char bad_target[160]; /* why the raw request target of the current request is refused */
    size_t target_bytes;  /* the current request's raw target (it counts towards the limit) */
    bool is_checked;
    bool is_ok;
    bool has_service;
    char service[SK_MESH_MAX_SERVICE + 1];
} conn_ctx;

/* Threads of one server whose time in on_access is tracked: its libmicrohttpd workers (2), or
 * the gateway's one client thread. */
#define MAX_ACCESS_THREADS 16

struct sk_http_server {
    struct MHD_Daemon *daemon;
    sk_http_client *loop; /* runs the daemon (it has no thread of its own), or NULL */
    hub *hub;
    int port;
    int listen_fd; /* returned by MHD_quiesce_daemon (-1 before); closed after MHD_stop_daemon */
    bool is_tls;
    bool require_client_cert;
    size_t max_body_bytes;
    sk_http_handler_fn handler;
    void *ctx;
    char *key_file; /* paths given at start, re-read by sk_http_server_reload_tls */
    char *cert_file;
    char *ca_file;
    pthread_mutex_t creds_mu; /* protects creds (the pointer; the object is immutable) */
    bool has_creds_mu;
    tls_creds *creds; /* current generation, one reference held by the server */
    sk_metrics *metrics;
    sk_histogram *latency;
    _Atomic(sk_counter *) by_status[600];
    _Atomic uint64_t n_connections;
    _Atomic bool has_fault_hint; /* a fault may be set: only then take fault_mu per request */
    pthread_mutex_t fault_mu;    /* protects fault, has_fault, timers */
    bool has_fault_mu;
    sk__fault_policy fault;
    bool has_fault;
    sk__timers *timers; /* created with the first fault; delayed requests wait here */
    sk__conn_guard *guard; /* cuts connections over request_ms / idle_ms */
    int64_t request_ms;
    int64_t idle_ms;
    /* For the services' watchdog: when each thread that runs on_access entered it (monotonic
     * ms; 0 while outside), a slot per thread in the order they first came. */
    _Atomic int64_t access_since_ms[MAX_ACCESS_THREADS];
    atomic_uint n_access_threads;
    uint64_t id; /* unique in the process, unlike the address a later server may reuse */
};

/* Every server's id; 0 is none. */
static atomic_uint_fast64_t last_server_id;

/* The slot of this thread in the server it last served (see access_since_ms). */
static _Thread_local struct {
    uint64_t server_id;
    unsigned slot; /* MAX_ACCESS_THREADS: not tracked */
} access_slot;

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

static void hub_unref(hub *h)
{
    bool is_last;

    lock(&h->mu);
    is_last = --h->refs == 0;
    unlock(&h->mu);
    if (is_last) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        sk_free(h);
    }
}

static void req_free(sk_http_req *req)
{
    if (req == NULL) {
        return;
    }
    if (req->resp != NULL) {
        MHD_destroy_response(req->resp);
    }
    sk_buf_fini(&req->body);
    sk_free(req->kvs);
    sk_free(req->method);
    sk_free(req->path);
    hub *h = req->hub;
    sk_free(req);
    if (h != NULL) {
        hub_unref(h);
    }
}

/* Callers hold hub->mu. */
static void live_link(hub *h, sk_http_req *req)
{
    req->prev = NULL;
    req->next = h->live;
    if (h->live != NULL) {
        h->live->prev = req;
    }
    h->live = req;
    req->is_live = true;
}

static void live_unlink(hub *h, sk_http_req *req)
{
    if (!req->is_live) {
        return;
    }
    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        h->live = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->prev = req->next = NULL;
    req->is_live = false;
}

/* ---------------------------------------------------------------- responses */

static bool header_line_split(const char *line, char *name, size_t name_cap, const char **value)
{
    const char *colon = strchr(line, ':');
    size_t n;

    if (colon == NULL || colon == line || (size_t)(colon - line) >= name_cap) {
        return false;
    }
    n = (size_t)(colon - line);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    memcpy(name, line, n);
    name[n] = '\0';
    colon++;
    while (*colon == ' ' || *colon == '\t') {
        colon++;
    }
    if (strpbrk(colon, "\r\n") != NULL) {
        return false;
    }
    *value = colon;
    return true;
}

/*
 * Build an MHD response carrying the request id. Returns NULL on out of
 * memory; bad extra headers are skipped with a warning (the answer matters
 * more than a malformed optional header).
 */
static struct MHD_Response *response_build(const sk_http_req *req,
                                           const char *content_type,
                                           const char *body,
                                           size_t body_len,
                                           const char *const *headers)
{
    struct MHD_Response *r;

    r = MHD_create_response_from_buffer(body_len, (void *)(uintptr_t)(body != NULL ? body : ""),
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return NULL;
    }
    if (content_type != NULL &&
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        SK_LOG_WARN("request %s: invalid Content-Type dropped", req->request_id);
    }
    if (MHD_add_response_header(r, "X-Request-Id", req->request_id) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        char name[128];
        const char *value = NULL;
        if (!header_line_split(headers[i], name, sizeof(name), &value) ||
            MHD_add_response_header(r, name, value) != MHD_YES) {
            SK_LOG_WARN("request %s: malformed response header #%zu dropped", req->request_id, i);
        }
    }
    return r;
}

static struct MHD_Response *problem_build(
    const sk_http_req *req, int status, const char *title, const char *detail, bool is_closing)
{
    sk_buf b;
    struct MHD_Response *r = NULL;
    static const char *const close_hdr[] = { "Connection: close", NULL };

    sk_buf_init(&b, 64 * 1024);
    if (sk__http_problem_format(&b, status, title, detail, req->request_id) == SK_OK) {
        r = response_build(req, "application/problem+json", b.data, b.len,
                           is_closing ? close_hdr : NULL);
    }
    sk_buf_fini(&b);
    return r;
}

/* Under h->mu: let MHD send @p req's answer. */
static void resume(hub *h, sk_http_req *req)
{
    MHD_resume_connection(req->conn);
    if (h->loop != NULL) {
        sk__http_client_guest_wake(h->loop);
    }
}

/*
 * Store an answer. @p from_user drops the handler's reference (its first
 * answer only; later ones are ignored). Resumes the connection when MHD is
 * waiting for it.
 */
static void answer_store(sk_http_req *req, struct MHD_Response *resp, int status, bool from_user)
{
    hub *h = req->hub;
    bool is_last = false;

    lock(&h->mu);
    if (from_user) {
        if (!req->has_user_ref) {
            unlock(&h->mu);
            SK_LOG_WARN("request %s: answered twice; second answer ignored", req->request_id);
            if (resp != NULL) {
                MHD_destroy_response(resp);
            }
            return;
        }
        req->has_user_ref = false;
        req->refs--;
    }
    /* A NULL response (out of memory) still counts: MHD then closes the connection. */
    if (!req->is_answered) {
        req->is_answered = true;
        req->resp = resp;
        req->resp_status = status;
        resp = NULL;
        live_unlink(h, req);
        if (req->state == REQ_SUSPENDED && !h->is_daemon_gone) {
            resume(h, req);
        }
    }
    is_last = req->refs == 0;
    unlock(&h->mu);
    if (resp != NULL) {
        MHD_destroy_response(resp);
    }
    if (is_last) {
        req_free(req);
    }
}

void sk_http_req_respond(sk_http_req *req,
                         int status,
                         const char *content_type,
                         const char *body,
                         size_t body_len,
                         const char *const *headers)
{
    struct MHD_Response *r;

    if (req == NULL) {
        return;
    }
    if (status < 200 || status > 599) {
        SK_LOG_ERROR("request %s: handler answered with invalid status %d; sending 500",
                     req->request_id, status);
        r = problem_build(req, 500, NULL, NULL, false);
        status = 500;
    } else if (body == NULL && body_len > 0) {
        SK_LOG_ERROR("request %s: handler answered with a NULL body of %zu bytes; sending 500",
                     req->request_id, body_len);
        r = problem_build(req, 500, NULL, NULL, false);
        status = 500;
    } else {
        r = response_build(req, content_type, body, body_len, headers);
    }
    if (r == NULL) {
        SK_LOG_ERROR("request %s: out of memory building the response", req->request_id);
    }
    /* With r == NULL the handler's reference is still released; MHD closes the connection. */
    answer_store(req, r, status, true);
}

void sk_http_req_respond_problem(
    sk_http_req *req, int status, const char *title, const char *detail_fmt, ...)
{
    char detail[1024];
    va_list ap;
    struct MHD_Response *r;

    if (req == NULL) {
        return;
    }
    detail[0] = '\0';
    if (detail_fmt != NULL) {
        va_start(ap, detail_fmt);
        vsnprintf(detail, sizeof(detail), detail_fmt, ap);
        va_end(ap);
    }
    if (status < 400 || status > 599) {
        SK_LOG_ERROR("request %s: problem with non-error status %d; sending 500", req->request_id,
                     status);
        status = 500;
    }
    if (status == 500) {
        /* A 500 keeps its details in the log (they may reveal internals). */
        SK_LOG_ERROR("request %s: %s %s: 500: %s", req->request_id, req->method, req->path, detail);
        r = problem_build(req, status, title, "internal error; see the server log", false);
    } else {
        r = problem_build(req, status, title, detail_fmt != NULL ? detail : NULL, false);
    }
    answer_store(req, r, status, true);
}

void sk_http_req_respond_json(sk_http_req *req,
                              int status,
                              const json_t *body,
                              const char *const *headers)
{
    sk_buf b;

    if (req == NULL) {
        return;
    }
    sk_buf_init(&b, SK_MAX_HTTP_BODY * 16u);
    if (body == NULL) {
        sk_http_req_respond_problem(req, 500, NULL, "sk_http_req_respond_json: body is NULL");
    } else if (sk_json_dump(body, &b) != SK_OK) {
        sk_http_req_respond_problem(req, 500, NULL, "encoding the JSON answer: %s",
                                    sk_error_message());
    } else {
        sk_http_req_respond(req, status, "application/json", b.data, b.len, headers);
    }
    sk_buf_fini(&b);
}

/* ---------------------------------------------------------------- getters */

const char *sk_http_req_method(const sk_http_req *req)
{
    return req != NULL ? req->method : NULL;
}

const char *sk_http_req_path(const sk_http_req *req)
{
    return req != NULL ? req->path : NULL;
}

static const char *
kv_find(const sk_http_req *req, enum MHD_ValueKind kind, const char *key, bool is_icase)
{
    if (req == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < req->n_kvs; i++) {
        if (req->kvs[i].kind == kind && (is_icase ? strcasecmp(req->kvs[i].key, key) == 0
                                                  : strcmp(req->kvs[i].key, key) == 0)) {
            return req->kvs[i].value;
        }
    }
    return NULL;
}

const char *sk_http_req_query(const sk_http_req *req, const char *key)
{
    return kv_find(req, MHD_GET_ARGUMENT_KIND, key, false);
}

void sk_http_req_query_each(const sk_http_req *req, sk_http_query_fn fn, void *ctx)
{
    if (req == NULL || fn == NULL) {
        return;
    }
    for (size_t i = 0; i < req->n_kvs; i++) {
        if (req->kvs[i].kind == MHD_GET_ARGUMENT_KIND) {
            fn(req->kvs[i].key, req->kvs[i].value, ctx);
        }
    }
}

const char *sk_http_req_header(const sk_http_req *req, const char *name)
{
    return kv_find(req, MHD_HEADER_KIND, name, true);
}

sk_slice sk_http_req_body(const sk_http_req *req)
{
    if (req == NULL || req->body.data == NULL) {
        return (sk_slice){ (const uint8_t *)"", 0 };
    }
    return (sk_slice){ (const uint8_t *)req->body.data, req->body.len };
}

const char *sk_http_req_peer_service(const sk_http_req *req)
{
    return req != NULL && req->has_peer_service ? req->peer_service : NULL;
}

const char *sk_http_req_id(const sk_http_req *req)
{
    return req != NULL ? req->request_id : "";
}

void sk_http_req_set_user(sk_http_req *req, void *user)
{
    if (req != NULL) {
        req->user = user;
    }
}

void *sk_http_req_user(const sk_http_req *req)
{
    return req != NULL ? req->user : NULL;
}

/* ---------------------------------------------------------------- request setup */

typedef struct kv_walk {
    size_t n;
    size_t bytes;
    size_t n_headers;
    size_t header_bytes; /* as on the wire: "Name: value\r\n" */
    sk_http_req *req;
    char *arena;
} kv_walk;

static enum MHD_Result
kv_count(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    kv_walk *w = cls;
    size_t kl = strlen(key);
    size_t vl = value != NULL ? strlen(value) : 0;
    w->n++;
    w->bytes += kl + 1 + vl + 1;
    if (kind == MHD_HEADER_KIND) {
        w->n_headers++;
        w->header_bytes += kl + 2 + vl + 2;
    }
    return MHD_YES;
}

static enum MHD_Result
kv_copy(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    kv_walk *w = cls;
    kv *e = &w->req->kvs[w->req->n_kvs++];
    size_t kl = strlen(key) + 1;
    size_t vl = (value != NULL ? strlen(value) : 0) + 1;

    if (w->req->n_kvs > w->n) {
        w->req->n_kvs--;
        return MHD_NO; /* cannot happen: the set does not change between the walks */
    }
    memcpy(w->arena, key, kl);
    e->key = w->arena;
    w->arena += kl;
    memcpy(w->arena, value != NULL ? value : "", vl);
    e->value = w->arena;
    w->arena += vl;
    e->kind = kind;
    return MHD_YES;
}

/*
 * Copy headers and query arguments so that getters never reach into MHD's
 * connection; count the headers for the limits (*n_headers, *header_bytes).
 */
static sk_status
kvs_copy(sk_http_req *req, struct MHD_Connection *conn, size_t *n_headers, size_t *header_bytes)
{
    kv_walk w = { 0, 0, 0, 0, req, NULL };
    enum MHD_ValueKind kinds = (enum MHD_ValueKind)(MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND);
    size_t size;

    MHD_get_connection_values(conn, kinds, kv_count, &w);
    *n_headers = w.n_headers;
    *header_bytes = w.header_bytes;
    if (w.n == 0) {
        return SK_OK;
    }
    size = w.n * sizeof(kv) + w.bytes;
    req->kvs = sk_malloc(size);
    if (req->kvs == NULL) {
        return SK_FAIL(SK_ENOMEM, "copying request headers");
    }
    w.arena = (char *)(req->kvs + w.n);
    MHD_get_connection_values(conn, kinds, kv_copy, &w);
    return SK_OK;
}

/* Fill @p cc with the verified peer identity of @p session. */
static void peer_identify(gnutls_session_t session, conn_ctx *cc)
{
    unsigned status = 0;
    unsigned n_certs = 0;
    const gnutls_datum_t *certs;
    gnutls_x509_crt_t crt = NULL;
    size_t plen = strlen(SK_SPIFFE_PREFIX);

    cc->is_checked = true;
    cc->is_ok = false;
    cc->has_service = false;
    if (gnutls_certificate_verify_peers2(session, &status) != GNUTLS_E_SUCCESS || status != 0) {
        return;
    }
    certs = gnutls_certificate_get_peers(session, &n_certs);
    if (certs == NULL || n_certs == 0) {
        return;
    }
    cc->is_ok = true;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS) {
        cc->is_ok = false; /* cannot tell who it is: refuse rather than guess */
        return;
    }
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS) {
        for (unsigned i = 0;; i++) {
            char san[512];
            size_t san_len = sizeof(san) - 1;
            int t = gnutls_x509_crt_get_subject_alt_name(crt, i, san, &san_len, NULL);
            if (t == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
                break;
            }
            if (t != GNUTLS_SAN_URI || san_len <= plen || san_len - plen > SK_MESH_MAX_SERVICE ||
                memcmp(san, SK_SPIFFE_PREFIX, plen) != 0) {
                continue;
            }
            san[san_len] = '\0';
            if (strlen(san) != san_len) {
                continue; /* embedded NUL */
            }
            memcpy(cc->service, san + plen, san_len - plen + 1);
            cc->has_service = true;
            break;
        }
    }
    gnutls_x509_crt_deinit(crt);
}

/* The per-connection state of @p conn, or NULL (allocation failed at accept). */
static conn_ctx *conn_ctx_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

typedef struct query_check_ctx {
    bool is_ok;
    char *reason;
    size_t reason_len;
} query_check_ctx;

static void query_arg_check(const char *key, const char *value, void *ctx)
{
    query_check_ctx *q = ctx;

    if (!q->is_ok) {
        return;
    }
    if (!sk__mesh_utf8_is_valid(key, strlen(key))) {
        snprintf(q->reason, q->reason_len, "query: an argument name is not valid UTF-8");
        q->is_ok = false;
    } else if (value != NULL && !sk__mesh_utf8_is_valid(value, strlen(value))) {
        /* The name is valid UTF-8 here, so it can go into the JSON answer. */
        snprintf(q->reason, q->reason_len, "query argument %.64s: not valid UTF-8", key);
        q->is_ok = false;
    }
}

/*
 * Refuse a request whose target or headers are out of bounds, before any
 * handler sees it: 431 (headers), 400 (target). Sets *status and writes the
 * detail; returns false when the request is refused.
 */
static bool request_check(const sk_http_req *req,
                          const conn_ctx *cc,
                          size_t n_headers,
                          size_t header_bytes,
                          int *status,
                          char *detail,
                          size_t detail_len)
{
    query_check_ctx q = { true, detail, detail_len };
    /* The request line counts too: "METHOD target HTTP/1.1\r\n". */
    size_t target = cc != NULL ? cc->target_bytes : strlen(req->path);
    size_t head_bytes =
        strlen(req->method) + 1 + target + sizeof(" HTTP/1.1\r\n") - 1 + header_bytes;

    if (n_headers > SK_HTTP_MAX_HEADERS || head_bytes > SK_HTTP_MAX_HEADER_BYTES) {
        *status = 431;
        snprintf(detail, detail_len,
                 "request headers too large: %zu fields, %zu bytes with the request line (at "
                 "most %u fields, %u bytes)",
                 n_headers, head_bytes, SK_HTTP_MAX_HEADERS, SK_HTTP_MAX_HEADER_BYTES);
        return false;
    }
    *status = 400;
    if (cc != NULL && cc->has_bad_target) {
        snprintf(detail, detail_len, "%s", cc->bad_target);
        return false;
    }
    if (!sk__http_path_check(req->path, detail, detail_len)) {
        return false;
    }
    sk_http_req_query_each(req, query_arg_check, &q);
    return q.is_ok;
}

/* Verify the client certificate (when required) and fill in the peer service. */
static bool peer_check(sk_http_server *srv, struct MHD_Connection *conn, sk_http_req *req)
{
    const union MHD_ConnectionInfo *ci;
    conn_ctx local = { 0 };
    conn_ctx *cc = &local;

    if (!srv->is_tls || !srv->require_client_cert) {
        return true;
    }
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci != NULL && ci->socket_context != NULL) {
        cc = ci->socket_context;
    }
    if (!cc->is_checked) {
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ci == NULL || ci->tls_session == NULL) {
            return false;
        }
        peer_identify((gnutls_session_t)ci->tls_session, cc);
    }
    if (cc->has_service) {
        memcpy(req->peer_service, cc->service, sizeof(req->peer_service));
        req->has_peer_service = true;
    }
    return cc->is_ok;
}

static sk_http_req *req_new(sk_http_server *srv,
                            struct MHD_Connection *conn,
                            const char *url,
                            const char *method,
                            size_t *n_headers,
                            size_t *header_bytes)
{
    sk_http_req *req = sk_calloc(1, sizeof(*req));
    const char *rid;

    if (req == NULL) {
        return NULL;
    }
    req->start_ns = sk_time_mono_ns();
    req->conn = conn;
    req->refs = 1; /* MHD's, dropped in on_completed */
    req->state = REQ_RECEIVING;
    sk_buf_init(&req->body, srv->max_body_bytes);
    req->method = sk_strdup(method);
    req->path = sk_strdup(url);
    if (req->method == NULL || req->path == NULL ||
        kvs_copy(req, conn, n_headers, header_bytes) != SK_OK) {
        req_free(req);
        return NULL;
    }
    rid = kv_find(req, MHD_HEADER_KIND, "X-Request-Id", true);
    if (rid != NULL && sk__http_request_id_is_valid(rid)) {
        memcpy(req->request_id, rid, strlen(rid) + 1);
    } else {
        char uuid[SK_UUID_LEN];
        sk_uuid7(uuid);
        memcpy(req->request_id, uuid, sizeof(uuid));
    }
    lock(&srv->hub->mu);
    srv->hub->refs++;
    unlock(&srv->hub->mu);
    req->hub = srv->hub;
    return req;
}

static enum MHD_Result queue(sk_http_req *req, int status, struct MHD_Response *resp)
{
    enum MHD_Result r;

    if (resp == NULL) {
        return MHD_NO; /* out of memory: drop the connection */
    }
    r = MHD_queue_response(req->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (r == MHD_YES) {
        req->sent_status = status;
    }
    return r;
}

/* ---------------------------------------------------------------- fault injection */

/* Probes and metrics are never faulted: the supervisor and scrapers must keep working. */
static bool path_is_exempt(const char *path)
{
    /* Operators must still see a faulted service: health, metrics and its upstream states. */
    return strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
           strcmp(path, "/metrics") == 0 || strcmp(path, "/mesh/upstreams") == 0;
}

typedef struct fault_wait {
    sk_http_server *srv;
    sk_http_req *req;
    int abort_status;
    sk_http_handler_fn handler;
    void *ctx;
} fault_wait;

/* Timer thread: the injected delay is over; abort or run the handler now. */
static void on_fault_timer(void *arg, bool is_canceled)
{
    fault_wait *w = arg;

    if (is_canceled) {
        sk_http_req_respond_problem(w->req, 503, NULL, "the server is shutting down");
    } else if (w->abort_status != 0) {
        /* Not through sk_http_req_respond_problem: an injected 500 is not an error to log. */
        answer_store(w->req,
                     problem_build(w->req, w->abort_status, NULL, "fault injected (abort)", false),
                     w->abort_status, true);
    } else {
        w->handler(w->req, w->ctx);
    }
    sk_free(w);
}

/*
 * Park @p req (handler reference taken) on the fault timer for @p delay_ms.
 * @return false when it cannot (server stopping, out of memory): run it now.
 */
static bool
fault_delay_start(sk_http_server *srv, sk_http_req *req, int64_t delay_ms, int abort_status)
{
    fault_wait *w = sk_calloc(1, sizeof(*w));
    bool ok = false;

    if (w == NULL) {
        return false;
    }
    *w = (fault_wait){ srv, req, abort_status, srv->handler, srv->ctx };
    lock(&srv->fault_mu);
    if (srv->timers != NULL) {
        ok = sk__timers_add(srv->timers, sk_time_mono_ms() + delay_ms, on_fault_timer, w, NULL) ==
             SK_OK;
    }
    unlock(&srv->fault_mu);
    if (!ok) {
        sk_error_clear();
        sk_free(w);
    }
    return ok;
}

sk_status sk_http_server_set_fault(sk_http_server *srv, const json_t *fault)
{
    sk__fault_policy f;
    sk__timers *timers = NULL;
    sk_status st;

    if (srv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_set_fault: srv must not be NULL");
    }
    st = sk__fault_parse(fault, "fault", &f);
    if (st != SK_OK) {
        return st;
    }
    lock(&srv->fault_mu);
    bool needs_timers = f.has_delay && srv->timers == NULL;
    unlock(&srv->fault_mu);
    if (needs_timers) {
        st = sk__timers_create(&timers);
        if (st != SK_OK) {
            return SK_WRAP(st, "sk_http_server_set_fault");
        }
    }
    lock(&srv->fault_mu);
    if (timers != NULL && srv->timers == NULL) {
        srv->timers = timers;
        timers = NULL;
    }
    srv->fault = f;
    srv->has_fault = f.has_delay || f.has_abort;
    atomic_store(&srv->has_fault_hint, srv->has_fault);
    unlock(&srv->fault_mu);
    sk__timers_destroy(timers); /* lost a race with another setter: not needed */
    return SK_OK;
}

/* ---------------------------------------------------------------- MHD callbacks */

/* This thread's access_since_ms slot in @p srv, or NULL when all are taken. */
static _Atomic int64_t *access_stamp(sk_http_server *srv)
{
    if (access_slot.server_id != srv->id) {
        access_slot.server_id = srv->id;
        access_slot.slot = atomic_fetch_add(&srv->n_access_threads, 1);
        if (access_slot.slot > MAX_ACCESS_THREADS) {
            access_slot.slot = MAX_ACCESS_THREADS; /* not tracked */
        }
    }
    return access_slot.slot < MAX_ACCESS_THREADS ? &srv->access_since_ms[access_slot.slot] : NULL;
}

int64_t sk_http_server_busy_ms(const sk_http_server *srv)
{
    int64_t longest = 0;
    if (srv == NULL) {
        return 0;
    }
    unsigned n = atomic_load(&srv->n_access_threads);
    for (unsigned i = 0; i < n && i < MAX_ACCESS_THREADS; i++) {
        int64_t since = atomic_load(&srv->access_since_ms[i]);
        int64_t busy = since != 0 ? sk_time_mono_since_ms(since) : 0;
        longest = busy > longest ? busy : longest;
    }
    return longest;
}

static enum MHD_Result access_serve(sk_http_server *srv,
                                    struct MHD_Connection *conn,
                                    const char *url,
                                    const char *method,
                                    const char *upload_data,
                                    size_t *upload_data_size,
                                    void **con_cls);

/* libmicrohttpd's request callback: access_serve, timed for the watchdog. */
static enum MHD_Result on_access(void *cls,
                                 struct MHD_Connection *conn,
                                 const char *url,
                                 const char *method,
                                 const char *version,
                                 const char *upload_data,
                                 size_t *upload_data_size,
                                 void **con_cls)
{
    sk_http_server *srv = cls;
    _Atomic int64_t *stamp = access_stamp(srv);

    (void)version;
    if (stamp != NULL) {
        atomic_store(stamp, sk_time_mono_ms());
    }
    enum MHD_Result r =
        access_serve(srv, conn, url, method, upload_data, upload_data_size, con_cls);
    if (stamp != NULL) {
        atomic_store(stamp, 0);
    }
    return r;
}

/* Read a request, route it to the handler, hand its answer to libmicrohttpd. */
static enum MHD_Result access_serve(sk_http_server *srv,
                                    struct MHD_Connection *conn,
                                    const char *url,
                                    const char *method,
                                    const char *upload_data,
                                    size_t *upload_data_size,
                                    void **con_cls)
{
    sk_http_req *req = *con_cls;
    hub *h = srv->hub;
    struct MHD_Response *resp;
    int status;

    if (req == NULL) {
        conn_ctx *cc = conn_ctx_of(conn);
        size_t n_headers = 0;
        size_t header_bytes = 0;
        char detail[256];
        int refuse = 0;

        req = req_new(srv, conn, url, method, &n_headers, &header_bytes);
        if (req == NULL || cc == NULL) {
            SK_LOG_ERROR("request: out of memory setting up the request; closing the connection");
            if (req != NULL) {
                *con_cls = req; /* freed in on_completed */
            }
            return MHD_NO;
        }
        *con_cls = req;
        if (!peer_check(srv, conn, req)) {
            SK_LOG_WARN("request %s: client certificate missing or not signed by our CA; "
                        "closing the connection",
                        req->request_id);
            return MHD_NO;
        }
        if (!request_check(req, cc, n_headers, header_bytes, &refuse, detail, sizeof(detail))) {
            /* Answered before the body is read: MHD closes the connection after the answer. */
            SK_LOG_DEBUG("request %s: %d: %s", req->request_id, refuse, detail);
            sk__conn_guard_set(srv->guard, &cc->guard, 0);
            req->state = REQ_QUEUED;
            return queue(req, refuse, problem_build(req, refuse, NULL, detail, true));
        }
        const char *cl = kv_find(req, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH, true);
        if (cl != NULL) {
            char *end = NULL;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno != 0 || end == cl || n > srv->max_body_bytes) {
                /* Refuse before reading the body; MHD closes the connection after this answer. */
                sk__conn_guard_set(srv->guard, &cc->guard, 0);
                req->is_too_large = true;
                req->state = REQ_QUEUED;
                return queue(
                    req, 413,
                    problem_build(req, 413, NULL, "request body larger than the limit", true));
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!req->is_too_large &&
            sk_buf_append(&req->body, upload_data, *upload_data_size) != SK_OK) {
            req->is_too_large = true;
            sk_buf_fini(&req->body);
            sk_buf_init(&req->body, 0);
        }
        if (req->is_too_large) {
            /* MHD cannot answer before the body is in (without Content-Length): discard it and
             * answer 413 at the end, but drop a client that streams far past the limit. */
            req->n_discarded += *upload_data_size;
            if (req->n_discarded / DISCARD_FACTOR > srv->max_body_bytes) {
                *upload_data_size = 0;
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == REQ_RECEIVING) {
        /* The whole request is in: from here on the handler's time is not the client's. */
        conn_ctx *cc = conn_ctx_of(conn);
        if (cc != NULL) {
            sk__conn_guard_set(srv->guard, &cc->guard, 0);
        }
    }
    if (req->is_too_large && req->state == REQ_RECEIVING) {
        req->state = REQ_QUEUED;
        return queue(req, 413,
                     problem_build(req, 413, NULL, "request body larger than the limit", false));
    }
    switch (req->state) {
    case REQ_RECEIVING:
        lock(&h->mu);
        if (h->is_stopping) {
            req->state = REQ_QUEUED;
            unlock(&h->mu);
            return queue(req, 503,
                         problem_build(req, 503, NULL, "the server is shutting down", true));
        }
        int64_t fault_delay_ms = 0;
        int fault_abort = 0;
        if (atomic_load(&srv->has_fault_hint) && !path_is_exempt(req->path)) {
            lock(&srv->fault_mu);
            if (srv->has_fault) {
                sk__fault_decide(&srv->fault, NULL, NULL, &fault_delay_ms, &fault_abort);
            }
            unlock(&srv->fault_mu);
        }
        if (fault_abort != 0 && fault_delay_ms == 0) {
            req->state = REQ_QUEUED;
            unlock(&h->mu);
            return queue(req, fault_abort,
                         problem_build(req, fault_abort, NULL, "fault injected (abort)", false));
        }
        req->state = REQ_IN_HANDLER;
        req->refs++;
        req->has_user_ref = true;
        req->is_outstanding = true;
        h->n_outstanding++;
        live_link(h, req);
        unlock(&h->mu);

        if (fault_delay_ms > 0 && fault_delay_start(srv, req, fault_delay_ms, fault_abort)) {
            lock(&h->mu);
            if (!req->is_answered) {
                req->state = REQ_SUSPENDED;
                MHD_suspend_connection(conn);
                unlock(&h->mu);
                return MHD_YES;
            }
            break; /* answered already (the timer ran): hub->mu held, take the answer */
        }
        srv->handler(req, srv->ctx);

        lock(&h->mu);
        if (!req->is_answered) {
            /* No answer yet: wait for one, from any thread. */
            req->state = REQ_SUSPENDED;
            MHD_suspend_connection(conn);
            unlock(&h->mu);
            return MHD_YES;
        }
        break;
    case REQ_SUSPENDED:
        lock(&h->mu); /* resumed by answer_store */
        break;
    default:
        return MHD_YES;
    }
    /* hub->mu held: take the stored answer. */
    resp = req->resp;
    status = req->resp_status;
    req->resp = NULL;
    req->state = REQ_QUEUED;
    unlock(&h->mu);
    return queue(req, status, resp);
}

static void on_completed(void *cls,
                         struct MHD_Connection *conn,
                         void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sk_http_server *srv = cls;
    sk_http_req *req = *con_cls;
    hub *h = srv->hub;
    bool is_last;

    (void)toe;
    if (conn != NULL) {
        /* Keep-alive: the next request line must come within the idle bound. */
        conn_ctx *cc = conn_ctx_of(conn);
        if (cc != NULL) {
            sk__conn_guard_set(srv->guard, &cc->guard, sk_time_mono_ms() + srv->idle_ms);
        }
    }
    if (req == NULL) {
        return;
    }
    *con_cls = NULL;
    if (srv->metrics != NULL && req->sent_status >= 100 && req->sent_status < 600) {
        sk_counter *c = atomic_load(&srv->by_status[req->sent_status]);
        if (c == NULL) {
            char labels[32];
            snprintf(labels, sizeof(labels), "status=\"%d\"", req->sent_status);
            c = sk_metrics_counter(srv->metrics, "sk_http_server_requests_total",
                                   "HTTP requests answered, by status", labels);
            if (c != NULL) {
                atomic_store(&srv->by_status[req->sent_status], c);
            }
        }
        if (c != NULL) {
            sk_counter_add(c, 1);
        }
        if (srv->latency != NULL) {
            sk_histogram_observe(srv->latency, (double)(sk_time_mono_ns() - req->start_ns) / 1e9);
        }
    }
    lock(&h->mu);
    live_unlink(h, req);
    if (req->is_outstanding) {
        req->is_outstanding = false;
        h->n_outstanding--;
        pthread_cond_broadcast(&h->cv);
    }
    req->state = REQ_DONE;
    req->conn = NULL;
    req->refs--;
    is_last = req->refs == 0;
    unlock(&h->mu);
    if (is_last) {
        req_free(req);
    }
}

/* ---------------------------------------------------------------- TLS credentials */

static void creds_unref(tls_creds *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) {
        return;
    }
    if (c->cred != NULL) {
        gnutls_certificate_free_credentials(c->cred);
    }
    sk_free(c);
}

/* A new reference to the current credentials (never NULL on a TLS server). */
static tls_creds *creds_current(sk_http_server *srv)
{
    tls_creds *c;

    lock(&srv->creds_mu);
    c = srv->creds;
    atomic_fetch_add(&c->refs, 1);
    unlock(&srv->creds_mu);
    return c;
}

/*
 * The daemon's own credentials serve only a session whose per-connection
 * credentials could not be installed (out of memory): refuse its handshake
 * rather than answer with a certificate whose lifetime nothing tracks.
 */
static int on_cert_retrieve(gnutls_session_t session,
                            const gnutls_datum_t *req_ca_rdn,
                            int nreqs,
                            const gnutls_pk_algorithm_t *pk_algos,
                            int pk_algos_length,
                            gnutls_pcert_st **pcert,
                            unsigned int *pcert_length,
                            gnutls_privkey_t *pkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    *pcert = NULL;
    *pcert_length = 0;
    *pkey = NULL;
    SK_LOG_WARN("TLS handshake refused: no per-connection credentials (out of memory)");
    return -1;
}

static void on_connection(void *cls,
                          struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    sk_http_server *srv = cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* NULL on out of memory: a TLS handshake is then refused, a plain request closed. */
        conn_ctx *cc = sk_calloc(1, sizeof(conn_ctx));
        atomic_fetch_add(&srv->n_connections, 1);
        if (cc != NULL) {
            const union MHD_ConnectionInfo *fi =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (fi != NULL) {
                /* From accept to the first request line (the TLS handshake included). */
                sk__conn_guard_add(srv->guard, &cc->guard, fi->connect_fd,
                                   sk_time_mono_ms() + srv->idle_ms);
            }
        }
        if (srv->is_tls) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
            gnutls_session_t s = ci != NULL ? (gnutls_session_t)ci->tls_session : NULL;
            if (s != NULL && cc != NULL) {
                /* This runs before the handshake: the session uses the credentials current now,
                 * pinned until the connection closes (GnuTLS keeps a pointer to them). */
                tls_creds *c = creds_current(srv);
                if (gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred) ==
                    GNUTLS_E_SUCCESS) {
                    cc->creds = c;
                } else {
                    creds_unref(c); /* the daemon's credentials refuse the handshake */
                }
            }
            if (s != NULL && srv->require_client_cert) {
                /* MHD only requests a certificate; require one and verify it in the handshake,
                 * so a client without a valid certificate never gets to send a request. */
                gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
                gnutls_session_set_verify_cert(s, NULL, 0);
            }
        }
        *socket_context = cc;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_ctx *cc = *socket_context;
        if (cc != NULL) {
            /* Before MHD closes the socket, so the guard never cuts a reused descriptor. */
            if (sk__conn_guard_remove(srv->guard, &cc->guard)) {
                SK_LOG_INFO("connection closed: request not received in time (slow client)");
            }
            creds_unref(cc->creds);
        }
        sk_free(cc);
        *socket_context = NULL;
    }
}

/*
 * Called once per request with the raw request target, as soon as the
 * request line is in: starts the request's time bound and checks the
 * encoded form (which on_access only sees decoded).
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    sk_http_server *srv = cls;
    conn_ctx *cc = conn_ctx_of(conn);

    if (cc != NULL) {
        sk__conn_guard_set(srv->guard, &cc->guard, sk_time_mono_ms() + srv->request_ms);
        cc->has_bad_target =
            !sk__http_target_raw_check(uri, cc->bad_target, sizeof(cc->bad_target));
        cc->target_bytes = strlen(uri);
    }
    return NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char text[512];
    size_t n;

    (void)cls;
    if (SK_LOG_LEVEL_DEBUG > sk_log_level_current) {
        return;
    }
    vsnprintf(text, sizeof(text), fmt, ap);
    n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) {
        text[--n] = '\0';
    }
    SK_LOG_DEBUG("libmicrohttpd: %s", text);
}

/* ---------------------------------------------------------------- start / stop */

sk_status sk__mesh_pem_read(const char *what, const char *path, char **out)
{
    sk_status st = SK_OK;
    int fd = -1;
    sk_buf b;
    char chunk[4096];

    *out = NULL;
    sk_buf_init(&b, MAX_PEM_BYTES);
    if (path == NULL || path[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "tls->%s must be a path", what);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = SK_FAIL(SK_EIO, "reading %s %s: %s", what, path, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            st = SK_FAIL(SK_EIO, "reading %s %s: %s", what, path, strerror(errno));
            goto out;
        }
        if (n == 0) {
            break;
        }
        st = sk_buf_append(&b, chunk, (size_t)n);
        if (st != SK_OK) {
            st = SK_WRAP(st, "reading %s %s", what, path);
            goto out;
        }
    }
    if (b.len == 0 || strstr(b.data, "-----BEGIN ") == NULL) {
        st = SK_FAIL(SK_EPROTO, "%s %s: not a PEM file", what, path);
        goto out;
    }
    *out = sk_buf_take(&b, NULL);
out:
    if (fd >= 0) {
        close(fd);
    }
    if (b.data != NULL) {
        OPENSSL_cleanse(b.data, b.len); /* may hold a private key */
    }
    sk_buf_fini(&b);
    return st;
}

static sk_status gnutls_fail(int rc, const char *what, const char *path)
{
    sk_status st = rc == GNUTLS_E_MEMORY_ERROR ? SK_ENOMEM : SK_ETLS;
    return SK_FAIL(st, "%s %s: %s", what, path, gnutls_strerror(rc));
}

/*
 * Check that the first certificate of @p cert and the key @p key hold the same
 * public key. GnuTLS 3.7 checks this too, but leaks a certificate on that
 * error path, so a mismatch is caught here first.
 */
static sk_status
key_pair_check(const gnutls_datum_t *cert, const gnutls_datum_t *key, const sk_http_server *srv)
{
    sk_status st = SK_OK;
    gnutls_x509_crt_t crt = NULL;
    gnutls_x509_privkey_t pk = NULL;
    unsigned char id_crt[64];
    unsigned char id_key[64];
    size_t n_crt = sizeof(id_crt);
    size_t n_key = sizeof(id_key);
    int rc;

    rc = gnutls_x509_crt_init(&crt);
    if (rc == GNUTLS_E_SUCCESS) {
        rc = gnutls_x509_crt_import(crt, cert, GNUTLS_X509_FMT_PEM);
    }
    if (rc == GNUTLS_E_SUCCESS) {
        rc = gnutls_x509_crt_get_key_id(crt, 0, id_crt, &n_crt);
    }
    if (rc != GNUTLS_E_SUCCESS) {
        st = gnutls_fail(rc, "loading cert_file", srv->cert_file);
        goto out;
    }
    rc = gnutls_x509_privkey_init(&pk);
    if (rc == GNUTLS_E_SUCCESS) {
        rc = gnutls_x509_privkey_import(pk, key, GNUTLS_X509_FMT_PEM);
    }
    if (rc == GNUTLS_E_SUCCESS) {
        rc = gnutls_x509_privkey_get_key_id(pk, 0, id_key, &n_key);
    }
    if (rc != GNUTLS_E_SUCCESS) {
        st = gnutls_fail(rc, "loading key_file", srv->key_file);
        goto out;
    }
    if (n_crt != n_key || memcmp(id_crt, id_key, n_crt) != 0) {
        st = SK_FAIL(SK_ETLS, "key_file %s does not belong to cert_file %s", srv->key_file,
                     srv->cert_file);
    }
out:
    if (crt != NULL) {
        gnutls_x509_crt_deinit(crt);
    }
    if (pk != NULL) {
        gnutls_x509_privkey_deinit(pk);
    }
    return st;
}

/*
 * Read the key, certificate and (with client certificates) CA files of @p srv
 * into a new generation of credentials with one reference. All or nothing.
 */
static sk_status creds_load(const sk_http_server *srv, tls_creds **out)
{
    sk_status st = SK_OK;
    tls_creds *c = NULL;
    char *key = NULL;
    char *cert = NULL;
    char *ca = NULL;
    int rc;

    *out = NULL;
    st = sk__mesh_pem_read("key_file", srv->key_file, &key);
    if (st == SK_OK) {
        st = sk__mesh_pem_read("cert_file", srv->cert_file, &cert);
    }
    if (st == SK_OK && srv->require_client_cert) {
        st = sk__mesh_pem_read("ca_file", srv->ca_file, &ca);
    }
    if (st != SK_OK) {
        goto out;
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        st = SK_FAIL(SK_ENOMEM, "allocating TLS credentials");
        goto out;
    }
    atomic_init(&c->refs, 1);
    rc = gnutls_certificate_allocate_credentials(&c->cred);
    if (rc != GNUTLS_E_SUCCESS) {
        c->cred = NULL;
        st = gnutls_fail(rc, "allocating credentials for", srv->cert_file);
        goto out;
    }
    gnutls_datum_t cert_d = { (unsigned char *)cert, (unsigned)strlen(cert) };
    gnutls_datum_t key_d = { (unsigned char *)key, (unsigned)strlen(key) };
    st = key_pair_check(&cert_d, &key_d, srv);
    if (st != SK_OK) {
        goto out;
    }
    rc = gnutls_certificate_set_x509_key_mem2(c->cred, &cert_d, &key_d, GNUTLS_X509_FMT_PEM, NULL,
                                              0);
    if (rc < 0) {
        st = gnutls_fail(rc, "loading cert_file/key_file", srv->cert_file);
        goto out;
    }
    if (ca != NULL) {
        gnutls_datum_t ca_d = { (unsigned char *)ca, (unsigned)strlen(ca) };
        rc = gnutls_certificate_set_x509_trust_mem(c->cred, &ca_d, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            st = rc == 0 ? SK_FAIL(SK_ETLS, "ca_file %s: no certificate in it", srv->ca_file)
                         : gnutls_fail(rc, "loading ca_file", srv->ca_file);
            goto out;
        }
    }
    *out = c;
    c = NULL;
out:
    if (key != NULL) {
        OPENSSL_cleanse(key, strlen(key));
    }
    sk_free(key);
    sk_free(cert);
    sk_free(ca);
    creds_unref(c);
    return st;
}

sk_status sk_http_server_reload_tls(sk_http_server *srv)
{
    sk_status st;
    tls_creds *fresh = NULL;
    tls_creds *old;

    if (srv == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_reload_tls: srv must not be NULL");
    }
    if (!srv->is_tls) {
        return SK_FAIL(SK_ESTATE, "sk_http_server_reload_tls: the server was started without TLS");
    }
    st = creds_load(srv, &fresh);
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_http_server_reload_tls (keeping the current credentials)");
    }
    lock(&srv->creds_mu);
    old = srv->creds;
    srv->creds = fresh;
    unlock(&srv->creds_mu);
    creds_unref(old); /* connections that pinned it keep it alive */
    return SK_OK;
}

static void server_free(sk_http_server *srv)
{
    if (srv == NULL) {
        return;
    }
    sk__conn_guard_destroy(srv->guard); /* after MHD stopped: no connection is left to remove */
    sk_free(srv->key_file);
    sk_free(srv->cert_file);
    sk_free(srv->ca_file);
    creds_unref(srv->creds);
    if (srv->has_creds_mu) {
        pthread_mutex_destroy(&srv->creds_mu);
    }
    if (srv->hub != NULL) {
        hub_unref(srv->hub);
    }
    sk__timers_destroy(srv->timers);
    if (srv->has_fault_mu) {
        pthread_mutex_destroy(&srv->fault_mu);
    }
    sk_free(srv);
}

/*
 * A timeout: @p value when set, else the environment variable @p env when
 * set, else @p def. Out of MIN_TIMEOUT_MS..MAX_TIMEOUT_MS is an error naming
 * where the value came from.
 */
static sk_status
timeout_pick(int64_t value, const char *field, const char *env, int64_t def, int64_t *out)
{
    const char *text = getenv(env);

    *out = def;
    if (value != 0) {
        if (value < MIN_TIMEOUT_MS || value > MAX_TIMEOUT_MS) {
            return SK_FAIL(SK_EINVAL,
                           "sk_http_server_start: cfg->%s must be %d..%d ms (or 0), got %lld",
                           field, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, (long long)value);
        }
        *out = value;
        return SK_OK;
    }
    if (text != NULL && text[0] != '\0') {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || v < MIN_TIMEOUT_MS ||
            v > MAX_TIMEOUT_MS) {
            return SK_FAIL(SK_EINVAL, "sk_http_server_start: %s must be %d..%d (ms), got \"%.32s\"",
                           env, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, text);
        }
        *out = v;
    }
    return SK_OK;
}

sk_status sk__http_env_timeout_ms(const char *env, int64_t def, int64_t *out)
{
    return timeout_pick(0, NULL, env, def, out);
}

/* Guest callbacks: the daemon served by the HTTP client's thread. */
static void hosted_run(void *ctx)
{
    sk_http_server *srv = ctx;
    SK_IGNORE(MHD_run(srv->daemon)); /* only fails for a daemon with its own thread */
}

static int64_t hosted_timeout_ms(void *ctx)
{
    sk_http_server *srv = ctx;
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(srv->daemon, &ms) != MHD_YES) {
        return -1;
    }
    return ms > INT32_MAX ? INT32_MAX : (int64_t)ms;
}

sk_status sk_http_server_start(sk_http_server **out, const sk_http_server_config *cfg)
{
    sk_status st = SK_OK;
    sk_http_server *srv = NULL;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa;
    /*
     * poll(), not epoll: with epoll, MHD_quiesce_daemon (draining) races a
     * worker removing the listening socket from its epoll set, and the loser
     * aborts the process ("Failed to remove listen FD from epoll set", an
     * open libmicrohttpd defect, seen here about once in 20 drains). With
     * poll() quiescing only signals the workers. A worker polls its few
     * connections, so poll() costs no more than epoll here.
     */
    unsigned flags =
        MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    unsigned n_threads;
    struct MHD_OptionItem opts[16];
    size_t n_opts = 0;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: out must not be NULL");
    }
    *out = NULL;
    if (cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg must not be NULL");
    }
    if (cfg->handler == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg->handler must not be NULL");
    }
    if (cfg->port < 0 || cfg->port > 65535) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg->port must be 0..65535, got %d",
                       cfg->port);
    }
    if (cfg->n_threads > MAX_THREADS) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg->n_threads must be 0..%u, got %u",
                       MAX_THREADS, cfg->n_threads);
    }
    if (cfg->require_client_cert && cfg->tls == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg->require_client_cert needs cfg->tls");
    }
    const char *bind_addr = cfg->bind_addr != NULL ? cfg->bind_addr : "127.0.0.1";
    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, bind_addr, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)cfg->port);
        sa = (struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, bind_addr, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)cfg->port);
        sa = (struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        return SK_FAIL(SK_EINVAL,
                       "sk_http_server_start: cfg->bind_addr must be an IPv4 or IPv6 address, "
                       "got \"%.64s\"",
                       bind_addr);
    }

    srv = sk_calloc(1, sizeof(*srv));
    if (srv == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_server_start: allocating the server");
        goto out;
    }
    srv->listen_fd = -1;
    srv->id = atomic_fetch_add(&last_server_id, 1) + 1;
    srv->hub = sk_calloc(1, sizeof(hub));
    if (srv->hub == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_server_start: allocating the server");
        goto out;
    }
    if (pthread_mutex_init(&srv->fault_mu, NULL) != 0) {
        abort();
    }
    srv->has_fault_mu = true;
    if (pthread_mutex_init(&srv->creds_mu, NULL) != 0) {
        abort();
    }
    srv->has_creds_mu = true;
    if (pthread_mutex_init(&srv->hub->mu, NULL) != 0 ||
        pthread_cond_init(&srv->hub->cv, NULL) != 0) {
        abort();
    }
    srv->hub->refs = 1;
    srv->handler = cfg->handler;
    srv->ctx = cfg->ctx;
    srv->max_body_bytes = cfg->max_body_bytes != 0 ? cfg->max_body_bytes : SK_MAX_HTTP_BODY;
    srv->is_tls = cfg->tls != NULL;
    srv->require_client_cert = cfg->require_client_cert;
    srv->metrics = cfg->metrics;
    st = timeout_pick(cfg->request_timeout_ms, "request_timeout_ms", "SKALD_HTTP_REQUEST_TIMEOUT_MS",
                      SK_HTTP_REQUEST_TIMEOUT_MS, &srv->request_ms);
    if (st == SK_OK) {
        st = timeout_pick(cfg->idle_timeout_ms, "idle_timeout_ms", "SKALD_HTTP_IDLE_TIMEOUT_MS",
                          SK_HTTP_IDLE_TIMEOUT_MS, &srv->idle_ms);
    }
    if (st == SK_OK) {
        st = sk__conn_guard_create(&srv->guard);
    }
    if (st != SK_OK) {
        goto out;
    }
    if (srv->metrics != NULL) {
        srv->latency = sk_metrics_histogram(srv->metrics, "sk_http_server_request_duration_seconds",
                                            "HTTP request latency from headers to answer", NULL);
        if (srv->latency == NULL) {
            st = SK_WRAP(SK_ENOMEM, "sk_http_server_start: registering metrics");
            goto out;
        }
    }
    n_threads = cfg->n_threads != 0 ? cfg->n_threads : DEFAULT_THREADS;
    if (cfg->loop != NULL) {
        /*
         * Served by an HTTP client's thread instead: MHD without a thread of
         * its own, its epoll fd polled by that thread with the transfers. The
         * quiescing race above needs a second thread, so epoll is safe here
         * (quiescing runs on the loop thread too).
         */
        flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                (flags & MHD_USE_IPv6);
        n_threads = 1;
        srv->loop = cfg->loop;
    }

    opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, sa };
    opts[n_opts++] =
        (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv };
    opts[n_opts++] =
        (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, srv };
    /* MHD's own inactivity timeout is a backstop (it also covers a client that stops reading an
     * answer); the guard enforces the request and idle bounds to the millisecond. */
    unsigned idle_s = (unsigned)((srv->idle_ms + srv->request_ms + 999) / 1000);
    opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT, idle_s, NULL };
    opts[n_opts++] =
        (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY_BYTES, NULL };
    opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, srv };
    opts[n_opts++] =
        (struct MHD_OptionItem){ MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL };
    if (n_threads > 1) {
        opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, n_threads, NULL };
    }
    if (cfg->tls != NULL) {
        for (int i = 0; i < 3; i++) {
            static const char *const names[] = { "key_file", "cert_file", "ca_file" };
            const char *path = i == 0   ? cfg->tls->key_file
                               : i == 1 ? cfg->tls->cert_file
                                        : cfg->tls->ca_file;
            if (i == 2 && !cfg->require_client_cert) {
                break;
            }
            if (path == NULL || path[0] == '\0') {
                st = SK_FAIL(SK_EINVAL, "sk_http_server_start: cfg->tls->%s must be a path",
                             names[i]);
                goto out;
            }
        }
        srv->key_file = sk_strdup(cfg->tls->key_file);
        srv->cert_file = sk_strdup(cfg->tls->cert_file);
        srv->ca_file = cfg->require_client_cert ? sk_strdup(cfg->tls->ca_file) : NULL;
        if (srv->key_file == NULL || srv->cert_file == NULL ||
            (cfg->require_client_cert && srv->ca_file == NULL)) {
            st = SK_FAIL(SK_ENOMEM, "sk_http_server_start: copying the TLS paths");
            goto out;
        }
        st = creds_load(srv, &srv->creds);
        if (st != SK_OK) {
            st = SK_WRAP(st, "sk_http_server_start");
            goto out;
        }
        flags |= MHD_USE_TLS;
        opts[n_opts++] = (struct MHD_OptionItem){
            MHD_OPTION_HTTPS_PRIORITIES, 0,
            (void *)(uintptr_t)(cfg->require_client_cert ? PRIORITIES_INTERNAL : PRIORITIES_PUBLIC)
        };
    }
    opts[n_opts++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };

    if (cfg->tls != NULL) {
        /* The certificate callback stands in for MHD_OPTION_HTTPS_MEM_KEY/CERT: every session
         * gets its credentials in on_connection, so the daemon's own ones hold no key. */
        gnutls_certificate_retrieve_function2 *cb = on_cert_retrieve;
        srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts,
                                       MHD_OPTION_HTTPS_CERT_CALLBACK, cb, MHD_OPTION_END);
    } else {
        srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts,
                                       MHD_OPTION_END);
    }
    if (srv->daemon == NULL) {
        st = SK_FAIL(SK_EIO,
                     "sk_http_server_start: cannot listen on %s:%d (address in use, bad TLS "
                     "files or no resources; set SK_LOG_LEVEL=debug for libmicrohttpd's reason)",
                     bind_addr, cfg->port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di != NULL ? (int)di->port : cfg->port;
    if (srv->loop != NULL) {
        di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        srv->hub->loop = srv->loop; /* before any request can come: no lock needed */
        if (di == NULL) {
            st = SK_FAIL(SK_EINTERNAL, "libmicrohttpd has no epoll fd");
        } else {
            sk__loop_guest guest = { di->epoll_fd, hosted_run, hosted_timeout_ms, srv };
            st = sk__http_client_host(srv->loop, &guest);
        }
        if (st != SK_OK) {
            MHD_stop_daemon(srv->daemon);
            st = SK_WRAP(st, "sk_http_server_start");
            goto out;
        }
    }
    *out = srv;
    srv = NULL;
out:
    server_free(srv);
    return st;
}

int sk_http_server_port(const sk_http_server *srv)
{
    return srv != NULL ? srv->port : 0;
}

uint64_t sk__http_server_cut_total(const sk_http_server *srv)
{
    return srv != NULL ? sk__conn_guard_cut_total(srv->guard) : 0;
}

uint64_t sk__http_server_connections_total(const sk_http_server *srv)
{
    return srv != NULL ? atomic_load(&((sk_http_server *)(uintptr_t)srv)->n_connections) : 0;
}

static void quiesce(void *ctx)
{
    sk_http_server *srv = ctx;
    srv->listen_fd = (int)MHD_quiesce_daemon(srv->daemon);
}

void sk_http_server_stop_listening(sk_http_server *srv)
{
    if (srv == NULL || srv->listen_fd != -1) {
        return;
    }
    if (srv->loop != NULL) {
        sk__http_client_on_loop(srv->loop, quiesce, srv); /* never beside MHD_run */
    } else {
        quiesce(srv);
    }
    /*
     * MHD no longer accepts, but the socket must stay open until
     * MHD_stop_daemon (a worker may still hold it). Shutting a listening
     * socket down makes the kernel reset queued and new connections, so
     * clients fail fast instead of waiting in the backlog.
     */
    if (srv->listen_fd != -1) {
        SK_IGNORE(shutdown(srv->listen_fd, SHUT_RDWR));
    }
}

void sk_http_server_stop(sk_http_server *srv)
{
    hub *h;
    struct timespec deadline;
    MHD_socket fd;

    if (srv == NULL) {
        return;
    }
    h = srv->hub;
    /* Delayed requests first: their timers answer 503 while MHD can still send it. */
    lock(&srv->fault_mu);
    sk__timers *timers = srv->timers;
    srv->timers = NULL;
    unlock(&srv->fault_mu);
    sk__timers_destroy(timers);
    sk_http_server_stop_listening(srv);
    fd = srv->listen_fd;

    /* Answer whatever the handlers still hold; their late answers become no-ops. */
    lock(&h->mu);
    h->is_stopping = true;
    while (h->live != NULL) {
        sk_http_req *req = h->live;
        struct MHD_Response *r = problem_build(req, 503, NULL, "the server is shutting down", true);
        live_unlink(h, req);
        req->is_answered = true;
        req->resp = r;
        req->resp_status = 503;
        if (req->state == REQ_SUSPENDED) {
            resume(h, req);
        }
    }
    /* Give those answers a moment to go out before the connections are closed. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += (long)(STOP_DRAIN_MS % 1000) * 1000000L;
    deadline.tv_sec += STOP_DRAIN_MS / 1000 + deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    while (h->n_outstanding > 0) {
        if (pthread_cond_timedwait(&h->cv, &h->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    unlock(&h->mu);

    if (srv->loop != NULL) {
        SK_IGNORE(sk__http_client_host(srv->loop, NULL)); /* detaching cannot fail */
        lock(&h->mu);
        h->loop = NULL; /* the client may go before a late answer comes */
        unlock(&h->mu);
    }
    MHD_stop_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
    lock(&h->mu);
    h->is_daemon_gone = true;
    unlock(&h->mu);
    server_free(srv);
}
