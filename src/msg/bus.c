/* SPDX-License-Identifier: MIT */
/*
 * The bus: one NATS connection (plain or mutual TLS) with its JetStream
 * context, stream provisioning and the single nats -> sk_status mapping.
 * The connection retries forever in the background, so a service started
 * before nats-server comes up on its own once the server is there.
 */
#include <string.h>
#include <time.h>

#include "msg/msg_int.h"

/* Longest servers string accepted. */
#define MAX_SERVERS_LEN 4096
/* Reconnect wait: short, because JetStream leader elections are short. */
#define RECONNECT_WAIT_MS 250
/* Connection event warnings are logged at most once per this interval. */
#define WARN_INTERVAL_MS 5000
/* How long sk_bus_close lets subscriptions drain. */
#define DRAIN_TIMEOUT_MS 5000

/* JetStream error codes (server/errors.json). */
#define JS_ERR_STREAM_NOT_FOUND  10059
#define JS_ERR_NOT_ENABLED       10076
#define JS_ERR_NOT_ENABLED_ACCNT 10039
#define JS_ERR_CLUSTER_NOT_AVAIL 10008 /* "JetStream system temporarily unavailable" */

/* ---------------------------------------------------------------- errors */

sk_status sk__nats_fail(natsStatus s, jsErrCode jerr, const char *what)
{
    natsStatus last_st = NATS_OK;
    const char *last = nats_GetLastError(&last_st);
    const char *text = natsStatus_GetText(s);
    sk_status st = SK_EBUS;

    /* The last error text is thread-local and sticky: only trust it when it is about @p s. */
    if (last == NULL || last_st != s || last[0] == '\0') {
        last = NULL;
    }
    switch (s) {
    case NATS_TIMEOUT:
        st = SK_ETIMEDOUT;
        break;
    case NATS_NO_MEMORY:
        st = SK_ENOMEM;
        break;
    case NATS_SSL_ERROR:
        st = SK_ETLS;
        break;
    default:
        /* The broker cannot answer now (no responders, reconnecting, electing): callers may
         * wait and try again, and an HTTP answer says 503. */
        st = sk__nats_is_retryable(s, jerr) ? SK_EUNAVAILABLE : SK_EBUS;
        break;
    }
    if (jerr != 0) {
        return SK_FAIL(st, "%s: %s%s%s (jetstream error %d)", what, text, last ? ": " : "",
                       last ? last : "", (int)jerr);
    }
    return SK_FAIL(st, "%s: %s%s%s", what, text, last ? ": " : "", last ? last : "");
}

bool sk__nats_is_retryable(natsStatus s, jsErrCode jerr)
{
    if (jerr == JS_ERR_NOT_ENABLED || jerr == JS_ERR_NOT_ENABLED_ACCNT ||
        jerr == JS_ERR_CLUSTER_NOT_AVAIL) {
        return true;
    }
    switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
    case NATS_SLOW_CONSUMER:
        return true;
    default:
        return false;
    }
}

