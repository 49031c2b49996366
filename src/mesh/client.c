/* SPDX-License-Identifier: MIT */
/*
 * HTTP client on libcurl's multi interface. One thread owns the multi handle
 * and every easy handle: sk_http_client_send only copies the request into a
 * job, queues it under a mutex and wakes the thread, so no curl call ever
 * runs on two threads. Connections are kept in the multi's cache and reused.
 * With TLS the server must present a certificate from our CA, and, when the
 * request names an expected service, its URI SAN must be that identity; the
 * identity is checked just before each request is sent (CURLOPT_PREREQFUNCTION),
 * which also covers reused connections.
 *
 * Certificate rotation: until sk_http_client_reload_tls is first called,
 * curl reads the files for each new connection. A reload reads them once and
 * hands their contents to every later transfer as blobs; curl compares blobs
 * when matching pooled connections and cached TLS sessions, so nothing made
 * with the old credentials is reused by a transfer using the new ones.
 */
#include "mesh/mesh_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS     (INT64_C(3600) * 1000)
#define MAX_URL_BYTES      8192u
#define MAX_HEADER_BYTES   8192u
#define MAX_HEADERS        64u
#define MAX_CACHED_CONNS   256L
#define POLL_MS            1000
#define MAX_IDLE_EASY      64 /* easy handles kept for reuse (one per concurrent request) */
/*
 * With no transfer for this long, the easy handles kept for reuse are freed
 * (their buffers, ~17 KiB each); after the servers' idle bound
 * (SKALD_HTTP_IDLE_TIMEOUT_MS, else SK_HTTP_IDLE_TIMEOUT_MS), when our
 * servers have closed their side of every idle connection, the pooled
 * connections are closed too. After a burst of load the gateway held
 * 13.7 MiB PSS, idle, against 4.3 MiB fresh.
 */
#define IDLE_RELEASE_MS 2000

typedef struct job {
    struct job *next, *prev; /* queue (under mu) or active list (client thread) */
    sk_http_client *client;
    CURL *easy;
    struct curl_slist *hdrs;
    char *method;
    char *url;
    char **headers; /* NULL-terminated copy */
    char *body;
    size_t body_len;
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    bool is_reuse_forbidden;
    char *expect_uri; /* SK_SPIFFE_PREFIX + service, or NULL */
    bool is_too_large;
    bool is_identity_bad;
    char identity_err[300];
    sk_buf resp;
    char *content_type;
    char *location;
    char *retry_after;
    char errbuf[CURL_ERROR_SIZE];
    sk_http_done_fn done;
    void *ctx;
} job;

/* A function to run on the client thread; its caller waits for is_done. */
typedef struct loop_call {
    struct loop_call *next;
    void (*fn)(void *ctx);
    void *ctx;
    bool is_done;
} loop_call;

/* File contents handed to curl after a reload (curl copies them per transfer). */
typedef struct tls_blobs {
    char *ca;
    char *cert;
    char *key;
} tls_blobs;

