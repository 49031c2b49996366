/* SPDX-License-Identifier: MIT */
/*
 * mesh: the proxyless service mesh.
 *  - pki: a local CA and per-service certificates whose identity is the URI
 *    SAN spiffe://skald.local/ns/default/sa/<service>;
 *  - HTTP server (libmicrohttpd): TLS 1.3 with a client certificate required
 *    on internal listeners, requests answered later from any thread; bounded
 *    headers, body and time per request (slow clients are disconnected);
 *    request targets with encoded NUL or '/', dot segments or invalid UTF-8
 *    are answered 400 before any handler sees them;
 *  - HTTP client (libcurl multi on one thread): mTLS, connection reuse,
 *    asynchronous completion, the server's identity checked;
 *  - upstream: one named service, its endpoints (fed by discovery) and its
 *    traffic policy with Istio semantics: load balancing, outlier detection,
 *    connection-pool limits, retries, timeouts and fault injection (see
 *    docs/mesh.md for the table of fields and defaults).
 */
#ifndef SK_MESH_H
#define SK_MESH_H

#include <skald/core.h>
#include <skald/obs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- identity */

#define SK_SPIFFE_PREFIX "spiffe://skald.local/ns/default/sa/"
/** Longest service name usable as an identity. */
#define SK_MESH_MAX_SERVICE 32

/** Certificate, key and trust anchor files of one identity (all PEM). */
typedef struct sk_tls_files {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
} sk_tls_files;

/**
 * Create DIR/ca.pem and DIR/ca.key (EC P-256, 10 years) unless both exist.
 * Keys are written with mode 0600.
 */
SK_API SK_NODISCARD sk_status sk_pki_ca_ensure(const char *dir);
/**
 * Issue DIR/<name>.pem and DIR/<name>.key signed by the CA in DIR, unless
 * both exist and the certificate is still valid for a day.
 * @param uri_san the identity (e.g. SK_SPIFFE_PREFIX "order"), or NULL.
 * @param ip_san  e.g. "127.0.0.1" for a server reached by address (nats-server), or NULL.
 */
SK_API SK_NODISCARD sk_status sk_pki_issue(const char *dir, const char *name, const char *uri_san, const char *ip_san);
/** Paths of an identity issued by sk_pki_issue; strings owned by @p out, free with sk_tls_files_fini. */
SK_API SK_NODISCARD sk_status sk_tls_files_init(sk_tls_files *out, const char *dir, const char *name);
SK_API void sk_tls_files_fini(sk_tls_files *f);
/**
 * Make the CA in DIR (DIR/ca.pem) this process's default trust anchor:
 * OpenSSL's default verify paths, which nats.c loads into every TLS context
 * on top of the CA it is given, then name the mesh CA instead of the system
 * bundle. The broker connection then trusts the mesh CA only, and a process
 * no longer parses the ~140 system certificates (60 ms of CPU each start).
 * Sets SSL_CERT_FILE (to DIR/ca.pem) and SSL_CERT_DIR (to /dev/null: no
 * directory of anchors), replacing values set before, so
 * code in the process that wants public CAs must load them explicitly.
 * Call before the process starts threads (it changes the environment).
 */
SK_API SK_NODISCARD sk_status sk_tls_default_trust_set(const char *dir);

/* ---------------------------------------------------------------- server */

typedef struct sk_http_server sk_http_server;
/** One request. Valid until it has been answered; answer exactly once, from any thread. */
typedef struct sk_http_req sk_http_req;
/** HTTP client (below): one thread runs every transfer. Thread-safe. */
typedef struct sk_http_client sk_http_client;

/**
 * Called on a server thread once the whole body is in (bodies over the
 * limit are answered 413 before this). Must not block: answer now, or keep
 * @p req and answer later from another thread.
 */
typedef void (*sk_http_handler_fn)(sk_http_req *req, void *ctx);

/** Longest request line plus headers a server accepts (bytes); over it: 431 problem+json. */
#define SK_HTTP_MAX_HEADER_BYTES (16u * 1024u)
/** Most request header fields a server accepts; over it: 431 problem+json. */
#define SK_HTTP_MAX_HEADERS 100u
/**
 * Default bound on receiving one request (request line, headers and body,
 * from the request line on); a slower client is disconnected.
 * Env SKALD_HTTP_REQUEST_TIMEOUT_MS overrides the default.
 */