sk_status sk__subject_check(const char *subject, bool allow_wildcards, const char *field)
{
    size_t len, tok_start = 0;

    if (subject == NULL) {
        return SK_FAIL(SK_EINVAL, "%s must not be NULL", field);
    }
    len = strnlen(subject, 256);
    if (len == 0 || len > 255) {
        return SK_FAIL(SK_EINVAL, "%s: expected a subject of 1..255 bytes", field);
    }
    for (size_t i = 0; i <= len; i++) {
        char c = subject[i];
        if (i == len || c == '.') {
            size_t tok_len = i - tok_start;
            if (tok_len == 0) {
                return SK_FAIL(SK_EINVAL, "%s: empty token at offset %zu", field, i);
            }
            if (tok_len > 1 && (memchr(subject + tok_start, '*', tok_len) != NULL ||
                                memchr(subject + tok_start, '>', tok_len) != NULL)) {
                return SK_FAIL(SK_EINVAL, "%s: a wildcard must be a whole token (offset %zu)",
                               field, tok_start);
            }
            if (tok_len == 1 && subject[tok_start] == '>' && i != len) {
                return SK_FAIL(SK_EINVAL, "%s: '>' must be the last token", field);
            }
            tok_start = i + 1;
            continue;
        }
        if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e) {
            return SK_FAIL(SK_EINVAL, "%s: invalid character 0x%02x at offset %zu", field,
                           (unsigned)(unsigned char)c, i);
        }
        if ((c == '*' || c == '>') && !allow_wildcards) {
            return SK_FAIL(SK_EINVAL, "%s: wildcards are not allowed (offset %zu)", field, i);
        }
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- connection events */

/* True at most once per WARN_INTERVAL_MS per bus: repeated events are not all logged. */
static bool warn_allowed(sk_bus *bus)
{
    int64_t now = sk_time_mono_ms();
    int64_t last = atomic_load(&bus->last_warn_ms);

    if (last != 0 && now - last < WARN_INTERVAL_MS) {
        return false;
    }
    return atomic_compare_exchange_strong(&bus->last_warn_ms, &last, now);
}

/* Events of a link being closed (bus closing, or replaced by a reload) are expected. */
static bool is_expected(sk__bus_link *link)
{
    return atomic_load(&link->bus->is_closing) || !sk__bus_link_is_current(link->bus, link);
}

/*
 * Links whose memory is valid. Connection callbacks come before the closed
 * callback, which link_close waits for; an asynchronous error of a
 * subscription (say a missed-heartbeat timer of a watcher that just moved to
 * a new link) can be queued after it, so on_error first checks here that
 * its link still exists.
 */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static sk__bus_link **live_links;
static size_t n_live, cap_live;

static sk_status live_add(sk__bus_link *link)
{
    sk_status st = SK_OK;

    pthread_mutex_lock(&live_mu);
    if (n_live == cap_live) {
        size_t cap = cap_live == 0 ? 8 : cap_live * 2;
        sk__bus_link **grown = sk_realloc(live_links, cap * sizeof(*grown));
        if (grown == NULL) {
            st = SK_FAIL(SK_ENOMEM, "allocating a connection");
        } else {
            live_links = grown;
            cap_live = cap;
        }
    }
    if (st == SK_OK) {
        live_links[n_live++] = link;
    }
    pthread_mutex_unlock(&live_mu);
    return st;
}

static void live_remove(sk__bus_link *link)
{
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < n_live; i++) {
        if (live_links[i] == link) {
            live_links[i] = live_links[--n_live];
            break;
        }
    }
    if (n_live == 0) {
        sk_free(live_links); /* nothing left to look up: no allocation outlives the last link */
        live_links = NULL;
        cap_live = 0;
    }
    pthread_mutex_unlock(&live_mu);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    sk__bus_link *link = closure;
    bool is_live = false;

    (void)nc;
    (void)sub;
    /* Held while using link: link_close cannot free it meanwhile. */
    pthread_mutex_lock(&live_mu);
    for (size_t i = 0; i < n_live && !is_live; i++) {
        is_live = live_links[i] == link;
    }
    if (is_live && !is_expected(link) && warn_allowed(link->bus)) {
        SK_LOG_WARN("nats asynchronous error conn=%s status=%s", link->bus->name,
                    natsStatus_GetText(err));
    }
    pthread_mutex_unlock(&live_mu);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    sk__bus_link *link = closure;

    (void)nc;
    if (!is_expected(link) && warn_allowed(link->bus)) {
        SK_LOG_WARN("nats disconnected conn=%s (reconnecting)", link->bus->name);
    }
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    sk__bus_link *link = closure;

    (void)nc;
    atomic_fetch_add(&link->n_reconnects, 1);
    SK_LOG_INFO("nats reconnected conn=%s", link->bus->name);
}

/* The last callback nats.c makes for a connection: after it, the link may be freed. */
static void on_closed(natsConnection *nc, void *closure)
{
    sk__bus_link *link = closure;

    (void)nc;
    pthread_mutex_lock(&link->mu);
    link->is_closed = true;
    pthread_cond_broadcast(&link->cond);
    pthread_mutex_unlock(&link->mu);
}

static void on_connected(natsConnection *nc, void *closure)
{
    sk__bus_link *link = closure;

    (void)nc;
    SK_LOG_INFO("nats connected conn=%s (after retrying)", link->bus->name);
}

/* ---------------------------------------------------------------- links */