struct sk_http_client {
    pthread_t thread;
    bool has_thread;
    CURLM *multi;
    CURLSH *share; /* TLS sessions and DNS, used on the client thread only */
    bool is_tls;
    char *ca_file;
    char *cert_file;
    char *key_file;
    pthread_mutex_t mu; /* protects queue_head, queue_tail, calls, is_stopping, is_loop_gone,
                           is_guest_due, pending_tls; and multi against its replacement
                           (pool_close): other threads wake the loop with it held */
    pthread_cond_t cv;  /* a loop call is done */
    job *queue_head;
    job *queue_tail;
    loop_call *calls_head, *calls_tail;
    bool is_stopping;
    bool is_loop_gone; /* the thread has left its loop: loop calls run on their caller */
    bool is_guest_due; /* the guest has work its fd does not show (sk__http_client_guest_wake) */
    sk__loop_guest guest; /* client thread only; guest.run == NULL: none */
    tls_blobs *pending_tls; /* read by a reload, not yet taken by the client thread */
    tls_blobs *tls;         /* client thread only: in use since the last reload, or NULL */
    job *active;            /* client thread only */
    /* Client thread only: easy handles of finished transfers, reset and reused (creating one
     * per request allocated and freed curl's per-transfer state and buffers each time). */
    CURL *idle_easy[MAX_IDLE_EASY];
    size_t n_idle_easy;
    int64_t idle_since_ms; /* client thread only: first turn with no transfer active, 0: not yet */
    int64_t easy_idle_ms;  /* client thread only: IDLE_RELEASE_MS (tests set their own) */
    int64_t pool_idle_ms;  /* client thread only: the servers' idle bound (same) */
    uint64_t n_pool_closes; /* client thread only */
    bool has_pooled_conns; /* client thread only: a transfer ran since the pool was emptied */
    /* Monotonic ms at which the loop last came round (it waits at most POLL_MS); 0 before it
     * started and after it left (sk_http_client_stalled_ms). */
    _Atomic int64_t loop_at_ms;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

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

bool sk__http_client_is_tls(const sk_http_client *c)
{
    return c != NULL && c->is_tls;
}

static void job_free(job *j)
{
    if (j == NULL) {
        return;
    }
    if (j->easy != NULL) {
        sk_http_client *c = j->client;
        if (c->n_idle_easy < MAX_IDLE_EASY) {
            c->idle_easy[c->n_idle_easy++] = j->easy; /* only the client thread sets up easies */
        } else {
            curl_easy_cleanup(j->easy);
        }
    }
    curl_slist_free_all(j->hdrs);
    for (size_t i = 0; j->headers != NULL && j->headers[i] != NULL; i++) {
        sk_free(j->headers[i]);
    }
    sk_free(j->headers);
    sk_free(j->method);
    sk_free(j->url);
    sk_free(j->body);
    sk_free(j->expect_uri);
    sk_buf_fini(&j->resp);
    sk_free(j->content_type);
    sk_free(j->location);
    sk_free(j->retry_after);
    sk_free(j);
}

/* ---------------------------------------------------------------- curl callbacks */

static size_t on_write(char *data, size_t size, size_t n, void *userdata)
{
    job *j = userdata;
    size_t len = size * n;

    if (sk_buf_append(&j->resp, data, len) != SK_OK) {
        j->is_too_large = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
    job *j = userdata;
    size_t len = size * n;
    char **slot = NULL;
    size_t name_len;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100 Continue): forget the previous one's headers. */
        sk_free(j->content_type);
        sk_free(j->location);
        sk_free(j->retry_after);
        j->content_type = j->location = j->retry_after = NULL;
        return len;
    }
    if (len > 13 && strncasecmp(data, "Content-Type:", 13) == 0) {
        slot = &j->content_type;
        name_len = 13;
    } else if (len > 9 && strncasecmp(data, "Location:", 9) == 0) {
        slot = &j->location;
        name_len = 9;
    } else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
        slot = &j->retry_after;
        name_len = 12;
    } else {
        return len;
    }
    const char *v = data + name_len;
    size_t vlen = len - name_len;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' ||
                        v[vlen - 1] == '\t')) {
        vlen--;
    }
    sk_free(*slot);
    *slot = sk_strndup(v, vlen); /* NULL on out of memory: the header is then reported absent */
    return len;
}

/* The leaf's URI SANs must include the expected identity. */
static int
on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    job *j = clientp;
    struct curl_tlssessioninfo *ti = NULL;
    X509 *peer;
    GENERAL_NAMES *gens;
    bool is_match = false;
    char seen[200];

    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (j->expect_uri == NULL) {
        return CURL_PREREQFUNC_OK;
    }
    j->is_identity_bad = true;
    if (curl_easy_getinfo(j->easy, CURLINFO_TLS_SSL_PTR, &ti) != CURLE_OK || ti == NULL ||
        ti->backend != CURLSSLBACKEND_OPENSSL || ti->internals == NULL) {
        snprintf(j->identity_err, sizeof(j->identity_err), "no TLS session to check the identity");
        return CURL_PREREQFUNC_ABORT;
    }
    peer = SSL_get0_peer_certificate((SSL *)ti->internals);
    if (peer == NULL) {
        snprintf(j->identity_err, sizeof(j->identity_err), "the server sent no certificate");
        return CURL_PREREQFUNC_ABORT;
    }
    snprintf(seen, sizeof(seen), "none");
    gens = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI) {
            continue;
        }
        const unsigned char *u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t ulen = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (ulen == strlen(j->expect_uri) && memcmp(u, j->expect_uri, ulen) == 0) {
            is_match = true;
            break;
        }
        snprintf(seen, sizeof(seen), "%.*s", (int)(ulen > 150 ? 150 : ulen), (const char *)u);
    }
    GENERAL_NAMES_free(gens);
    if (!is_match) {
        snprintf(j->identity_err, sizeof(j->identity_err),
                 "server identity mismatch: expected %s, certificate has %s", j->expect_uri, seen);
        return CURL_PREREQFUNC_ABORT;
    }
    j->is_identity_bad = false;
    return CURL_PREREQFUNC_OK;
}

/* ---------------------------------------------------------------- client thread */

static sk_status map_curl(CURLcode rc, const job *j)
{
    switch (rc) {
    case CURLE_OK:
        return SK_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return SK_EUNAVAILABLE;
    case CURLE_OPERATION_TIMEDOUT:
        return SK_ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        return j->is_too_large ? SK_ELIMIT : SK_EIO;
    case CURLE_ABORTED_BY_CALLBACK:
        return j->is_identity_bad ? SK_ETLS : SK_EIO;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CLIENTCERT:
        return SK_ETLS;
    default:
        return SK_EIO;
    }
}

