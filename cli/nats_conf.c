/* SPDX-License-Identifier: MIT */
/*
 * The nats-server configuration `skald up` writes to DATA/run/nats.conf:
 * a loopback-only listener, JetStream with bounded memory and file stores,
 * mutual TLS whose client certificate is mapped to a user (verify_and_map:
 * the URI SAN spiffe://skald.local/ns/default/sa/<service> is the user
 * name) and one user per identity with the narrowest publish and subscribe
 * permissions its work needs, derived from the system file. Rendering is a
 * pure function so it can be tested without a server. Also the streams and
 * the discovery bucket `skald up` creates before any service starts, since
 * services are not allowed to create streams.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* JetStream limits and connection settings (see the `skald up` brief in CONTRACT.md). */
#define NATS_MAX_MEMORY_STORE "64MB"
#define NATS_MAX_FILE_STORE   "10GB"
#define NATS_MAX_PAYLOAD      (2u * 1024u * 1024u)
#define NATS_WRITE_DEADLINE   "10s"
#define NATS_TLS_TIMEOUT_S    2

/*
 * The bucket of run-time fault injection (`skald fault` writes a service's
 * key, its instances watch it); mesh.h names it SK_FAULT_BUCKET.
 */
#ifndef SK_FAULT_BUCKET
#define SK_FAULT_BUCKET "skald_faults"
#endif

/* The JetStream API prefix nats.c 3.4.1 uses, and the buckets' streams. */
#define JS_API          "$JS.API"
#define KV_STREAM       "KV_" SK_DISCOVERY_BUCKET
#define KV_FAULT_STREAM "KV_" SK_FAULT_BUCKET

/* The longest subject we render: prefixes + a stream name (64) + a service name (32). */
#define SUBJECT_MAX 200
/* A system has at most a few dozen services; this bounds a user's list. */
#define PERMS_MAX 4096

/*
 * nats-server's config language takes double-quoted strings with backslash
 * escapes; rather than escape, refuse the characters that would need it.
 */
static sk_status check_string(const char *field, const char *value)
{
    if (value == NULL || value[0] == '\0') {
        return SK_FAIL(SK_EINVAL, "nats.conf: %s must be a non-empty string", field);
    }
    for (const char *p = value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            return SK_FAIL(SK_EINVAL,
                           "nats.conf: %s: character 0x%02x at offset %zu is not allowed "
                           "(no quotes, backslashes or control characters)",
                           field, c, (size_t)(p - value));
        }
    }
    return SK_OK;
}

/* ---------------------------------------------------------------- subject lists */

/* A list of subjects without duplicates, in insertion order. */
typedef struct subj_list {
    char **items; /* owned */
    size_t n, cap;
} subj_list;

static void subj_list_fini(subj_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        sk_free(l->items[i]);
    }
    sk_free(l->items);
    memset(l, 0, sizeof(*l));
}

static sk_status subj_list_add(subj_list *l, const char *fmt, ...) SK_PRINTF(2, 3);

static sk_status subj_list_add(subj_list *l, const char *fmt, ...)
{
    char subject[SUBJECT_MAX + 1];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(subject, sizeof(subject), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(subject)) {
        return SK_FAIL(SK_ELIMIT, "nats.conf: a permission subject is longer than %d bytes",
                       SUBJECT_MAX);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i], subject) == 0) {
            return SK_OK;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 32 : l->cap * 2;
        if (cap > PERMS_MAX) {
            return SK_FAIL(SK_ELIMIT, "nats.conf: more than %d permission subjects for one user",
                           PERMS_MAX);
        }
        char **items = sk_realloc(l->items, cap * sizeof(*items));
        if (items == NULL) {
            return SK_FAIL(SK_ENOMEM, "nats.conf: growing a permission list");
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n] = sk_strdup(subject);
    if (l->items[l->n] == NULL) {
        return SK_FAIL(SK_ENOMEM, "nats.conf: copying a permission subject");
    }
    l->n++;
    return SK_OK;
}