/* Close a link's connection (draining what is left) and free it. NULL-safe. */
static void link_close(sk__bus_link *link)
{
    if (link == NULL) {
        return;
    }
    live_remove(link); /* late asynchronous errors of its subscriptions are dropped from now */
    jsCtx_Destroy(link->js);
    if (link->nc != NULL) {
        /*
         * Drain lets subscriptions finish what they received; it fails when
         * the connection is not up, and then a plain close is all there is.
         */
        if (natsConnection_Status(link->nc) == NATS_CONN_STATUS_CONNECTED &&
            natsConnection_DrainTimeout(link->nc, DRAIN_TIMEOUT_MS) == NATS_OK) {
            int64_t deadline = sk_time_mono_ms() + DRAIN_TIMEOUT_MS + 1000;
            while (!natsConnection_IsClosed(link->nc) && sk_time_mono_ms() < deadline) {
                struct timespec ts = { 0, 5 * 1000 * 1000 };
                nanosleep(&ts, NULL);
            }
        }
        natsConnection_Close(link->nc);
        /*
         * Callbacks run on a nats thread and may still be queued; the closed
         * callback comes last, so once it ran nothing refers to link any more.
         */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 10;
        pthread_mutex_lock(&link->mu);
        while (!link->is_closed) {
            if (pthread_cond_timedwait(&link->cond, &link->mu, &deadline) != 0) {
                break;
            }
        }
        bool is_closed = link->is_closed;
        pthread_mutex_unlock(&link->mu);
        if (!is_closed) {
            /* A callback may still come and read the link: keep it rather than free it. */
            SK_LOG_ERROR("nats conn=%s: the connection did not report its close; leaking it",
                         link->bus->name);
            return;
        }
        natsConnection_Destroy(link->nc);
    }
    if (link->has_sync) {
        pthread_cond_destroy(&link->cond);
        pthread_mutex_destroy(&link->mu);
    }
    sk_free(link);
}

/* TLS file errors: SK_ETLS naming the file, with nats' reason. */
static sk_status tls_fail(natsStatus s, const char *what, const char *file)
{
    natsStatus last_st = NATS_OK;
    const char *last = nats_GetLastError(&last_st);

    if (last == NULL || last_st != s) {
        last = "";
    }
    return SK_FAIL(SK_ETLS, "loading %s %s: %s %s", what, file, natsStatus_GetText(s), last);
}

/* True when two server URLs name the same host and port (4222 when none is given). */
static bool same_address(const char *a, const char *b)
{
    const char *pa = strstr(a, "://"), *pb = strstr(b, "://");
    char na[300], nb[300];

    pa = pa != NULL ? pa + 3 : a;
    pb = pb != NULL ? pb + 3 : b;
    snprintf(na, sizeof(na), "%s%s", pa, strrchr(pa, ':') != NULL ? "" : ":4222");
    snprintf(nb, sizeof(nb), "%s%s", pb, strrchr(pb, ':') != NULL ? "" : ":4222");
    return strcmp(na, nb) == 0;
}

/*
 * Set everything but TLS on @p opts from the bus's config; callbacks get
 * @p link. With @p avoid (a URL the bus was connected to), the servers are
 * tried in order starting after it, and it comes last.
 */
static natsStatus link_options(sk__bus_link *link, natsOptions *opts, bool retry_in_background,
                               const char *avoid)
{
    sk_bus *bus = link->bus;
    const char *order[SK__BUS_MAX_SERVERS];
    int n = bus->n_servers, at = -1;
    natsStatus s;

    for (int i = 0; avoid != NULL && i < n; i++) {
        if (same_address(bus->servers[i], avoid)) {
            at = i;
        }
    }
    for (int i = 0; i < n; i++) {
        order[i] = bus->servers[at < 0 ? i : (at + 1 + i) % n];
    }
    s = natsOptions_SetServers(opts, order, n);
    if (s == NATS_OK && at >= 0) {
        s = natsOptions_SetNoRandomize(opts, true);
    }

    if (s == NATS_OK && bus->name[0] != '\0') {
        s = natsOptions_SetName(opts, bus->name);
    }
    if (s == NATS_OK && bus->inbox_prefix != NULL) {
        s = natsOptions_SetCustomInboxPrefix(opts, bus->inbox_prefix);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(opts, -1);
    }
    if (s == NATS_OK) {
        /*
         * (Practically) no reconnect buffer (0 would mean the 8 MB default):
         * a publish while disconnected fails at once instead of going out
         * after the reconnect, possibly ahead of an earlier one lost with the
         * old socket. Every publisher here retries in order by itself.
         */
        s = natsOptions_SetReconnectBufSize(opts, 1);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(opts, RECONNECT_WAIT_MS);
    }
    if (s == NATS_OK && retry_in_background) {
        s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, link);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(opts, on_error, link);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, link);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, link);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetClosedCB(opts, on_closed, link);
    }
    return s;
}

/*
 * Connect a new link from the bus's config, reading the TLS files now.
 * With @p retry_in_background an unreachable server is not an error (the
 * connection keeps trying); without it the connection must come up now.
 */