/* Call the completion with @p st (message recorded on this thread) and free the job. */
static void job_finish(job *j, sk_status st, CURLcode rc)
{
    sk_http_response resp = { 0 };
    long code = 0;
    long request_bytes = 0;

    if (st == SK_OK) {
        if (curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) {
            code = 0;
        }
        resp.status = (int)code;
        resp.body =
            (sk_slice){ (const uint8_t *)(j->resp.data != NULL ? j->resp.data : ""), j->resp.len };
        resp.content_type = j->content_type;
        resp.location = j->location;
        resp.retry_after = j->retry_after;
        resp.is_request_sent = true;
        sk_error_clear();
    } else if (st == SK_ECANCELED) {
        resp.is_request_sent = true; /* unknown: assume it may have gone out */
        SK_FAIL(st, "%s %s: canceled (client destroyed)", j->method, j->url);
    } else if (st == SK_ELIMIT) {
        SK_FAIL(st, "%s %s: response body larger than %u bytes", j->method, j->url,
                SK_MAX_HTTP_BODY);
    } else if (j->is_identity_bad) {
        SK_FAIL(st, "%s %s: %s", j->method, j->url, j->identity_err);
    } else if (st != SK_ENOMEM) {
        SK_FAIL(st, "%s %s: %s%s%s", j->method, j->url, curl_easy_strerror(rc),
                j->errbuf[0] != '\0' ? ": " : "", j->errbuf);
    }
    if (st != SK_OK && st != SK_ECANCELED) {
        /* Bytes of the request written so far: 0 means it never left (set-up, connect, TLS
         * handshake or identity failure), so a retry cannot duplicate it. */
        resp.is_request_sent = j->easy != NULL && (curl_easy_getinfo(j->easy, CURLINFO_REQUEST_SIZE,
                                                                     &request_bytes) != CURLE_OK ||
                                                   request_bytes > 0);
    }
    j->done(st, &resp, j->ctx);
    job_free(j);
}

static bool set_ok(CURLcode rc, bool ok)
{
    return ok && rc == CURLE_OK;
}

/* Build the easy handle of @p j. Runs on the client thread. */
static void blobs_free(tls_blobs *b)
{
    if (b == NULL) {
        return;
    }
    if (b->key != NULL) {
        OPENSSL_cleanse(b->key, strlen(b->key));
    }
    sk_free(b->key);
    sk_free(b->cert);
    sk_free(b->ca);
    sk_free(b);
}

static bool set_blob(CURL *e, CURLoption opt, char *data, bool ok)
{
    struct curl_blob blob = { data, strlen(data), CURL_BLOB_COPY };
    return set_ok(curl_easy_setopt(e, opt, &blob), ok);
}

static sk_status job_setup(sk_http_client *c, job *j)
{
    bool ok = true;
    CURL *e = NULL;
    bool has_ct = false;

    if (c->n_idle_easy > 0) {
        e = c->idle_easy[--c->n_idle_easy];
        curl_easy_reset(e); /* every option back to its default; connections stay pooled */
    } else {
        e = curl_easy_init();
    }

    if (e == NULL) {
        return SK_FAIL(SK_ENOMEM, "%s %s: curl_easy_init failed", j->method, j->url);
    }
    j->easy = e;
    for (size_t i = 0; j->headers != NULL && j->headers[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(j->hdrs, j->headers[i]);
        if (n == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s %s: building headers", j->method, j->url);
        }
        j->hdrs = n;
        has_ct = has_ct || strncasecmp(j->headers[i], "Content-Type:", 13) == 0;
    }
    if (!has_ct && j->body != NULL) {
        /* Keep curl from claiming a form body. */
        struct curl_slist *n = curl_slist_append(j->hdrs, "Content-Type:");
        if (n == NULL) {
            return SK_FAIL(SK_ENOMEM, "%s %s: building headers", j->method, j->url);
        }
        j->hdrs = n;
    }
    ok = set_ok(curl_easy_setopt(e, CURLOPT_URL, j->url), ok);
    /* Straight to the chosen endpoint: never through a proxy the environment names. */
    ok = set_ok(curl_easy_setopt(e, CURLOPT_NOPROXY, "*"), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_PRIVATE, j), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)j->connect_timeout_ms), ok);
    if (j->is_reuse_forbidden) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L), ok);
    }
    ok = set_ok(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_WRITEDATA, j), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_HEADERDATA, j), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs), ok);
    ok = set_ok(curl_easy_setopt(e, CURLOPT_SHARE, c->share), ok);
    if (j->body != NULL) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body), ok);
        if (strcmp(j->method, "POST") != 0) {
            ok = set_ok(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method), ok);
        }
    } else if (strcmp(j->method, "GET") == 0) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_HTTPGET, 1L), ok);
    } else if (strcmp(j->method, "HEAD") == 0) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_NOBODY, 1L), ok);
    } else {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method), ok);
    }
    if (c->is_tls && c->tls != NULL) {
        ok = set_blob(e, CURLOPT_SSLCERT_BLOB, c->tls->cert, ok);
        ok = set_blob(e, CURLOPT_SSLKEY_BLOB, c->tls->key, ok);
        ok = set_blob(e, CURLOPT_CAINFO_BLOB, c->tls->ca, ok);
        /* Only our CA: drop curl's built-in default bundle, which would be loaded as well. */
        ok = set_ok(curl_easy_setopt(e, CURLOPT_CAINFO, (char *)NULL), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL), ok);
    } else if (c->is_tls) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL), ok); /* only our CA */
    }
    if (c->is_tls) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L), ok);
        /* Service certificates carry a URI SAN only; the identity is checked in on_prereq. */
        ok = set_ok(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3), ok);
    }
    if (j->expect_uri != NULL) {
        ok = set_ok(curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq), ok);
        ok = set_ok(curl_easy_setopt(e, CURLOPT_PREREQDATA, j), ok);
    }
    if (!ok) {
        return SK_FAIL(SK_EINTERNAL, "%s %s: configuring the transfer failed", j->method, j->url);
    }
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        return SK_FAIL(SK_ENOMEM, "%s %s: adding the transfer", j->method, j->url);
    }
    return SK_OK;
}