/* ---------------------------------------------------------------- the system's streams */

static bool list_has(char *const *list, size_t n, const char *item)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], item) == 0) {
            return true;
        }
    }
    return false;
}

/* True when @p s consumes at least one event that @p emitter emits. */
static bool consumes_from(const sk_sys_service *s, const sk_sys_service *emitter)
{
    for (size_t e = 0; e < s->n_consumes; e++) {
        if (list_has(emitter->emits, emitter->n_emits, s->consumes[e])) {
            return true;
        }
    }
    return false;
}

static size_t service_index(const sk_system *sys, const char *name)
{
    for (size_t i = 0; i < sys->n_services; i++) {
        if (strcmp(sys->services[i].name, name) == 0) {
            return i;
        }
    }
    return sys->n_services;
}

/*
 * Which services @p s sends saga commands to: the list under the service's
 * "x-sends-commands-to" key when the system file has one (validated: known
 * services that have streams and commands, not itself), else derived:
 * every other service with streams and commands whose events @p s consumes
 * (an orchestrator consumes the outcomes of the steps it commands). A
 * read-model service (queries, no commands) commands nobody. The derived
 * rule may grant more than is used; the explicit key is exact.
 * @param[out] out n_services flags.
 */
static sk_status command_targets(const sk_system *sys, size_t self, bool *out)
{
    const sk_sys_service *s = &sys->services[self];
    json_t *svc = json_object_get(json_object_get(sys->root, "services"), s->name);
    json_t *list = json_is_object(svc) ? json_object_get(svc, CLI_NATS_COMMANDS_KEY) : NULL;

    memset(out, 0, sys->n_services * sizeof(*out));
    if (list == NULL) {
        if (!sk_system_service_has_streams(s) || s->n_commands == 0) {
            return SK_OK;
        }
        for (size_t t = 0; t < sys->n_services; t++) {
            const sk_sys_service *target = &sys->services[t];
            out[t] = t != self && sk_system_service_has_streams(target) && target->n_commands > 0 &&
                     consumes_from(s, target);
        }
        return SK_OK;
    }
    if (!json_is_array(list)) {
        return SK_FAIL(SK_EPROTO, "services.%s.%s: expected a list of service names", s->name,
                       CLI_NATS_COMMANDS_KEY);
    }
    for (size_t k = 0; k < json_array_size(list); k++) {
        const char *name = json_string_value(json_array_get(list, k));
        if (name == NULL) {
            return SK_FAIL(SK_EPROTO, "services.%s.%s[%zu]: expected a service name", s->name,
                           CLI_NATS_COMMANDS_KEY, k);
        }
        size_t t = service_index(sys, name);
        if (t == sys->n_services) {
            return SK_FAIL(SK_EPROTO, "services.%s.%s[%zu]: no service \"%.40s\" in the system",
                           s->name, CLI_NATS_COMMANDS_KEY, k, name);
        }
        if (t == self || !sk_system_service_has_streams(&sys->services[t]) || sys->services[t].n_commands == 0) {
            return SK_FAIL(SK_EPROTO,
                           "services.%s.%s[%zu]: \"%s\" cannot take saga commands from %s "
                           "(expected another service with a database and commands)",
                           s->name, CLI_NATS_COMMANDS_KEY, k, name, s->name);
        }
        out[t] = true;
    }
    return SK_OK;
}

/* The command-target matrix: row i = the services i sends commands to. */
static sk_status command_matrix(const sk_system *sys, bool **out)
{
    size_t n = sys->n_services;
    bool *m = sk_calloc(n * n + 1, sizeof(*m));
    sk_status st = SK_OK;

    *out = NULL;
    if (m == NULL) {
        return SK_FAIL(SK_ENOMEM, "nats.conf: command targets");
    }
    for (size_t i = 0; i < n && st == SK_OK; i++) {
        st = command_targets(sys, i, m + i * n);
    }
    if (st != SK_OK) {
        sk_free(m);
        return st;
    }
    *out = m;
    return SK_OK;
}