static sk_status link_open(sk_bus *bus, uint64_t generation, bool retry_in_background,
                           const char *avoid, sk__bus_link **out)
{
    natsOptions *opts = NULL;
    sk__bus_link *link;
    sk_status st = SK_OK;
    natsStatus s;

    *out = NULL;
    link = sk_calloc(1, sizeof(*link));
    if (link == NULL) {
        return SK_FAIL(SK_ENOMEM, "allocating a connection");
    }
    link->bus = bus;
    link->generation = generation;
    atomic_init(&link->refs, 1);
    if (pthread_mutex_init(&link->mu, NULL) != 0) {
        sk_free(link);
        return SK_FAIL(SK_ENOMEM, "creating a mutex");
    }
    if (pthread_cond_init(&link->cond, NULL) != 0) {
        pthread_mutex_destroy(&link->mu);
        sk_free(link);
        return SK_FAIL(SK_ENOMEM, "creating a condition variable");
    }
    link->has_sync = true;
    /*
     * Threads nats.c starts take the name of the thread that starts them:
     * name this one for each, and give it its own name back at the end.
     */
    char caller[16];
    sk_thread_name_get(caller);
    if ((st = live_add(link)) != SK_OK) {
        goto out;
    }
    /* The first one opens the library: timers, callbacks, the natsMsg collector. */
    sk_thread_name("sk-nats-lib");
    if ((s = natsOptions_Create(&opts)) != NATS_OK) {
        st = sk__nats_fail(s, 0, "creating options");
        goto out;
    }
    if ((s = link_options(link, opts, retry_in_background, avoid)) != NATS_OK) {
        st = sk__nats_fail(s, 0, "setting options");
        goto out;
    }
    if (bus->ca_file != NULL) {
        s = natsOptions_SetSecure(opts, true);
        if (s == NATS_OK) {
            s = natsOptions_LoadCATrustedCertificates(opts, bus->ca_file);
        }
        if (s != NATS_OK) {
            st = tls_fail(s, "CA file", bus->ca_file);
            goto out;
        }
        if (bus->cert_file != NULL) {
            s = natsOptions_LoadCertificatesChain(opts, bus->cert_file, bus->key_file);
            if (s != NATS_OK) {
                st = tls_fail(s, "client certificate", bus->cert_file);
                goto out;
            }
        }
    }
    sk_thread_name("sk-nats"); /* the connection's socket reader and flusher */
    s = natsConnection_Connect(&link->nc, opts);
    if (s == NATS_NOT_YET_CONNECTED && retry_in_background) {
        SK_LOG_WARN("nats not reachable yet conn=%s (retrying in the background)", bus->name);
    } else if (s != NATS_OK) {
        st = sk__nats_fail(s, 0, "connecting");
        goto out;
    }
    if ((s = natsConnection_JetStream(&link->js, link->nc, NULL)) != NATS_OK) {
        st = sk__nats_fail(s, 0, "creating the JetStream context");
        goto out;
    }
    *out = link;
    link = NULL;
out:
    sk_thread_name(caller);
    natsOptions_Destroy(opts); /* the connection keeps its own copy */
    link_close(link);
    return st;
}

sk__bus_link *sk__bus_link_acquire(sk_bus *bus)
{
    sk__bus_link *link;

    pthread_mutex_lock(&bus->mu);
    link = bus->link;
    atomic_fetch_add(&link->refs, 1);
    pthread_mutex_unlock(&bus->mu);
    return link;
}

void sk__bus_link_retain(sk__bus_link *link)
{
    atomic_fetch_add(&link->refs, 1);
}

void sk__bus_link_release(sk__bus_link *link)
{
    if (link != NULL && atomic_fetch_sub(&link->refs, 1) == 1) {
        link_close(link);
    }
}

bool sk__bus_link_is_current(sk_bus *bus, const sk__bus_link *link)
{
    return link != NULL && link->generation == atomic_load(&bus->generation);
}

natsConnection *sk__bus_conn(sk_bus *bus)
{
    return bus->link->nc;
}

jsCtx *sk__bus_js(sk_bus *bus)
{
    return bus->link->js;
}

int sk__bus_replicas(sk_bus *bus)
{
    return bus->replicas;
}

/* ---------------------------------------------------------------- open / close */

/* Split a comma-separated server list into @p copy; @p list points into it. */
static sk_status split_servers(const char *servers, char *copy, const char **list, int *n)
{
    size_t len = strnlen(servers, MAX_SERVERS_LEN + 1);
    char *p;

    *n = 0;
    if (len == 0 || len > MAX_SERVERS_LEN) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: cfg->servers: expected 1..%d bytes",
                       MAX_SERVERS_LEN);
    }
    memcpy(copy, servers, len + 1);
    p = copy;
    while (*p != '\0') {
        char *end = strchr(p, ',');
        if (end != NULL) {
            *end = '\0';
        }
        while (*p == ' ') {
            p++;
        }
        if (*p != '\0') {
            if (*n == SK__BUS_MAX_SERVERS) {
                return SK_FAIL(SK_EINVAL, "sk_bus_open: cfg->servers: more than %d servers",
                               SK__BUS_MAX_SERVERS);
            }
            if (strncmp(p, "nats://", 7) != 0 && strncmp(p, "tls://", 6) != 0) {
                return SK_FAIL(SK_EINVAL,
                               "sk_bus_open: cfg->servers: expected nats:// or tls:// URLs, got "
                               "\"%.64s\"",
                               p);
            }
            list[(*n)++] = p;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    if (*n == 0) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: cfg->servers: no server given");
    }
    return SK_OK;
}