static void active_link(sk_http_client *c, job *j)
{
    c->idle_since_ms = 0;
    c->has_pooled_conns = true;
    j->prev = NULL;
    j->next = c->active;
    if (c->active != NULL) {
        c->active->prev = j;
    }
    c->active = j;
}

static void active_unlink(sk_http_client *c, job *j)
{
    if (j->prev != NULL) {
        j->prev->next = j->next;
    } else {
        c->active = j->next;
    }
    if (j->next != NULL) {
        j->next->prev = j->prev;
    }
    j->next = j->prev = NULL;
}

/* True on the client thread: work it queues is taken before it polls, so it needs no wake-up. */
static bool is_loop_thread(const sk_http_client *c)
{
    return pthread_equal(pthread_self(), c->thread);
}

/* Run the loop calls taken from the queue and tell their callers. */
static void calls_run(sk_http_client *c, loop_call *calls)
{
    while (calls != NULL) {
        loop_call *call = calls;
        calls = calls->next;
        call->fn(call->ctx);
        lock(&c->mu);
        call->is_done = true; /* the caller frees it once it sees this */
        pthread_cond_broadcast(&c->cv);
        unlock(&c->mu);
    }
}

/* Client thread (or destroy, after it): free the easy handles kept for reuse. */
static void idle_easy_free(sk_http_client *c)
{
    for (size_t i = 0; i < c->n_idle_easy; i++) {
        curl_easy_cleanup(c->idle_easy[i]);
    }
    c->n_idle_easy = 0;
}

/* Client thread: close every pooled connection, by swapping in an empty multi handle. */
static void pool_close(sk_http_client *c)
{
    CURLM *fresh = curl_multi_init();
    if (fresh == NULL ||
        curl_multi_setopt(fresh, CURLMOPT_MAXCONNECTS, MAX_CACHED_CONNS) != CURLM_OK) {
        if (fresh != NULL) {
            curl_multi_cleanup(fresh);
        }
        return; /* tried again on the next turn */
    }
    lock(&c->mu); /* other threads wake the loop through c->multi with mu held */
    if (c->queue_head != NULL) {
        unlock(&c->mu); /* work came in: the pool is about to be used */
        curl_multi_cleanup(fresh);
        return;
    }
    CURLM *old = c->multi;
    c->multi = fresh;
    unlock(&c->mu);
    curl_multi_cleanup(old); /* no transfer is attached: this closes the pooled connections */
    c->has_pooled_conns = false;
    c->n_pool_closes++;
}

/*
 * Client thread, between turns: once no transfer has run for easy_idle_ms,
 * free the easy handles kept for reuse; after pool_idle_ms (the servers'
 * idle bound) close the pooled connections too, once per idle spell.
 */
static void idle_release(sk_http_client *c)
{
    if (c->active != NULL) {
        return;
    }
    int64_t now = sk_time_mono_ms();
    if (c->idle_since_ms == 0) {
        c->idle_since_ms = now;
        return;
    }
    if (c->n_idle_easy > 0 && now - c->idle_since_ms >= c->easy_idle_ms) {
        idle_easy_free(c);
    }
    if (c->has_pooled_conns && now - c->idle_since_ms >= c->pool_idle_ms) {
        pool_close(c);
    }
}