#define SK_HTTP_REQUEST_TIMEOUT_MS 10000
/**
 * Default bound on a connection without a request in progress (from accept,
 * or from the end of the previous request, to the next request line; the TLS
 * handshake included). Env SKALD_HTTP_IDLE_TIMEOUT_MS overrides the default.
 */
#define SK_HTTP_IDLE_TIMEOUT_MS 30000

typedef struct sk_http_server_config {
    const char *bind_addr;    /* "127.0.0.1" */
    int port;                 /* 0 = any free port (read back with sk_http_server_port) */
    const sk_tls_files *tls;  /* NULL = plain HTTP (public gateway only) */
    bool require_client_cert; /* with tls: refuse clients without a CA-signed certificate */
    unsigned n_threads;       /* 0 = 2; ignored with loop */
    /* NULL: the server has threads of its own. Else it is served by this client's thread
     * (which must outlive the server): a proxy's upstream calls then never change thread,
     * and a handler that blocks stalls every transfer of the client as well. */
    sk_http_client *loop;
    size_t max_body_bytes;    /* 0 = SK_MAX_HTTP_BODY */
    sk_http_handler_fn handler;
    void *ctx;
    sk_metrics *metrics;      /* may be NULL */
    int64_t request_timeout_ms; /* 0 = SK_HTTP_REQUEST_TIMEOUT_MS (or the env override); 100..3600000 */
    int64_t idle_timeout_ms;    /* 0 = SK_HTTP_IDLE_TIMEOUT_MS (or the env override); 100..3600000 */
} sk_http_server_config;

/**
 * Start a server. What hostile clients get (docs/reliability.md, "Hostile input"):
 * headers over SK_HTTP_MAX_HEADER_BYTES or SK_HTTP_MAX_HEADERS: 431; a body
 * or Content-Length over max_body_bytes: 413; a bad request target: 400 (all
 * problem+json); a request not received within request_timeout_ms, or no
 * request within idle_timeout_ms: the connection is closed.
 * @return SK_OK; SK_EINVAL (bad cfg field or timeout environment variable, named);
 *         SK_EIO (cannot listen); SK_ETLS/SK_EPROTO (TLS files); SK_ENOMEM.
 */
SK_API SK_NODISCARD sk_status sk_http_server_start(sk_http_server **out, const sk_http_server_config *cfg);
SK_API int sk_http_server_port(const sk_http_server *srv);
/**
 * How long the longest of the server's current libmicrohttpd request
 * callbacks has run: reading a request, the handler (which must not block:
 * it answers or hands the work over) and queueing the answer. Far longer
 * than any request takes means a thread of the server is stuck (a
 * deadlocked handler): the services' watchdog stops vouching for the
 * process then. Threads beyond the first 16 of a server are not counted.
 * @param srv the server, or NULL.
 * @return milliseconds; 0 while no callback runs, and for NULL. Thread-safe.
 */
SK_API int64_t sk_http_server_busy_ms(const sk_http_server *srv);
/**
 * Refuse new connections from now on (the first step of a drain): clients
 * connecting get a TCP reset, which callers treat as a connect failure and
 * retry elsewhere; connections already accepted are served until
 * sk_http_server_stop. Call from the thread that stops the server, not
 * concurrently with sk_http_server_stop. NULL-safe; idempotent.
 */