static sk_status probe_start(sk_bus *bus);

/* Copy @p s unless NULL; false when out of memory. */
static bool copy_opt(const char *s, char **out)
{
    *out = NULL;
    return s == NULL || (*out = sk_strdup(s)) != NULL;
}

sk_status sk_bus_open(sk_bus **out, const sk_bus_config *cfg)
{
    sk_status st = SK_OK;
    sk_bus *bus = NULL;

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: out must not be NULL");
    }
    *out = NULL;
    if (cfg == NULL || cfg->servers == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: cfg and cfg->servers must not be NULL");
    }
    if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: cfg->cert_file and cfg->key_file go together");
    }
    if (cfg->cert_file != NULL && cfg->ca_file == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_open: a client certificate needs cfg->ca_file");
    }
    if (cfg->inbox_prefix != NULL &&
        (st = sk__subject_check(cfg->inbox_prefix, false, "sk_bus_open: cfg->inbox_prefix")) !=
            SK_OK) {
        return st;
    }
    bus = sk_calloc(1, sizeof(*bus));
    if (bus == NULL) {
        return SK_FAIL(SK_ENOMEM, "sk_bus_open: allocating the bus");
    }
    if (pthread_mutex_init(&bus->mu, NULL) != 0) {
        sk_free(bus);
        return SK_FAIL(SK_ENOMEM, "sk_bus_open: creating a mutex");
    }
    bus->has_mu = true;
    if (pthread_mutex_init(&bus->swap_mu, NULL) != 0) {
        st = SK_FAIL(SK_ENOMEM, "sk_bus_open: creating a mutex");
        goto out;
    }
    bus->has_swap_mu = true;
    if (cfg->replicas < 0 || cfg->replicas > 5) {
        st = SK_FAIL(SK_EINVAL, "sk_bus_open: cfg->replicas: expected 0..5, got %d", cfg->replicas);
        goto out;
    }
    bus->replicas = cfg->replicas > 0 ? cfg->replicas : 1;
    bus->servers_copy = sk_malloc(MAX_SERVERS_LEN + 1);
    if (bus->servers_copy == NULL || !copy_opt(cfg->ca_file, &bus->ca_file) ||
        !copy_opt(cfg->cert_file, &bus->cert_file) || !copy_opt(cfg->key_file, &bus->key_file) ||
        !copy_opt(cfg->inbox_prefix, &bus->inbox_prefix) ||
        !copy_opt(cfg->name != NULL ? cfg->name : "", &bus->name)) {
        st = SK_FAIL(SK_ENOMEM, "sk_bus_open: copying the config");
        goto out;
    }
    if ((st = split_servers(cfg->servers, bus->servers_copy, bus->servers, &bus->n_servers)) !=
        SK_OK) {
        goto out;
    }
    atomic_init(&bus->generation, 1);
    if ((st = link_open(bus, 1, true, NULL, &bus->link)) != SK_OK ||
        (st = probe_start(bus)) != SK_OK) {
        st = SK_WRAP(st, "sk_bus_open");
        goto out;
    }
    *out = bus;
    bus = NULL;
out:
    sk_bus_close(bus);
    return st;
}

/* ---------------------------------------------------------------- JetStream probe */

/*
 * In a cluster, a client connected to a node cut off from the majority
 * stays connected (its TCP connection is fine) while every JetStream call
 * through it times out. The probe asks for the stream names (answered by
 * the meta leader only) every PROBE_INTERVAL_MS; after PROBE_FAILURES
 * failures in a row on a connected link the bus moves to another server,
 * the same way a certificate reload moves it.
 */
#define PROBE_INTERVAL_MS 500
#define PROBE_TIMEOUT_MS  1000
#define PROBE_FAILURES    3
/* After a failover that found no better server, this many probes pass before the next try. */
#define PROBE_BACKOFF     10