/* ---------------------------------------------------------------- permissions */

/* The stream API operations @p ops on every stream of the system, DEAD_LETTERS and the bucket. */
static sk_status
add_stream_api(subj_list *pub, const sk_system *sys, const char *const *ops, size_t n_ops)
{
    static const char *const kinds[] = { "EVENTS", "COMMANDS", "REPLIES" };
    const char *fixed[] = { SK_DLQ_STREAM, KV_STREAM, KV_FAULT_STREAM };
    char name[96];
    sk_status st = SK_OK;

    for (size_t i = 0; i < sys->n_services && st == SK_OK; i++) {
        if (!sk_system_service_has_streams(&sys->services[i])) {
            continue;
        }
        for (size_t k = 0; k < 3 && st == SK_OK; k++) {
            sk_stream_name(sys->services[i].context, kinds[k], name, sizeof(name));
            for (size_t o = 0; o < n_ops && st == SK_OK; o++) {
                st = subj_list_add(pub, JS_API ".STREAM.%s.%s", ops[o], name);
            }
        }
    }
    for (size_t f = 0; f < sizeof(fixed) / sizeof(fixed[0]) && st == SK_OK; f++) {
        for (size_t o = 0; o < n_ops && st == SK_OK; o++) {
            st = subj_list_add(pub, JS_API ".STREAM.%s.%s", ops[o], fixed[f]);
        }
    }
    return st;
}

/*
 * Durable pull consumers on @p stream, whatever their names: create (nats.c
 * 3.4.1 uses CONSUMER.CREATE.<stream>.<durable>.<filter> on a 2.9 server,
 * DURABLE.CREATE on older ones), info, fetch, and acknowledgements.
 */
static sk_status add_consumer(subj_list *pub, const char *stream)
{
    sk_status st = subj_list_add(pub, JS_API ".CONSUMER.CREATE.%s.>", stream);
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.DURABLE.CREATE.%s.*", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.INFO.%s.*", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.MSG.NEXT.%s.*", stream);
    }
    if (st == SK_OK) {
        /* A projection replay retires the durables of the version it replaced. */
        st = subj_list_add(pub, JS_API ".CONSUMER.DELETE.%s.*", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, "$JS.ACK.%s.>", stream);
    }
    return st;
}

/*
 * Reading bucket @p stream ("KV_<bucket>"): get (direct get, or MSG.GET
 * when the bucket has no direct get) and watch (an ephemeral ordered
 * consumer with flow control, deleted when the watch stops). kvStore_Watch
 * in nats.c 3.4.1 first finds the stream by subject through STREAM.NAMES,
 * a listing that reveals stream names only.
 */
static sk_status add_kv_read(subj_list *pub, const char *stream)
{
    sk_status st = subj_list_add(pub, "%s", JS_API ".STREAM.NAMES");
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".DIRECT.GET.%s.>", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".STREAM.MSG.GET.%s", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.CREATE.%s", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.CREATE.%s.>", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".CONSUMER.DELETE.%s.*", stream);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, "$JS.FC.%s.>", stream);
    }
    return st;
}