/*
 * Wait for the next event: a transfer's socket, the guest's fd, a wake-up or
 * a timeout. Then run the guest if its fd is ready, it was told to run, or
 * its own timeout has come.
 */
static void loop_wait(sk_http_client *c)
{
    struct curl_waitfd wfd = { 0 };
    int64_t timeout_ms = POLL_MS;
    int64_t guest_due_ms = INT64_MAX;
    unsigned n_fds = 0;

    if (c->guest.run != NULL) {
        int64_t t = c->guest.timeout_ms(c->guest.ctx);
        if (t >= 0) {
            guest_due_ms = sk_time_mono_ms() + t;
            timeout_ms = t < timeout_ms ? t : timeout_ms;
        }
        wfd.fd = c->guest.fd;
        wfd.events = CURL_WAIT_POLLIN;
        n_fds = 1;
    }
    lock(&c->mu);
    /* Work queued from this thread (by the guest or a completion) did not wake it up; nor did
     * work whose wake-up went to the multi handle pool_close replaced. */
    bool has_work = c->queue_head != NULL || c->calls_head != NULL || c->pending_tls != NULL ||
                    c->is_stopping;
    bool is_guest_due = c->is_guest_due;
    c->is_guest_due = false;
    unlock(&c->mu);
    if (!is_guest_due) {
        /* With work waiting, poll without waiting: the guest's fd is still looked at, so a
         * steady stream of queued sends cannot starve it. libcurl sets revents of extra fds,
         * whatever the comment in curl/multi.h says. */
        SK_IGNORE(curl_multi_poll(c->multi, n_fds > 0 ? &wfd : NULL, n_fds,
                                  has_work ? 0 : (int)timeout_ms,
                                  NULL)); /* woken, ready or timed out */
    }
    if (c->guest.run != NULL &&
        (wfd.revents != 0 || is_guest_due || sk_time_mono_ms() >= guest_due_ms)) {
        c->guest.run(c->guest.ctx);
    }
}

static void *client_main(void *arg)
{
    sk_http_client *c = arg;

    sk_thread_name("sk-http-client");
    for (;;) {
        job *batch;
        bool is_stopping;
        int running = 0;
        CURLMsg *msg;
        int n_left = 0;

        atomic_store_explicit(&c->loop_at_ms, sk_time_mono_ms(), memory_order_relaxed);

        lock(&c->mu);
        batch = c->queue_head;
        c->queue_head = c->queue_tail = NULL;
        loop_call *calls = c->calls_head;
        c->calls_head = c->calls_tail = NULL;
        is_stopping = c->is_stopping;
        tls_blobs *fresh = c->pending_tls;
        c->pending_tls = NULL;
        unlock(&c->mu);
        calls_run(c, calls);
        if (fresh != NULL) {
            /* Before this batch: every transfer queued after the reload uses the new files. */
            blobs_free(c->tls);
            c->tls = fresh;
        }

        while (batch != NULL) {
            job *j = batch;
            batch = batch->next;
            j->next = NULL;
            if (is_stopping) {
                job_finish(j, SK_ECANCELED, CURLE_OK);
                continue;
            }
            sk_status st = job_setup(c, j);
            if (st != SK_OK) {
                job_finish(j, st, CURLE_OK);
                continue;
            }
            active_link(c, j);
        }
        if (is_stopping) {
            while (c->active != NULL) {
                job *j = c->active;
                active_unlink(c, j);
                SK_IGNORE(
                    curl_multi_remove_handle(c->multi, j->easy)); /* nothing to do on failure */
                job_finish(j, SK_ECANCELED, CURLE_OK);
            }
            break;
        }
        SK_IGNORE(curl_multi_perform(c->multi, &running)); /* per-transfer errors come below */
        while ((msg = curl_multi_info_read(c->multi, &n_left)) != NULL) {
            job *j = NULL;
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            CURL *e = msg->easy_handle;
            CURLcode rc = msg->data.result;
            if (curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j) != CURLE_OK || j == NULL) {
                continue; /* cannot happen: every handle carries its job */
            }
            SK_IGNORE(curl_multi_remove_handle(c->multi, e)); /* the handle is freed next */
            active_unlink(c, j);
            job_finish(j, map_curl(rc, j), rc);
        }
        idle_release(c);
        loop_wait(c);
    }
    atomic_store_explicit(&c->loop_at_ms, 0, memory_order_relaxed);
    /* Loop calls from now on run on their callers; run the ones already queued. */
    lock(&c->mu);
    c->is_loop_gone = true;
    loop_call *calls = c->calls_head;
    c->calls_head = c->calls_tail = NULL;
    unlock(&c->mu);
    calls_run(c, calls);
    return NULL;
}