/* True when JetStream answered through @p link; *is_connected tells whether it could have. */
static bool probe_once(sk__bus_link *link, bool *is_connected, char *url, size_t url_len)
{
    jsStreamNamesList *names = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;
    natsStatus s;

    url[0] = '\0';
    *is_connected = natsConnection_Status(link->nc) == NATS_CONN_STATUS_CONNECTED;
    if (!*is_connected) {
        return false;
    }
    SK_IGNORE(natsConnection_GetConnectedUrl(link->nc, url, url_len)); /* "" when unknown */
    jsOptions_Init(&jo);
    jo.Wait = PROBE_TIMEOUT_MS;
    s = js_StreamNames(&names, link->js, &jo, &jerr);
    jsStreamNamesList_Destroy(names);
    /* Not found (no streams yet) is an answer too. */
    return s == NATS_OK || s == NATS_NOT_FOUND;
}

/*
 * Open a new link (see link_open) and make it the current one; users move
 * over and the old link closes when the last of them has left it. With
 * @p avoid (a failover: the URL JetStream did not answer through, or "")
 * the new link must answer a probe first. @p why names the occasion in the
 * log line.
 */
static sk_status link_replace(sk_bus *bus, const char *avoid, const char *why)
{
    sk__bus_link *fresh = NULL, *old;
    sk_status st;

    pthread_mutex_lock(&bus->swap_mu);
    uint64_t generation = atomic_load(&bus->generation) + 1;
    st = link_open(bus, generation, false, avoid, &fresh);
    if (st == SK_OK && avoid != NULL) {
        /* A failover only helps if JetStream answers through the new server. */
        char url[256];
        bool is_connected = false;
        if (!probe_once(fresh, &is_connected, url, sizeof(url))) {
            st = SK_FAIL(SK_EBUS, "JetStream does not answer through %s either",
                         url[0] != '\0' ? url : "the next server");
            sk__bus_link_release(fresh);
        }
    }
    if (st == SK_OK) {
        pthread_mutex_lock(&bus->mu);
        old = bus->link;
        bus->link = fresh;
        atomic_store(&bus->generation, generation);
        pthread_mutex_unlock(&bus->mu);
        SK_LOG_INFO("nats conn=%s: new connection (generation %llu, %s); users move over, then "
                    "the old one closes",
                    bus->name, (unsigned long long)generation, why);
        sk__bus_link_release(old);
    }
    pthread_mutex_unlock(&bus->swap_mu);
    return st;
}

sk_status sk_bus_reload_tls(sk_bus *bus)
{
    sk_status st;

    if (bus == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_reload_tls: bus must not be NULL");
    }
    if (bus->ca_file == NULL) {
        return SK_OK; /* a plain connection has no files to re-read */
    }
    st = link_replace(bus, NULL, "reloaded certificate");
    if (st != SK_OK) {
        return SK_WRAP(st, "sk_bus_reload_tls: keeping the current connection");
    }
    return SK_OK;
}

static void *probe_main(void *arg)
{
    sk_bus *bus = arg;
    int failures = 0;

    sk_thread_name("sk-js-probe");
    pthread_mutex_lock(&bus->probe_mu);
    while (!bus->probe_stop) {
        struct timespec ts;
        sk_time_mono_deadline(PROBE_INTERVAL_MS, &ts);
        SK_IGNORE(pthread_cond_timedwait(&bus->probe_cond, &bus->probe_mu, &ts)); /* or woken */
        if (bus->probe_stop) {
            break;
        }
        pthread_mutex_unlock(&bus->probe_mu);

        char url[256];
        bool is_connected = false;
        sk__bus_link *link = sk__bus_link_acquire(bus);
        bool ok = probe_once(link, &is_connected, url, sizeof(url));
        sk__bus_link_release(link);
        if (ok || !is_connected) {
            failures = 0; /* a broken connection is nats.c's to re-establish */
        } else if (++failures >= PROBE_FAILURES) {
            failures = 0;
            SK_LOG_WARN("nats conn=%s: JetStream does not answer through %s (%d probes); moving "
                        "to another server",
                        bus->name, url[0] != '\0' ? url : "the current server", PROBE_FAILURES);
            if (link_replace(bus, url[0] != '\0' ? url : "", "failover") != SK_OK) {
                SK_LOG_WARN("nats conn=%s: failover: %s (staying)", bus->name, sk_error_message());
                failures = -PROBE_BACKOFF;
            }
        }
        pthread_mutex_lock(&bus->probe_mu);
    }
    pthread_mutex_unlock(&bus->probe_mu);
    return NULL;
}

