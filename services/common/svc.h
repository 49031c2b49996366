/* SPDX-License-Identifier: MIT */
/*
 * The service runtime shared by every Skald service process: command-line
 * arguments, the platform providers registered in the DI container (system
 * file, metrics, health, store, bus, relay, discovery, HTTP client, buses,
 * router, internal HTTPS server), and the run loop that waits for SIGTERM
 * and tears everything down in reverse order.
 */
#ifndef SVC_H
#define SVC_H

#include <pthread.h>
#include <stdatomic.h>

#include <skald/skald.h>

/** Bytes that hold any id the services accept (1..100 characters of up to 4 UTF-8 bytes) and a NUL. */
#define SVC_ID_MAX 404

/** Arguments every service takes from `skald up`. */
typedef struct svc_args {
    const char *service;     /* --service NAME */
    const char *instance;    /* --instance NAME-N (default NAME-1) */
    const char *config_path; /* --config FILE (default skald.yaml) */
    const char *data_dir;    /* --data DIR (default ./var) */
    int port;                /* --port N: listener port (0 = any; the gateway's public port) */
} svc_args;

/**
 * Parse argv. On a usage error prints "skald-NAME: ..." and returns
 * SK_EINVAL (exit 2).
 */
sk_status svc_args_parse(svc_args *out, int argc, char **argv, const char *service);

/* ---------------------------------------------------------------- router */

typedef struct svc_router svc_router;
/** Route parameters ("{id}" segments), percent-decoded. */
typedef struct svc_params {
    size_t n;
    char *names[8];
    char *values[8];
} svc_params;

typedef void (*svc_route_fn)(sk_http_req *req, const svc_params *params, void *ctx);

sk_status svc_router_create(svc_router **out);
void svc_router_destroy(svc_router *r);
/** Add a route; @p pattern segments "{name}" capture one segment. */
sk_status svc_router_add(svc_router *r, const char *method, const char *pattern, svc_route_fn fn, void *ctx);
/**
 * Find the route for @p method and @p path.
 * @return SK_OK (fn/ctx/params set; free params with svc_params_fini),
 *         SK_ENOTFOUND (no pattern matches: 404),
 *         SK_ESTATE (a pattern matches with another method: 405; @p allow gets "GET, POST").
 */
sk_status svc_router_match(svc_router *r,
                           const char *method,
                           const char *path,
                           svc_route_fn *fn,
                           void **ctx,
                           svc_params *params,
                           char *allow,
                           size_t allow_len);
void svc_params_fini(svc_params *p);
const char *svc_params_get(const svc_params *p, const char *name);

/* ---------------------------------------------------------------- app */

/** The migrations of a service: its own plus those of the modules it uses. */
typedef struct svc_schema {
    const sk_migration *own;
    size_t n_own;
    bool uses_saga;
} svc_schema;

/** Most read models one service process offers for replay. */
#define SVC_READMODELS_MAX 8
/** The only identity allowed on the /admin/ routes (the `skald` CLI). */
#define SVC_ADMIN_IDENTITY "skald-cli"
/** Default bound on the HTTP drain at SIGTERM (env SKALD_DRAIN_TIMEOUT_MS overrides, 0..60000). */
#define SVC_DRAIN_TIMEOUT_MS 5000

/**
 * A running service process. Owner-thread-only (main thread), except the
 * fields marked otherwise: start-up runs on a thread of its own (svc_app_run)
 * while the HTTP server already answers /healthz and /readyz.
 */