SK_API void sk_http_server_stop_listening(sk_http_server *srv);
/** Stop accepting, answer 503 to what is still unanswered, stop threads. NULL-safe. */
SK_API void sk_http_server_stop(sk_http_server *srv);
/**
 * Inject faults into incoming requests (not /healthz, /readyz, /metrics):
 * @p fault is an Istio HTTPFaultInjection object {delay: {percentage: {value},
 * fixedDelay}, abort: {percentage: {value}, httpStatus}}, copied; NULL clears.
 * Delayed requests wait on a timer thread, never on a server thread; on stop
 * they are answered 503.
 * @return SK_OK, SK_EINVAL (NULL srv), SK_EPROTO (bad fault, naming the field),
 *         SK_ENOMEM. Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_http_server_set_fault(sk_http_server *srv, const json_t *fault);

/**
 * Re-read the key, certificate and (when client certificates are required)
 * CA files given to sk_http_server_start, for certificate rotation without a
 * restart. TLS handshakes that start afterwards use the new credentials and
 * verify client certificates against the new CA; established connections
 * keep their session. The listener is never dropped.
 * @return SK_OK; SK_EINVAL (NULL srv); SK_ESTATE (plain HTTP server);
 *         SK_EIO (a file cannot be read); SK_EPROTO (not PEM); SK_ELIMIT (over 64 KiB);
 *         SK_ETLS (GnuTLS refused a file, or the key does not match the
 *         certificate); SK_ENOMEM. On any error the current credentials stay.
 * Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_http_server_reload_tls(sk_http_server *srv);

/** "GET", "POST", ... (borrowed for the request's life, as are all getters). */
SK_API const char *sk_http_req_method(const sk_http_req *req);
/** Path without the query string, percent-decoded. */
SK_API const char *sk_http_req_path(const sk_http_req *req);
/** Query argument, or NULL. */
SK_API const char *sk_http_req_query(const sk_http_req *req, const char *key);
/** Called for each query argument, in order, percent-decoded. */
typedef void (*sk_http_query_fn)(const char *key, const char *value, void *ctx);
/** Visit every query argument of the request, in order (a value may be NULL for "?flag"). Any thread. */
SK_API void sk_http_req_query_each(const sk_http_req *req, sk_http_query_fn fn, void *ctx);
/** Header value (case-insensitive name), or NULL. */
SK_API const char *sk_http_req_header(const sk_http_req *req, const char *name);
SK_API sk_slice sk_http_req_body(const sk_http_req *req);
/** The caller's service name from its certificate's SPIFFE URI SAN, or NULL (plain or no cert). */
SK_API const char *sk_http_req_peer_service(const sk_http_req *req);
/**
 * The request's id: the valid X-Request-Id it came with, else one made here
 * (a UUIDv7). Answers carry it in X-Request-Id and in problem bodies; pass it
 * on to upstream calls so every hop logs and answers the same id. "" for NULL.
 */
SK_API const char *sk_http_req_id(const sk_http_req *req);
/** A per-request slot for the handler's own state. */
SK_API void sk_http_req_set_user(sk_http_req *req, void *user);
SK_API void *sk_http_req_user(const sk_http_req *req);

/**
 * Answer. @p headers is NULL or a NULL-terminated list of "Name: value"
 * strings. Body copied. Safe from any thread; a second answer is ignored.
 */
SK_API void sk_http_req_respond(sk_http_req *req,
                                int status,
                                const char *content_type,
                                const char *body,
                                size_t body_len,
                                const char *const *headers);
/** Answer application/problem+json {type,title,status,detail,request_id}. */
SK_API void sk_http_req_respond_problem(sk_http_req *req, int status, const char *title, const char *detail_fmt, ...)
    SK_PRINTF(4, 5);
/** Answer a JSON value (not taken). */
SK_API void sk_http_req_respond_json(sk_http_req *req, int status, const json_t *body, const char *const *headers);
/** HTTP status for a Skald status (EINVAL/EPROTO 400, ENOTFOUND 404, EEXIST/ECONFLICT 409, ELIMIT 413, ETIMEDOUT 504, EUNAVAILABLE 503, EDENIED 403, else 500). */
SK_API int sk_http_status_for(sk_status st);

/* ---------------------------------------------------------------- client */

typedef struct sk_http_request {
    const char *method;
    const char *url;                 /* "https://127.0.0.1:4711/orders" */
    const char *const *headers;      /* NULL-terminated "Name: value" list, or NULL */
    const char *body;                /* copied */
    size_t body_len;
    int64_t timeout_ms;              /* 0 = 10000 */
    const char *expect_service;      /* required SPIFFE identity of the server, or NULL */
    int64_t connect_timeout_ms;      /* TCP + TLS handshake bound; 0 = timeout_ms */
    bool is_reuse_forbidden;         /* close the connection after this request */
} sk_http_request;

typedef struct sk_http_response {
    int status;                      /* 0 when no response */
    sk_slice body;
    const char *content_type;        /* or NULL */
    const char *location;            /* or NULL */
    const char *retry_after;         /* or NULL */
    /* False when the request never left (connect or TLS handshake failure): a
     * retry cannot duplicate it. True once any byte of it was sent. */
    bool is_request_sent;
} sk_http_response;

/**
 * Completion. @p st is SK_OK when a response arrived (any status),
 * SK_ETIMEDOUT, SK_EUNAVAILABLE (connect failure), SK_ETLS, SK_EIO.
 * Runs on the client thread; the response is borrowed for the call.
 */
typedef void (*sk_http_done_fn)(sk_status st, const sk_http_response *resp, void *ctx);