void sk__http_client_on_loop(sk_http_client *c, void (*fn)(void *ctx), void *ctx)
{
    loop_call call = { NULL, fn, ctx, false };

    lock(&c->mu);
    if (c->is_loop_gone || is_loop_thread(c)) {
        unlock(&c->mu);
        fn(ctx);
        return;
    }
    if (c->calls_tail != NULL) {
        c->calls_tail->next = &call;
    } else {
        c->calls_head = &call;
    }
    c->calls_tail = &call;
    SK_IGNORE(curl_multi_wakeup(c->multi)); /* the loop also looks within POLL_MS */
    while (!call.is_done) {
        if (pthread_cond_wait(&c->cv, &c->mu) != 0) {
            abort();
        }
    }
    unlock(&c->mu);
}

void sk__http_client_guest_wake(sk_http_client *c)
{
    lock(&c->mu);
    c->is_guest_due = true;
    if (!is_loop_thread(c)) {
        SK_IGNORE(curl_multi_wakeup(c->multi)); /* the loop also runs the guest within POLL_MS */
    }
    unlock(&c->mu);
}

typedef struct host_args {
    sk_http_client *c;
    const sk__loop_guest *g;
    bool is_hosted;
} host_args;

static void host_on_loop(void *ctx)
{
    host_args *a = ctx;
    sk_http_client *c = a->c;
    if (a->g == NULL) {
        memset(&c->guest, 0, sizeof(c->guest));
        return;
    }
    if (c->guest.run != NULL) {
        abort(); /* a second guest: a programming error */
    }
    lock(&c->mu);
    bool is_running = !c->is_stopping && !c->is_loop_gone;
    unlock(&c->mu);
    if (is_running) {
        c->guest = *a->g;
        a->is_hosted = true;
    }
}

typedef struct idle_counts_args {
    sk_http_client *c;
    size_t *n_idle_easy;
    uint64_t *n_pool_closes;
} idle_counts_args;

static void idle_counts_on_loop(void *ctx)
{
    idle_counts_args *a = ctx;
    *a->n_idle_easy = a->c->n_idle_easy;
    *a->n_pool_closes = a->c->n_pool_closes;
}

typedef struct idle_args {
    sk_http_client *c;
    int64_t easy_ms, pool_ms;
} idle_args;

static void idle_set_on_loop(void *ctx)
{
    idle_args *a = ctx;
    a->c->easy_idle_ms = a->easy_ms;
    a->c->pool_idle_ms = a->pool_ms;
}

void sk__http_client_set_idle_ms(sk_http_client *c, int64_t easy_ms, int64_t pool_ms)
{
    idle_args a = { c, easy_ms, pool_ms };
    sk__http_client_on_loop(c, idle_set_on_loop, &a);
}

void sk__http_client_idle_counts(sk_http_client *c, size_t *n_idle_easy, uint64_t *n_pool_closes)
{
    idle_counts_args a = { c, n_idle_easy, n_pool_closes };
    sk__http_client_on_loop(c, idle_counts_on_loop, &a);
}

sk_status sk__http_client_host(sk_http_client *c, const sk__loop_guest *g)
{
    host_args a = { c, g, false };
    sk__http_client_on_loop(c, host_on_loop, &a);
    if (g != NULL && !a.is_hosted) {
        return SK_FAIL(SK_ESTATE, "the HTTP client is being destroyed");
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- public API */

sk_status sk_http_client_create(sk_http_client **out, const sk_tls_files *tls)
{
    sk_status st = SK_OK;
    sk_http_client *c = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_client_create: out must not be NULL");
    }
    *out = NULL;
    if (tls != NULL && (tls->ca_file == NULL || tls->cert_file == NULL || tls->key_file == NULL)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_http_client_create: tls->ca_file, cert_file and key_file must be set");
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        return SK_FAIL(SK_EINTERNAL, "sk_http_client_create: curl_global_init: %s",
                       curl_easy_strerror(curl_init_rc));
    }
    c = sk_calloc(1, sizeof(*c));
    if (c == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_http_client_create: allocating the client");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0 || pthread_cond_init(&c->cv, NULL) != 0) {
        abort();
    }
    c->easy_idle_ms = IDLE_RELEASE_MS;
    /* A malformed value is the servers' error to report (sk_http_server_start): the default. */
    SK_IGNORE(sk__http_env_timeout_ms("SKALD_HTTP_IDLE_TIMEOUT_MS", SK_HTTP_IDLE_TIMEOUT_MS,
                                      &c->pool_idle_ms));
    if (tls != NULL) {
        c->is_tls = true;
        c->ca_file = sk_strdup(tls->ca_file);
        c->cert_file = sk_strdup(tls->cert_file);
        c->key_file = sk_strdup(tls->key_file);
        if (c->ca_file == NULL || c->cert_file == NULL || c->key_file == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_http_client_create: copying the TLS paths");
            goto out;
        }
    }
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (c->multi == NULL || c->share == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_client_create: creating the curl handles");
        goto out;
    }
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, MAX_CACHED_CONNS) != CURLM_OK) {
        st = SK_FAIL(SK_EINTERNAL, "sk_http_client_create: configuring curl");
        goto out;
    }
    atomic_init(&c->loop_at_ms, 0);
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_client_create: starting the client thread");
        goto out;
    }
    c->has_thread = true;
    *out = c;
    c = NULL;