typedef struct svc_app {
    svc_args args;
    sk_di *di;
    sk_system *sys;
    const sk_sys_service *self;
    char source[96];  /* ce-source: "/skald/<service>" */
    char pki_dir[512];
    sk_tls_files tls;
    /* Set during run; borrowed from the container. */
    sk_http_server *server;
    svc_router *router;   /* resolved before the server starts: handlers never touch the container */
    sk_health *health;
    sk_metrics *metrics;
    struct svc_upstreams *upstreams; /* resolved before the server starts, for GET /mesh/upstreams */
    svc_schema schema;
    sk_kv *fault_kv; /* run-time fault injection (svc_fault.c) */
    sk_kv_watch *fault_watch;
    struct svc_edge_route *edges[32];
    size_t n_edges;
    /* Start-up and shutdown (svc_app.c). */
    pthread_t startup_thread;
    bool has_startup_thread;
    pthread_mutex_t state_mu; /* protects startup_step, db_reason, readmodels, n_readmodels */
    char startup_step[192];   /* what start-up waits for ("" once wired) */
    char db_reason[256];      /* why the database cannot be opened ("" when it can) */
    struct {
        char name[64];
        sk_readmodel *rm;
    } readmodels[SVC_READMODELS_MAX];
    size_t n_readmodels;
    atomic_bool is_wired;          /* start-up done: routes, consumers, discovery; the router is frozen */
    atomic_bool is_stopping;       /* SIGTERM/SIGINT seen */
    atomic_bool is_draining;       /* new requests are refused, in-flight ones finish */
    atomic_bool is_startup_failed; /* exit 1 */
    atomic_long n_inflight;        /* requests in service code, answered or not yet */
    sk_registry *registry;         /* set by start-up; borrowed from the container */
    sk_bus *bus;                   /* set by start-up; borrowed from the container */
} svc_app;

/**
 * Initialise: parse args, sk_init, load the system file, find this
 * service, create the container and register the platform providers:
 *   "metrics" sk_metrics*   "health" sk_health*   "store" sk_store*
 *   "bus" sk_bus*           "relay" sk_relay*     "registry" sk_registry*
 *   "http_client" sk_http_client*  "commands" / "queries" sk_cqrs_bus*
 *   "router" svc_router*    "upstreams" svc_upstreams*
 * The service registers its own provider named after itself before
 * svc_app_run. @return exit code: 0 ok, 1 runtime failure, 2 usage/config.
 */
int svc_app_init(svc_app *app, int argc, char **argv, const char *service);

/**
 * Resolve the service's own provider (which registers its routes and
 * handlers), start the internal HTTPS listener (or the public plain one for
 * the gateway), register in discovery, report ready, wait for
 * SIGTERM/SIGINT, then stop accepting and return. @return exit code.
 */
int svc_app_run(svc_app *app);
/** Tear down everything the container created, in reverse order. */
void svc_app_fini(svc_app *app);

/** What a service with a database uses of the platform (borrowed from the container). */
typedef struct svc_platform {
    sk_store *store;
    sk_bus *bus;
    sk_metrics *metrics;
} svc_platform;

/**
 * Set the service's schema, then resolve the store, the bus and the metrics,
 * and start the outbox relay. Call from the service's provider.
 */
sk_status svc_platform_resolve(svc_app *app, const svc_schema *schema, svc_platform *out);

/* ---------------------------------------------------------------- read models and drain */

/**
 * Offer read model @p rm for replay under @p name ("orderview") on the admin
 * routes GET /admin/projections[/NAME] and POST /admin/projections/NAME/replay
 * (identity SVC_ADMIN_IDENTITY only). Call from the service's provider.
 * @return SK_OK, SK_EINVAL, SK_EEXIST, SK_ELIMIT (SVC_READMODELS_MAX).
 */
sk_status svc_readmodel_add(svc_app *app, const char *name, sk_readmodel *rm);
/** Withdraw @p rm (before stopping it). NULL-safe. */
void svc_readmodel_remove(svc_app *app, sk_readmodel *rm);

/**
 * A request is in service code (enter) / has been answered (leave). At
 * SIGTERM the process waits, up to the drain timeout, until none is left
 * before the HTTP server stops. The router and the edge count their own;
 * a route that answers later from another thread enters before it returns
 * and leaves once it has answered. Thread-safe.
 */
void svc_inflight_enter(svc_app *app);
void svc_inflight_leave(svc_app *app);

/** Resolve a platform object by name; logs and returns the error on failure. */
sk_status svc_get(svc_app *app, const char *name, void **out);


/* ---------------------------------------------------------------- upstreams */

/** Operational route of every service: the endpoint states of its upstreams (svc_upstreams_describe). */
#define SVC_MESH_UPSTREAMS_PATH "/mesh/upstreams"