/* Everything service @p self may publish and subscribe to. */
static sk_status
service_perms(const sk_system *sys, size_t self, const bool *matrix, subj_list *pub, subj_list *sub)
{
    static const char *const info[] = { "INFO" };
    const sk_sys_service *s = &sys->services[self];
    size_t n = sys->n_services;
    char name[96];
    sk_status st = SK_OK;

    if (sk_system_service_has_streams(s)) {
        /* Its own events, and dead letters of its consumers (through its outbox). */
        st = subj_list_add(pub, "%s.events.>", s->context);
        if (st == SK_OK) {
            st = subj_list_add(pub, "%s*", SK_DLQ_SUBJECT_PREFIX);
        }
        /* Commands to the services it orchestrates; replies to those that command it. */
        for (size_t t = 0; t < n && st == SK_OK; t++) {
            if (matrix[self * n + t]) {
                st = subj_list_add(pub, "%s.commands.>", sys->services[t].context);
            }
        }
        for (size_t o = 0; o < n && st == SK_OK; o++) {
            if (matrix[o * n + self]) {
                st = subj_list_add(pub, "%s.replies.>", sys->services[o].context);
            }
        }
        /* Consumers: its commands, its saga replies, the events it consumes. */
        if (st == SK_OK && s->n_commands > 0) {
            sk_stream_name(s->context, "COMMANDS", name, sizeof(name));
            st = add_consumer(pub, name);
        }
        if (st == SK_OK) {
            sk_stream_name(s->context, "REPLIES", name, sizeof(name));
            st = add_consumer(pub, name);
        }
        for (size_t t = 0; t < n && st == SK_OK; t++) {
            if (sk_system_service_has_streams(&sys->services[t]) && consumes_from(s, &sys->services[t])) {
                sk_stream_name(sys->services[t].context, "EVENTS", name, sizeof(name));
                st = add_consumer(pub, name);
            }
        }
    }
    if (st == SK_OK) {
        st = add_stream_api(pub, sys, info, 1);
    }
    /*
     * Discovery: read every entry, write only its own ("<service>.<instance>").
     * Fault injection: read (its instances watch their service's key).
     */
    if (st == SK_OK) {
        st = add_kv_read(pub, KV_STREAM);
    }
    if (st == SK_OK) {
        st = add_kv_read(pub, KV_FAULT_STREAM);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, "$KV.%s.%s.>", SK_DISCOVERY_BUCKET, s->name);
    }
    /* Inboxes: `skald up` names instances <service>-1..N and each uses _INBOX.<instance>. */
    int n_inst = s->is_gateway || s->instances < 1 ? 1 : s->instances;
    for (int k = 1; k <= n_inst && st == SK_OK; k++) {
        st = subj_list_add(sub, "_INBOX.%s-%d.>", s->name, k);
    }
    return st;
}

/*
 * The CLI: creates every stream and both buckets at start (`skald up`),
 * reads discovery (`skald status`), reads and writes fault injection
 * (`skald fault`), and watches the domain events of every context with a
 * plain subscription (`skald bench` sees orders end; no consumer, no
 * publish).
 */
static sk_status cli_perms(const sk_system *sys, subj_list *pub, subj_list *sub)
{
    static const char *const ops[] = { "INFO", "CREATE", "UPDATE" };
    sk_status st = add_stream_api(pub, sys, ops, 3);
    for (size_t i = 0; i < sys->n_services && st == SK_OK; i++) {
        if (sk_system_service_has_streams(&sys->services[i])) {
            st = subj_list_add(sub, "%s.events.>", sys->services[i].context);
        }
    }
    if (st == SK_OK) {
        st = add_kv_read(pub, KV_STREAM);
    }
    if (st == SK_OK) {
        st = add_kv_read(pub, KV_FAULT_STREAM);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, "$KV.%s.>", SK_FAULT_BUCKET);
    }
    /* skald dlq: read the dead letters (js_GetMsg: MSG.GET, or DIRECT.GET when the stream allows it) ... */
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".STREAM.MSG.GET.%s", SK_DLQ_STREAM);
    }
    if (st == SK_OK) {
        st = subj_list_add(pub, JS_API ".DIRECT.GET.%s", SK_DLQ_STREAM);
    }
    /* ... and redrive one onto its original subject. */
    for (size_t i = 0; i < sys->n_services && st == SK_OK; i++) {
        static const char *const kinds[] = { "events", "commands", "replies" };
        if (!sk_system_service_has_streams(&sys->services[i])) {
            continue;
        }
        for (size_t k = 0; k < 3 && st == SK_OK; k++) {
            st = subj_list_add(pub, "%s.%s.>", sys->services[i].context, kinds[k]);
        }
    }
    if (st == SK_OK) {
        st = subj_list_add(sub, "%s.>", CLI_NATS_INBOX);
    }
    return st;
}