out:
    sk_http_client_destroy(c);
    return st;
}

void sk_http_client_destroy(sk_http_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->has_thread) {
        lock(&c->mu);
        c->is_stopping = true;
        SK_IGNORE(curl_multi_wakeup(c->multi)); /* the thread also wakes up within POLL_MS */
        unlock(&c->mu);
        if (pthread_join(c->thread, NULL) != 0) {
            abort();
        }
    }
    idle_easy_free(c);
    if (c->multi != NULL) {
        curl_multi_cleanup(c->multi);
    }
    if (c->share != NULL) {
        curl_share_cleanup(c->share);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    blobs_free(c->pending_tls);
    blobs_free(c->tls);
    sk_free(c->ca_file);
    sk_free(c->cert_file);
    sk_free(c->key_file);
    sk_free(c);
}

int64_t sk_http_client_stalled_ms(const sk_http_client *c)
{
    if (c == NULL) {
        return 0;
    }
    return sk_time_mono_since_ms(atomic_load_explicit(&c->loop_at_ms, memory_order_relaxed));
}

static bool is_token(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= max || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '-' ||
                          (ch >= '0' && ch <= '9') || ch == '_')) {
            return false;
        }
    }
    return n > 0;
}

static bool is_header_line(const char *s)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || strlen(s) > MAX_HEADER_BYTES || strpbrk(s, "\r\n") != NULL) {
        return false;
    }
    for (const char *p = s; p < colon; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool is_service_name(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= SK_MESH_MAX_SERVICE ||
            !((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            return false;
        }
    }
    return n > 0;
}

sk_status
sk_http_client_send(sk_http_client *c, const sk_http_request *req, sk_http_done_fn done, void *ctx)
{
    sk_status st = SK_OK;
    job *j = NULL;
    size_t n_headers = 0;
    bool is_https;

    if (c == NULL || req == NULL || done == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_client_send: %s must not be NULL",
                       c == NULL     ? "c"
                       : req == NULL ? "req"
                                     : "done");
    }
    if (req->method == NULL || !is_token(req->method, 16)) {
        return SK_FAIL(
            SK_EINVAL,
            "sk_http_client_send: req->method must be an HTTP token of 1..16 characters");
    }
    if (req->url == NULL || strlen(req->url) > MAX_URL_BYTES ||
        (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0) ||
        strpbrk(req->url, " \t\r\n") != NULL) {
        return SK_FAIL(SK_EINVAL,
                       "sk_http_client_send: req->url must be an http:// or https:// URL of at "
                       "most %u bytes without spaces",
                       MAX_URL_BYTES);
    }
    is_https = strncmp(req->url, "https://", 8) == 0;
    for (; req->headers != NULL && req->headers[n_headers] != NULL; n_headers++) {
        if (n_headers >= MAX_HEADERS) {
            return SK_FAIL(SK_EINVAL, "sk_http_client_send: at most %u headers", MAX_HEADERS);
        }
        if (!is_header_line(req->headers[n_headers])) {
            return SK_FAIL(SK_EINVAL,
                           "sk_http_client_send: req->headers[%zu] must be \"Name: value\" "
                           "without CR or LF",
                           n_headers);
        }
    }
    if (req->body == NULL && req->body_len > 0) {
        return SK_FAIL(SK_EINVAL, "sk_http_client_send: req->body is NULL but body_len is %zu",
                       req->body_len);
    }
    if (req->body_len > SK_MAX_HTTP_BODY) {
        return SK_FAIL(SK_ELIMIT, "sk_http_client_send: body of %zu bytes exceeds %u",
                       req->body_len, SK_MAX_HTTP_BODY);
    }
    if (req->timeout_ms < 0 || req->timeout_ms > MAX_TIMEOUT_MS) {
        return SK_FAIL(SK_EINVAL, "sk_http_client_send: req->timeout_ms must be 0..%" PRId64,
                       MAX_TIMEOUT_MS);
    }
    if (req->connect_timeout_ms < 0 || req->connect_timeout_ms > MAX_TIMEOUT_MS) {
        return SK_FAIL(SK_EINVAL,
                       "sk_http_client_send: req->connect_timeout_ms must be 0..%" PRId64,
                       MAX_TIMEOUT_MS);
    }
    if (req->expect_service != NULL) {
        if (!is_service_name(req->expect_service)) {
            return SK_FAIL(SK_EINVAL,
                           "sk_http_client_send: req->expect_service must be 1..%d of [a-z0-9-]",
                           SK_MESH_MAX_SERVICE);
        }
        if (!is_https || !c->is_tls) {
            return SK_FAIL(SK_EINVAL,
                           "sk_http_client_send: req->expect_service needs an https URL and a "
                           "client created with TLS files");
        }
    }

    j = sk_calloc(1, sizeof(*j));
    if (j == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_http_client_send: allocating the job");
    }
    sk_buf_init(&j->resp, SK_MAX_HTTP_BODY);
    j->client = c;
    j->done = done;
    j->ctx = ctx;
    j->timeout_ms = req->timeout_ms != 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
    j->connect_timeout_ms = req->connect_timeout_ms != 0 && req->connect_timeout_ms < j->timeout_ms
                                ? req->connect_timeout_ms
                                : j->timeout_ms;
    j->is_reuse_forbidden = req->is_reuse_forbidden;
    j->method = sk_strdup(req->method);
    j->url = sk_strdup(req->url);
    j->headers = sk_calloc(n_headers + 1, sizeof(char *));
    if (j->method == NULL || j->url == NULL || j->headers == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_client_send: copying the request");
        goto out;
    }
    for (size_t i = 0; i < n_headers; i++) {
        j->headers[i] = sk_strdup(req->headers[i]);
        if (j->headers[i] == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_http_client_send: copying the headers");
            goto out;
        }
    }
    bool has_body = req->body != NULL || strcmp(req->method, "POST") == 0 ||
                    strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
    if (has_body) {
        j->body = sk_malloc(req->body_len + 1);
        if (j->body == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_http_client_send: copying the body");
            goto out;
        }
        if (req->body_len > 0) {
            memcpy(j->body, req->body, req->body_len);
        }
        j->body[req->body_len] = '\0';
        j->body_len = req->body_len;
    }
    if (req->expect_service != NULL) {
        j->expect_uri = sk_asprintf("%s%s", SK_SPIFFE_PREFIX, req->expect_service);
        if (j->expect_uri == NULL) {
            st = SK_FAIL(SK_ENOMEM, "sk_http_client_send: copying expect_service");
            goto out;
        }
    }
    lock(&c->mu);
    if (c->is_stopping) {
        unlock(&c->mu);
        st = SK_FAIL(SK_ESTATE, "sk_http_client_send: the client is being destroyed");
        goto out;
    }
    if (c->queue_tail != NULL) {
        c->queue_tail->next = j;
    } else {
        c->queue_head = j;
    }
    c->queue_tail = j;
    if (!is_loop_thread(c)) {
        SK_IGNORE(curl_multi_wakeup(c->multi)); /* at worst the job starts within POLL_MS */
    }
    unlock(&c->mu);
    j = NULL;
out:
    job_free(j);
    return st;
}