/** The mesh upstreams of this service, fed by discovery. */
typedef struct svc_upstreams svc_upstreams;
/** Borrowed upstream for @p service, or NULL when not declared in the system file. */
sk_upstream *svc_upstreams_get(svc_upstreams *u, const char *service);
/**
 * The endpoint states of every upstream, for GET /mesh/upstreams: a new JSON
 * object (owned, free with json_decref) mapping each upstream's service name
 * to the array sk_upstream_endpoints_describe gives ({} when the service has
 * no upstreams). Thread-safe: any HTTP server thread may call it while
 * discovery updates the endpoints.
 * @return SK_OK, SK_EINVAL (NULL argument), SK_ENOMEM.
 */
SK_NODISCARD sk_status svc_upstreams_describe(svc_upstreams *u, json_t **out);

/* ---------------------------------------------------------------- edge */

/**
 * Route METHOD PATTERN to a command or query type: the payload is the JSON
 * body (an object, or {} when empty) merged with the path parameters and
 * query arguments (strings); Idempotency-Key, X-Consistency-Token (or
 * ?consistency_token=), traceparent and X-Request-Id are carried along; the
 * result becomes the HTTP answer (problem+json for errors).
 */
sk_status svc_route_command(svc_app *app, const char *method, const char *pattern, const char *type);
/** @p query_keys: NULL-terminated list of query arguments copied into the payload, or NULL. */
sk_status svc_route_query(svc_app *app,
                          const char *method,
                          const char *pattern,
                          const char *type,
                          const char *const *query_keys);


/* ---------------------------------------------------------------- helpers */

/** Build an outbox event of this service: subject "<context>.events.<type>". */
sk_status svc_emit(svc_app *app,
                   sk_tx *tx,
                   const char *type,
                   const char *aggregate_id,
                   const json_t *data,
                   const char *traceparent);


/* ---------------------------------------------------------------- commands in a transaction */

/** A command call being applied in a unit of work. */
typedef struct svc_txcall {
    sk_call *call;
    const sk_request *req; /* the call's request: valid until the call completes, after the work */
    void *ctx;
    /* Set by the work function on success: */
    int http_status;
    json_t *body;   /* owned */
    char *location; /* owned */
} svc_txcall;

/** Work of a command: runs on the store's writer thread inside the unit of work. */
typedef sk_status (*svc_tx_fn)(sk_tx *tx, svc_txcall *tc);

/**
 * Apply @p fn in a unit of work and complete @p call when it is durable:
 * with tc->http_status/body/location on success, with the unit's error
 * (mapped to HTTP) otherwise. Never blocks. The work reads the request
 * through tc->req and its dependencies through tc->ctx (borrowed).
 */
void svc_txcall_submit(sk_store *store, sk_call *call, svc_tx_fn fn, void *ctx);

/** Adapter for sk_cqrs_bus_register: a handler whose whole work is one unit of work. */
typedef struct svc_tx_handler {
    sk_store *store;
    svc_tx_fn fn;
    void *ctx;
} svc_tx_handler;
/** An sk_handler_fn whose ctx is an svc_tx_handler (kept alive by the service). */
void svc_tx_handle(sk_call *call, void *ctx);
/** Set the success answer (body taken). */
void svc_txcall_answer(svc_txcall *tc, int http_status, json_t *body, const char *location);
/**
 * Choose the HTTP status of the error the work function is about to return
 * (e.g. 422), instead of the one mapped from its sk_status.
 */
void svc_txcall_fail_http(svc_txcall *tc, int http_status);


/** Sleep @p ms milliseconds (shutdown and start-up waits only, never on a request path). */
void svc_sleep_ms(int64_t ms);

/** Wait until every unit queued so far on @p store is durable and done (shutdown ordering). */
void svc_store_flush(sk_store *store);

/**
 * Answer a saga command later, outside the consumer's unit of work (e.g.
 * after a call to an external system): the reply addressing of @p m is
 * saved by the caller and given back here.
 */
typedef struct svc_reply_addr {
    char subject[SK_ENVELOPE_MAX_ATTR + 1];  /* ce-subject (saga id) */
    char reply_to[SK_ENVELOPE_MAX_ATTR + 1]; /* ce-replyto */
    int saga_step;
} svc_reply_addr;
void svc_reply_addr_from(svc_reply_addr *a, const sk_message *m);
sk_status svc_reply_to_addr(sk_tx *tx, svc_app *app, const svc_reply_addr *a, const char *type, const json_t *data);

#endif /* SVC_H */