/* Start the probe when there is another server to move to. */
static sk_status probe_start(sk_bus *bus)
{
    pthread_condattr_t ca;

    if (bus->n_servers < 2) {
        return SK_OK;
    }
    if (pthread_condattr_init(&ca) != 0) {
        return SK_FAIL(SK_ENOMEM, "creating a condition variable");
    }
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&bus->probe_mu, NULL) != 0) {
        pthread_condattr_destroy(&ca);
        return SK_FAIL(SK_ENOMEM, "creating a mutex");
    }
    if (pthread_cond_init(&bus->probe_cond, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&bus->probe_mu);
        return SK_FAIL(SK_ENOMEM, "creating a condition variable");
    }
    pthread_condattr_destroy(&ca);
    bus->has_probe_sync = true;
    if (pthread_create(&bus->probe_thread, NULL, probe_main, bus) != 0) {
        return SK_FAIL(SK_EINTERNAL, "creating the JetStream probe thread");
    }
    bus->has_probe = true;
    return SK_OK;
}

static void probe_stop(sk_bus *bus)
{
    if (bus->has_probe) {
        pthread_mutex_lock(&bus->probe_mu);
        bus->probe_stop = true;
        pthread_cond_broadcast(&bus->probe_cond);
        pthread_mutex_unlock(&bus->probe_mu);
        pthread_join(bus->probe_thread, NULL);
        bus->has_probe = false;
    }
    if (bus->has_probe_sync) {
        pthread_cond_destroy(&bus->probe_cond);
        pthread_mutex_destroy(&bus->probe_mu);
        bus->has_probe_sync = false;
    }
}

void sk_bus_close(sk_bus *bus)
{
    if (bus == NULL) {
        return;
    }
    atomic_store(&bus->is_closing, true);
    probe_stop(bus);
    if (bus->link != NULL) {
        int users = atomic_load(&bus->link->refs) - 1;
        if (users > 0) {
            /* Their links refer to the bus: freeing it would leave them dangling. */
            SK_LOG_ERROR("sk_bus_close: conn=%s still has %d users (stop consumers, relays and "
                         "KV handles first); leaving the bus open",
                         bus->name, users);
            return;
        }
        sk__bus_link_release(bus->link);
    }
    if (bus->has_mu) {
        pthread_mutex_destroy(&bus->mu);
    }
    if (bus->has_swap_mu) {
        pthread_mutex_destroy(&bus->swap_mu);
    }
    sk_free(bus->servers_copy);
    sk_free(bus->ca_file);
    sk_free(bus->cert_file);
    sk_free(bus->key_file);
    sk_free(bus->inbox_prefix);
    sk_free(bus->name);
    sk_free(bus);
}

bool sk_bus_is_connected(sk_bus *bus)
{
    sk__bus_link *link;
    bool is_up;

    if (bus == NULL) {
        return false;
    }
    link = sk__bus_link_acquire(bus);
    is_up = link->nc != NULL && natsConnection_Status(link->nc) == NATS_CONN_STATUS_CONNECTED;
    sk__bus_link_release(link);
    return is_up;
}

/* ---------------------------------------------------------------- streams */