static sk_status render_list(sk_buf *out, const char *what, const subj_list *l)
{
    sk_status st = sk_buf_appendf(out, "        %s: { allow: [", what);
    for (size_t i = 0; i < l->n && st == SK_OK; i++) {
        st = sk_buf_appendf(out, "%s\n          \"%s\"", i == 0 ? "" : ",", l->items[i]);
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(out, " ] }\n");
    }
    return st;
}

static sk_status
render_user(sk_buf *out, const char *name, const subj_list *pub, const subj_list *sub)
{
    sk_status st = sk_buf_appendf(out,
                                  "    {\n"
                                  "      user: \"%s%s\"\n"
                                  "      permissions: {\n",
                                  SK_SPIFFE_PREFIX, name);
    if (st == SK_OK) {
        st = render_list(out, "publish", pub);
    }
    if (st == SK_OK) {
        st = render_list(out, "subscribe", sub);
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(out, "      }\n    }\n");
    }
    return st;
}

static sk_status render_authorization(const sk_system *sys, sk_buf *out)
{
    bool *matrix = NULL;
    subj_list pub = { 0 }, sub = { 0 };
    sk_status st = command_matrix(sys, &matrix);

    if (st == SK_OK) {
        st = sk_buf_append_str(out,
                               "\n"
                               "# One user per certificate (its URI SAN), see docs/operations.md.\n"
                               "authorization {\n"
                               "  users = [\n");
    }
    for (size_t i = 0; i < sys->n_services && st == SK_OK; i++) {
        st = service_perms(sys, i, matrix, &pub, &sub);
        if (st == SK_OK) {
            st = render_user(out, sys->services[i].name, &pub, &sub);
        }
        subj_list_fini(&pub);
        subj_list_fini(&sub);
    }
    if (st == SK_OK) {
        st = cli_perms(sys, &pub, &sub);
    }
    if (st == SK_OK) {
        st = render_user(out, CLI_IDENTITY, &pub, &sub);
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(out, "  ]\n}\n");
    }
    subj_list_fini(&pub);
    subj_list_fini(&sub);
    sk_free(matrix);
    return st;
}

/* ---------------------------------------------------------------- cluster */

static sk_status check_cluster(const cli_nats_conf *conf)
{
    if (conf->cluster_port < 1 || conf->cluster_port > 65535) {
        return SK_FAIL(SK_EINVAL, "nats.conf: cluster_port: expected 0 (no cluster) or 1..65535, "
                                  "got %d",
                       conf->cluster_port);
    }
    sk_status st = check_string("cluster_name", conf->cluster_name);
    if (st != SK_OK) {
        return st;
    }
    if (conf->route_ports == NULL || conf->n_route_ports < 1 ||
        conf->n_route_ports > SK_SYS_BROKER_MAX_NODES) {
        return SK_FAIL(SK_EINVAL, "nats.conf: route_ports: expected 1..%d ports",
                       SK_SYS_BROKER_MAX_NODES);
    }
    for (size_t i = 0; i < conf->n_route_ports; i++) {
        if (conf->route_ports[i] < 1 || conf->route_ports[i] > 65535) {
            return SK_FAIL(SK_EINVAL, "nats.conf: route_ports[%zu]: expected 1..65535, got %d", i,
                           conf->route_ports[i]);
        }
    }
    return SK_OK;
}

/*
 * The cluster block. Routes are TLS both ways: each node presents the
 * nats-server certificate (its EKU has clientAuth too) and requires the
 * peer's, checked against the local CA; verify_and_map turns the peer's
 * subject into the route user, and only the nats-server certificate's
 * subject is allowed, so a service certificate from the same CA cannot
 * join the cluster. Every node lists every other node: a restarted node
 * finds the others whichever is up.
 */