/** @param tls client identity and trust anchor; NULL for plain HTTP. */
SK_API SK_NODISCARD sk_status sk_http_client_create(sk_http_client **out, const sk_tls_files *tls);
/** Fail what is in flight with SK_ECANCELED, stop the thread. NULL-safe. */
SK_API void sk_http_client_destroy(sk_http_client *c);
/**
 * How long since the client's loop last came round. It comes round at least
 * once a second when idle, and after every batch of work; far longer means it
 * is stuck (the gateway, whose one thread also serves its HTTP, would stand
 * still): the services' watchdog stops vouching for the process then.
 * @param c the client, or NULL.
 * @return milliseconds; 0 for NULL and while its thread is not running.
 * Thread-safe.
 */
SK_API int64_t sk_http_client_stalled_ms(const sk_http_client *c);
/** Start a request; @p done is called exactly once when this returns SK_OK. */
SK_API SK_NODISCARD sk_status sk_http_client_send(sk_http_client *c, const sk_http_request *req, sk_http_done_fn done, void *ctx);
/**
 * Re-read the client certificate, key and CA files given to
 * sk_http_client_create (certificate rotation). Transfers queued afterwards
 * use the new ones: they never reuse a pooled connection or a cached TLS
 * session made with the old ones, so their handshakes present the new
 * certificate and verify the server against the new CA. Transfers in flight
 * finish on their connections.
 * @return SK_OK; SK_EINVAL (NULL c); SK_ESTATE (plain HTTP client);
 *         SK_EIO (a file cannot be read); SK_EPROTO (not PEM); SK_ENOMEM.
 *         On any error the current files' contents stay in use.
 * Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_http_client_reload_tls(sk_http_client *c);

/* ---------------------------------------------------------------- upstream */

/** A named upstream service with its endpoints and traffic policy. Thread-safe. */
typedef struct sk_upstream sk_upstream;

/**
 * @param policy the upstream's policy object from the system file (Istio
 *        field names), or NULL for defaults; copied.
 */
SK_API SK_NODISCARD sk_status sk_upstream_create(sk_upstream **out,
                                                 sk_http_client *client,
                                                 const char *service,
                                                 const json_t *policy,
                                                 sk_metrics *metrics);
SK_API void sk_upstream_destroy(sk_upstream *u);
/** Replace the endpoint set ("127.0.0.1:4711" each); copied. */
SK_API SK_NODISCARD sk_status sk_upstream_set_endpoints(sk_upstream *u, const char *const *addrs, size_t n);
SK_API size_t sk_upstream_endpoint_count(sk_upstream *u);
/**
 * The most calls the upstream runs at once (its policy's
 * connectionPool.tcp.maxConnections; 2^32-1 when the policy sets none).
 * Calls beyond it wait in the pool's queue, where the call's timeout runs,
 * and overflow with a local 503 once http1MaxPendingRequests are waiting:
 * a caller that can wait keeps its backlog to itself by sending no more
 * than this at a time. 0 for NULL.
 */
SK_API size_t sk_upstream_max_active(const sk_upstream *u);

/**
 * Send to one endpoint chosen by the load balancer. @p req->url is the path
 * and query ("/orders/123"); the scheme and address come from the endpoint.
 * With no endpoint the request fails with SK_EUNAVAILABLE.
 * @return SK_OK: @p done runs exactly once, later on the client's or the
 *         upstream's timer thread, or before this returns when the call
 *         could not be started at all (out of memory, a client being
 *         destroyed). Any other status: @p done never runs.
 */
SK_API SK_NODISCARD sk_status sk_upstream_send(sk_upstream *u, const sk_http_request *req, sk_http_done_fn done, void *ctx);

/**
 * Describe the endpoints for `skald status`: a new JSON array (owned, free
 * with json_decref) of {address, state: "healthy"|"ejected", ejected_until_ms
 * (wall clock, 0 when healthy), active_requests, consecutive_5xx}.
 * @return SK_OK, SK_EINVAL (NULL argument), SK_ENOMEM. Thread-safe.
 */
SK_API SK_NODISCARD sk_status sk_upstream_endpoints_describe(sk_upstream *u, json_t **out);

/**
 * JetStream KV bucket of run-time inbound fault injection: key = service
 * name, value = an Istio HTTPFaultInjection object ({"abort":...,"delay":...}).
 * `skald fault` writes it; every instance of the service applies it.
 */
#define SK_FAULT_BUCKET "skald_faults"

#ifdef __cplusplus
}
#endif
#endif /* SK_MESH_H */