sk_status sk_http_client_reload_tls(sk_http_client *c)
{
    sk_status st = SK_OK;
    tls_blobs *b = NULL;

    if (c == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_http_client_reload_tls: c must not be NULL");
    }
    if (!c->is_tls) {
        return SK_FAIL(SK_ESTATE, "sk_http_client_reload_tls: the client was created without TLS");
    }
    b = sk_calloc(1, sizeof(*b));
    if (b == NULL) {
        st = SK_FAIL(SK_ENOMEM, "sk_http_client_reload_tls: allocating");
        goto out;
    }
    st = sk__mesh_pem_read("cert_file", c->cert_file, &b->cert);
    if (st == SK_OK) {
        st = sk__mesh_pem_read("key_file", c->key_file, &b->key);
    }
    if (st == SK_OK) {
        st = sk__mesh_pem_read("ca_file", c->ca_file, &b->ca);
    }
    if (st != SK_OK) {
        st = SK_WRAP(st, "sk_http_client_reload_tls (keeping the current credentials)");
        goto out;
    }
    lock(&c->mu);
    tls_blobs *old = c->pending_tls; /* a reload the thread has not taken yet: superseded */
    c->pending_tls = b;
    SK_IGNORE(curl_multi_wakeup(c->multi)); /* taken before the next batch in any case */
    unlock(&c->mu);
    b = old;
out:
    blobs_free(b);
    return st;
}