static sk_status render_cluster(const cli_nats_conf *conf, sk_buf *out)
{
    sk_status st = sk_buf_appendf(out,
                                  "\n"
                                  "# One node of a cluster on loopback (broker.nodes in the system "
                                  "file).\n"
                                  "cluster {\n"
                                  "  name: \"%s\"\n"
                                  "  listen: \"127.0.0.1:%d\"\n"
                                  "  no_advertise: true\n"
                                  "  tls {\n"
                                  "    cert_file: \"%s\"\n"
                                  "    key_file: \"%s\"\n"
                                  "    ca_file: \"%s\"\n"
                                  "    verify_and_map: true\n"
                                  "    timeout: %d\n"
                                  "  }\n"
                                  "  authorization {\n"
                                  "    user: \"%s\"\n"
                                  "  }\n"
                                  "  routes: [",
                                  conf->cluster_name, conf->cluster_port, conf->cert_file,
                                  conf->key_file, conf->ca_file, NATS_TLS_TIMEOUT_S,
                                  CLI_NATS_ROUTE_USER);
    bool first = true;
    for (size_t i = 0; i < conf->n_route_ports && st == SK_OK; i++) {
        if (conf->route_ports[i] == conf->cluster_port) {
            continue;
        }
        st = sk_buf_appendf(out, "%s\n    \"nats-route://127.0.0.1:%d\"", first ? "" : ",",
                            conf->route_ports[i]);
        first = false;
    }
    if (st == SK_OK) {
        st = sk_buf_append_str(out, "\n  ]\n}\n");
    }
    return st;
}

sk_status cli_nats_conf_render(const cli_nats_conf *conf, sk_buf *out)
{
    sk_status st = SK_OK;

    if (conf == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_conf_render: %s must not be NULL",
                       conf == NULL ? "conf" : "out");
    }
    if (conf->sys == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_conf_render: conf->sys must not be NULL");
    }
    if (conf->port < 1 || conf->port > 65535) {
        return SK_FAIL(SK_EINVAL, "nats.conf: port: expected 1..65535, got %d", conf->port);
    }
    const struct {
        const char *field;
        const char *value;
    } strings[] = {
        { "server_name", conf->server_name }, { "store_dir", conf->store_dir },
        { "cert_file", conf->cert_file },     { "key_file", conf->key_file },
        { "ca_file", conf->ca_file },
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]) && st == SK_OK; i++) {
        st = check_string(strings[i].field, strings[i].value);
    }
    if (st == SK_OK && (conf->http_port < 0 || conf->http_port > 65535)) {
        st = SK_FAIL(SK_EINVAL, "nats.conf: http_port: expected 0 (none) or 1..65535, got %d",
                     conf->http_port);
    }
    if (st == SK_OK && conf->cluster_port != 0) {
        st = check_cluster(conf);
    }
    if (st != SK_OK) {
        return st;
    }
    /*
     * No "http" (monitoring) port unless asked (clusters: /jsz shows the
     * leaders and whether each replica is current): nothing reads it and it would be one more
     * listener. verify_and_map requires a client certificate (like verify)
     * and makes its URI SAN the user name; a certificate that maps to no
     * user below is refused.
     */
    size_t start = out->len;
    st = sk_buf_appendf(out,
                        "# Written by `skald up` at every start; edits are overwritten.\n"
                        "server_name: \"%s\"\n"
                        "listen: \"127.0.0.1:%d\"\n"
                        "max_payload: %u\n"
                        "write_deadline: \"%s\"\n"
                        "\n"
                        "jetstream {\n"
                        "  store_dir: \"%s\"\n"
                        "  max_memory_store: %s\n"
                        "  max_file_store: %s\n"
                        "}\n"
                        "\n"
                        "tls {\n"
                        "  cert_file: \"%s\"\n"
                        "  key_file: \"%s\"\n"
                        "  ca_file: \"%s\"\n"
                        "  verify_and_map: true\n"
                        "  timeout: %d\n"
                        "}\n",
                        conf->server_name, conf->port, NATS_MAX_PAYLOAD, NATS_WRITE_DEADLINE,
                        conf->store_dir, NATS_MAX_MEMORY_STORE, NATS_MAX_FILE_STORE,
                        conf->cert_file, conf->key_file, conf->ca_file, NATS_TLS_TIMEOUT_S);
    if (st == SK_OK && conf->http_port > 0) {
        st = sk_buf_appendf(out, "\n# Monitoring (/jsz, /healthz), loopback only.\nhttp: \"127.0.0.1:%d\"\n",
                            conf->http_port);
    }
    if (st == SK_OK && conf->cluster_port > 0) {
        st = render_cluster(conf, out);
    }
    if (st == SK_OK) {
        st = render_authorization(conf->sys, out);
    }
    if (st != SK_OK && out->len > start) {
        /* All or nothing: drop a half-rendered config. */
        out->len = start;
        if (out->data != NULL) {
            out->data[start] = '\0';
        }
    }
    return st;
}