/* True when the server's config already says what @p want says. */
static bool stream_config_matches(const jsStreamConfig *have, const jsStreamConfig *want)
{
    if (have == NULL || have->SubjectsLen != want->SubjectsLen ||
        have->Replicas != want->Replicas || have->Duplicates != want->Duplicates ||
        have->Storage != want->Storage) {
        return false;
    }
    for (int i = 0; i < want->SubjectsLen; i++) {
        bool found = false;
        for (int j = 0; j < have->SubjectsLen && !found; j++) {
            found = strcmp(have->Subjects[j], want->Subjects[i]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

sk_status sk_bus_stream_ensure(sk_bus *bus, const sk_stream_config *cfg)
{
    sk__bus_link *link = NULL;
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    sk_status st = SK_OK;
    jsErrCode jerr = 0;
    natsStatus s;

    if (bus == NULL || cfg == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_stream_ensure: bus and cfg must not be NULL");
    }
    if (cfg->name == NULL || !sk_name_is_valid(cfg->name, SK__MSG_NAME_MAX)) {
        return SK_FAIL(SK_EINVAL,
                       "sk_bus_stream_ensure: cfg->name: expected 1..64 of [A-Za-z0-9_-]");
    }
    if (cfg->subjects == NULL || cfg->n_subjects == 0 || cfg->n_subjects > 64) {
        return SK_FAIL(SK_EINVAL, "sk_bus_stream_ensure: cfg->subjects: expected 1..64 subjects");
    }
    for (size_t i = 0; i < cfg->n_subjects; i++) {
        if ((st = sk__subject_check(cfg->subjects[i], true,
                                    "sk_bus_stream_ensure: cfg->subjects[i]")) != SK_OK) {
            return st;
        }
    }
    if (cfg->replicas < 0 || cfg->replicas > 5) {
        return SK_FAIL(SK_EINVAL, "sk_bus_stream_ensure: cfg->replicas: expected 0..5, got %d",
                       cfg->replicas);
    }
    if (cfg->duplicate_window_ms < 0 || cfg->duplicate_window_ms > INT64_MAX / 1000000) {
        return SK_FAIL(SK_EINVAL, "sk_bus_stream_ensure: cfg->duplicate_window_ms out of range");
    }
    jsStreamConfig_Init(&sc);
    sc.Name = cfg->name;
    /* nats.c takes `const char **`; it does not modify the strings. */
    sc.Subjects = (const char **)(uintptr_t)cfg->subjects;
    sc.SubjectsLen = (int)cfg->n_subjects;
    sc.Storage = js_FileStorage;
    sc.Replicas = cfg->replicas == 0 ? 1 : cfg->replicas;
    /* Stream durations are nanoseconds. */
    sc.Duplicates =
        (cfg->duplicate_window_ms == 0 ? 2 * 60 * 1000 : cfg->duplicate_window_ms) * 1000000;

    link = sk__bus_link_acquire(bus);
    s = js_GetStreamInfo(&si, link->js, cfg->name, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JS_ERR_STREAM_NOT_FOUND) {
        jerr = 0;
        s = js_AddStream(NULL, link->js, &sc, NULL, &jerr);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, jerr, "creating stream");
            st = SK_WRAP(st, "stream %s", cfg->name);
        }
        goto out;
    }
    if (s != NATS_OK) {
        st = sk__nats_fail(s, jerr, "looking up stream");
        st = SK_WRAP(st, "stream %s", cfg->name);
        goto out;
    }
    if (!stream_config_matches(si->Config, &sc)) {
        jerr = 0;
        s = js_UpdateStream(NULL, link->js, &sc, NULL, &jerr);
        if (s != NATS_OK) {
            st = sk__nats_fail(s, jerr, "updating stream");
            st = SK_WRAP(st, "stream %s", cfg->name);
        }
    }
out:
    sk__bus_link_release(link);
    jsStreamInfo_Destroy(si);
    return st;
}

/* ---------------------------------------------------------------- the system's streams */

void sk_stream_name(const char *context, const char *kind_upper, char *out, size_t out_len)
{
    size_t j = 0;
    if (out_len == 0) {
        return;
    }
    for (size_t i = 0; context[i] != '\0' && j + 1 < out_len; i++) {
        char c = context[i];
        out[j++] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : (c == '-' ? '_' : c));
    }
    out[j] = '\0';
    snprintf(out + j, out_len - j, "_%s", kind_upper);
}

bool sk_system_service_has_streams(const sk_sys_service *svc)
{
    return !svc->is_gateway && svc->database != NULL && svc->database[0] != '\0' &&
           strcmp(svc->database, "none") != 0;
}

sk_status sk_bus_system_streams_ensure(sk_bus *bus, const sk_system *sys)
{
    static const char *const kinds[] = { "events", "commands", "replies" };
    static const char *const kinds_upper[] = { "EVENTS", "COMMANDS", "REPLIES" };
    sk_status st = SK_OK;

    if (bus == NULL || sys == NULL) {
        return SK_FAIL(SK_EINVAL, "sk_bus_system_streams_ensure: %s must not be NULL", bus == NULL ? "bus" : "sys");
    }
    for (size_t i = 0; i < sys->n_services && st == SK_OK; i++) {
        const sk_sys_service *s = &sys->services[i];
        if (!sk_system_service_has_streams(s)) {
            continue;
        }
        for (size_t k = 0; k < 3 && st == SK_OK; k++) {
            char name[96], subject[128];
            sk_stream_name(s->context, kinds_upper[k], name, sizeof(name));
            snprintf(subject, sizeof(subject), "%s.%s.>", s->context, kinds[k]);
            const char *subjects[] = { subject };
            sk_stream_config cfg = { .name = name,
                                     .subjects = subjects,
                                     .n_subjects = 1,
                                     .replicas = sys->broker.replicas };
            st = sk_bus_stream_ensure(bus, &cfg);
        }
    }
    if (st == SK_OK) {
        const char *subjects[] = { SK_DLQ_SUBJECT_PREFIX ">" };
        sk_stream_config cfg = { .name = SK_DLQ_STREAM,
                                 .subjects = subjects,
                                 .n_subjects = 1,
                                 .replicas = sys->broker.replicas };
        st = sk_bus_stream_ensure(bus, &cfg);
    }
    return st;
}