sk_status cli_nats_streams_ensure(sk_bus *bus, const sk_system *sys)
{
    sk_registry *reg = NULL;
    sk_kv *kv = NULL;
    sk_status st = SK_OK;

    if (bus == NULL || sys == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_streams_ensure: %s must not be NULL",
                       bus == NULL ? "bus" : "sys");
    }
    st = sk_bus_system_streams_ensure(bus, sys);
    /* The discovery bucket, created by opening the registry as the services do. */
    if (st == SK_OK) {
        st = sk_registry_open(&reg, bus, 0);
        sk_registry_close(reg);
    }
    /* The fault-injection bucket, as services/common opens it (no TTL). */
    if (st == SK_OK) {
        st = sk_kv_open(&kv, bus, SK_FAULT_BUCKET, 0);
        sk_kv_close(kv);
    }
    return st;
}

sk_status cli_nats_url_ports(const char *urls, int *ports, size_t max, size_t *n)
{
    char one[64];

    if (urls == NULL || ports == NULL || n == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_url_ports: urls, ports and n must not be NULL");
    }
    *n = 0;
    for (const char *p = urls;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof(one)) {
            *n = 0;
            return SK_FAIL(SK_EPROTO, "nats.url: expected a comma-separated list of "
                                      "\"tls://127.0.0.1:<port>\", got \"%.64s\"",
                           urls);
        }
        if (*n == max) {
            *n = 0;
            return SK_FAIL(SK_ELIMIT, "nats.url: more than %zu URLs", max);
        }
        memcpy(one, p, len);
        one[len] = '\0';
        sk_status st = cli_nats_url_port(one, &ports[*n]);
        if (st != SK_OK) {
            *n = 0;
            return st;
        }
        (*n)++;
        if (p[len] == '\0') {
            return SK_OK;
        }
        p += len + 1;
    }
}

sk_status cli_nats_url_port(const char *url, int *out)
{
    static const char prefix[] = "tls://127.0.0.1:";

    if (out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_url_port: out must not be NULL");
    }
    *out = 0;
    if (url == NULL || strncmp(url, prefix, sizeof(prefix) - 1) != 0) {
        return SK_FAIL(SK_EPROTO, "nats.url: expected \"%s<port>\", got \"%.64s\"", prefix,
                       url != NULL ? url : "");
    }
    if (cli_port_parse(url + sizeof(prefix) - 1, out) != SK_OK) {
        return SK_FAIL(SK_EPROTO, "nats.url: expected a port 1..65535 after \"%s\", got \"%.64s\"",
                       prefix, url + sizeof(prefix) - 1);
    }
    return SK_OK;
}
