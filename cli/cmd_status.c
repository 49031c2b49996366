/* SPDX-License-Identifier: MIT */
/*
 * `skald status`: one line per service instance of the running system —
 * instance, service, address, pid, health and the state of each endpoint
 * of its upstreams as that instance's outlier detection sees it (healthy,
 * or ejected until a local time). It finds the system through its data dir
 * (DATA/run/nats.url), connects to NATS with the CLI's own identity, reads
 * the discovery registry, and asks every instance at once for GET /readyz
 * and GET /mesh/upstreams (mTLS with the service's identity checked; plain
 * HTTP for the gateway).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define LIST_DEADLINE_MS    1000
#define LIST_STABLE_MS      250
#define PROBE_TIMEOUT_MS    1500
#define UPSTREAMS_PATH      "/mesh/upstreams" /* SVC_MESH_UPSTREAMS_PATH of services/common/svc.h */
#define UPSTREAMS_MAX_BYTES (1024 * 1024)

typedef struct status_opts {
    const char *data;
    const char *config; /* NULL = DATA/run/config.path, when present */
} status_opts;

/* The probes of one instance; the fields below is_gateway are written by the HTTP client thread. */
typedef struct probe {
    const sk_instance *inst;
    bool is_gateway;
    /* GET /readyz */
    int http_status; /* 0 = no answer */
    sk_status st;
    char error[128];
    /* GET /mesh/upstreams */
    json_t *upstreams; /* owned: the answer's "upstreams" object, or NULL (see upstreams_error) */
    char upstreams_error[128];
} probe;

typedef struct probe_set {
    pthread_mutex_t mu; /* protects n_pending and every probe's result */
    pthread_cond_t cv;
    size_t n_pending;
} probe_set;

typedef struct probe_job {
    probe_set *set;
    probe *p;
    bool is_upstreams; /* GET /mesh/upstreams, else GET /readyz */
} probe_job;

static void usage(FILE *f)
{
    fprintf(f, "usage: skald status [--data DIR] [--config FILE]\n"
               "  --data DIR     data dir of the running system (default $SKALD_DATA, else ./var)\n"
               "  --config FILE  system file (default: the one `skald up` runs with)\n");
}

static int parse_args(int argc, char **argv, status_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if ((m = cli_flag(argc, argv, &i, "--data", &v)) != 0) {
            if (m < 0) {
                cli_errorf("status", "--data: missing or empty value");
                return CLI_EXIT_USAGE;
            }
            o->data = v;
        } else if ((m = cli_flag(argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0) {
                cli_errorf("status", "--config: missing or empty value");
                return CLI_EXIT_USAGE;
            }
            o->config = v;
        } else {
            cli_errorf("status", "unknown argument \"%.64s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- discovery */

/*
 * The registry's watcher fills in the bucket's entries asynchronously:
 * poll until the count has not changed for LIST_STABLE_MS (and something
 * arrived), or LIST_DEADLINE_MS passed.
 */
static sk_status list_instances(sk_registry *reg, sk_instance **out, size_t *n)
{
    int64_t start = sk_time_mono_ms(), changed = start;
    size_t last = (size_t)-1;

    *out = NULL;
    *n = 0;
    for (;;) {
        sk_instance *list = NULL;
        size_t count = 0;
        sk_status st = sk_registry_list(reg, &list, &count);
        if (st != SK_OK) {
            sk_registry_list_free(*out, *n);
            *out = NULL;
            *n = 0;
            return st;
        }
        sk_registry_list_free(*out, *n);
        *out = list;
        *n = count;
        int64_t now = sk_time_mono_ms();
        if (count != last) {
            last = count;
            changed = now;
        }
        if (now - start >= LIST_DEADLINE_MS || (count > 0 && now - changed >= LIST_STABLE_MS)) {
            return SK_OK;
        }
        cli_sleep_ms(25);
    }
}

/* ---------------------------------------------------------------- probes */

static void probe_finish(probe_set *set)
{
    pthread_mutex_lock(&set->mu);
    set->n_pending--;
    pthread_cond_signal(&set->cv);
    pthread_mutex_unlock(&set->mu);
}

/* Client thread: keep the "upstreams" object of a 200 answer, or say why there is none. */
static void upstreams_done(probe_job *job, sk_status st, const sk_http_response *resp)
{
    json_t *root = NULL;
    json_t *ups = NULL;
    json_error_t jerr;
    char error[128] = "";

    if (st != SK_OK) {
        snprintf(error, sizeof(error), "%s", sk_status_text(st));
    } else if (resp == NULL || resp->status != 200) {
        snprintf(error, sizeof(error), "HTTP %d", resp != NULL ? resp->status : 0);
    } else if (resp->body.len > UPSTREAMS_MAX_BYTES) {
        snprintf(error, sizeof(error), "answer over %d bytes", UPSTREAMS_MAX_BYTES);
    } else {
        root = json_loadb((const char *)resp->body.ptr, resp->body.len, 0, &jerr);
        ups = json_object_get(root, "upstreams");
        if (root == NULL) {
            snprintf(error, sizeof(error), "malformed JSON at %d:%d: %.60s", jerr.line, jerr.column,
                     jerr.text);
        } else if (!json_is_object(ups)) {
            snprintf(error, sizeof(error), "no \"upstreams\" object in the answer");
        } else {
            json_incref(ups);
        }
    }
    pthread_mutex_lock(&job->set->mu);
    if (error[0] != '\0') {
        snprintf(job->p->upstreams_error, sizeof(job->p->upstreams_error), "%s", error);
    } else {
        job->p->upstreams = ups;
    }
    pthread_mutex_unlock(&job->set->mu);
    json_decref(root);
    probe_finish(job->set);
}

static void probe_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    probe_job *job = ctx;
    if (job->is_upstreams) {
        upstreams_done(job, st, resp);
        return;
    }
    pthread_mutex_lock(&job->set->mu);
    job->p->st = st;
    job->p->http_status = st == SK_OK && resp != NULL ? resp->status : 0;
    if (st != SK_OK) {
        snprintf(job->p->error, sizeof(job->p->error), "%s", sk_status_text(st));
    }
    pthread_mutex_unlock(&job->set->mu);
    probe_finish(job->set);
}

/* "127.0.0.1:41234" → 41234 when the host is the loopback address, else 0. */
static int loopback_port(const char *address)
{
    static const char prefix[] = "127.0.0.1:";
    int port = 0;
    if (strncmp(address, prefix, sizeof(prefix) - 1) != 0 ||
        cli_port_parse(address + sizeof(prefix) - 1, &port) != SK_OK) {
        sk_error_clear();
        return 0;
    }
    return port;
}

/*
 * Start GET /mesh/upstreams of @p p on the client's thread: over mTLS with
 * the service's identity checked, or plain HTTP for the gateway. The answer
 * lands in p->upstreams (or p->upstreams_error).
 */
static void upstreams_send(sk_http_client *client, probe_set *set, probe_job *job, probe *p)
{
    char url[SK_DISCOVERY_MAX_ADDRESS + 32];
    snprintf(url, sizeof(url), "%s://%s%s", p->is_gateway ? "http" : "https", p->inst->address,
             UPSTREAMS_PATH);
    sk_http_request req = {
        .method = "GET",
        .url = url,
        .timeout_ms = PROBE_TIMEOUT_MS,
        .expect_service = p->is_gateway ? NULL : p->inst->service,
    };
    if (job == NULL || client == NULL) {
        snprintf(p->upstreams_error, sizeof(p->upstreams_error), "%s",
                 client == NULL ? "no HTTP client" : "out of memory");
        return;
    }
    job->set = set;
    job->p = p;
    job->is_upstreams = true;
    pthread_mutex_lock(&set->mu);
    set->n_pending++;
    pthread_mutex_unlock(&set->mu);
    if (sk_http_client_send(client, &req, probe_done, job) != SK_OK) {
        snprintf(p->upstreams_error, sizeof(p->upstreams_error), "%s", sk_error_message());
        probe_finish(set);
    }
}

/*
 * Probe every instance at once: /readyz of the gateway over plain HTTP from
 * here, everything else on the client's thread (the services over mTLS,
 * with their identity checked).
 */
static void probe_all(sk_http_client *client, probe *probes, size_t n)
{
    probe_set set = { .n_pending = 0 };
    /* jobs[i]: /readyz of probes[i]; jobs[n + i]: its /mesh/upstreams. */
    probe_job *jobs = sk_calloc(n > 0 ? 2 * n : 1, sizeof(*jobs));

    pthread_mutex_init(&set.mu, NULL);
    pthread_cond_init(&set.cv, NULL);
    for (size_t i = 0; i < n; i++) {
        upstreams_send(client, &set, jobs != NULL ? &jobs[n + i] : NULL, &probes[i]);
    }
    for (size_t i = 0; i < n; i++) {
        probe *p = &probes[i];
        if (p->is_gateway) {
            int port = loopback_port(p->inst->address);
            p->st = port > 0
                        ? cli_http_get_status(port, "/readyz", PROBE_TIMEOUT_MS, &p->http_status)
                        : SK_FAIL(SK_EPROTO, "address is not 127.0.0.1:<port>");
            if (p->st != SK_OK) {
                snprintf(p->error, sizeof(p->error), "%s", sk_error_message());
            }
            continue;
        }
        char url[SK_DISCOVERY_MAX_ADDRESS + 32];
        snprintf(url, sizeof(url), "https://%s/readyz", p->inst->address);
        sk_http_request req = {
            .method = "GET",
            .url = url,
            .timeout_ms = PROBE_TIMEOUT_MS,
            .expect_service = p->inst->service,
        };
        if (jobs == NULL || client == NULL) {
            p->st = SK_ENOMEM;
            snprintf(p->error, sizeof(p->error), "%s",
                     client == NULL ? "no HTTP client" : "out of memory");
            continue;
        }
        jobs[i].set = &set;
        jobs[i].p = p;
        pthread_mutex_lock(&set.mu);
        set.n_pending++;
        pthread_mutex_unlock(&set.mu);
        /* Only a failed send writes p->st here: the callback may already be running. */
        sk_status sent = sk_http_client_send(client, &req, probe_done, &jobs[i]);
        if (sent != SK_OK) {
            pthread_mutex_lock(&set.mu);
            p->st = sent;
            snprintf(p->error, sizeof(p->error), "%s", sk_error_message());
            pthread_mutex_unlock(&set.mu);
            probe_finish(&set);
        }
    }
    pthread_mutex_lock(&set.mu);
    while (set.n_pending > 0) {
        pthread_cond_wait(&set.cv, &set.mu);
    }
    pthread_mutex_unlock(&set.mu);
    pthread_cond_destroy(&set.cv);
    pthread_mutex_destroy(&set.mu);
    sk_free(jobs);
}

/* ---------------------------------------------------------------- output */

/* Append to out[0..out_len) at *used; silently truncates (the table is for people). */
static void append(char *out, size_t out_len, size_t *used, const char *fmt, ...) SK_PRINTF(4, 5);

static void append(char *out, size_t out_len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    if (*used >= out_len) {
        return;
    }
    va_start(ap, fmt);
    int w = vsnprintf(out + *used, out_len - *used, fmt, ap);
    va_end(ap);
    if (w > 0) {
        *used = *used + (size_t)w < out_len ? *used + (size_t)w : out_len - 1;
    }
}

/* "127.0.0.1:4711 healthy", "127.0.0.1:4711 ejected until 02:31:07" (local time). */
static void format_endpoint(const json_t *ep, char *out, size_t out_len, size_t *used)
{
    const char *address = json_string_value(json_object_get(ep, "address"));
    const char *state = json_string_value(json_object_get(ep, "state"));
    json_int_t until_ms = json_integer_value(json_object_get(ep, "ejected_until_ms"));

    append(out, out_len, used, "%.64s %.32s", address != NULL ? address : "?",
           state != NULL ? state : "?");
    if (state != NULL && strcmp(state, "ejected") == 0 && until_ms > 0) {
        time_t t = (time_t)(until_ms / 1000);
        struct tm tm;
        char hms[16];
        if (localtime_r(&t, &tm) != NULL && strftime(hms, sizeof(hms), "%H:%M:%S", &tm) > 0) {
            append(out, out_len, used, " until %s", hms);
        }
    }
}

/* "psp: 127.0.0.1:4711 healthy, 127.0.0.1:4712 ejected until 02:31:07" as @p p reported it. */
static void format_upstream(const probe *p, const char *name, char *out, size_t out_len)
{
    const json_t *eps = json_object_get(p->upstreams, name);
    size_t used = 0;

    out[0] = '\0';
    append(out, out_len, &used, "%s: ", name);
    if (!json_is_array(eps)) {
        append(out, out_len, &used, "not reported");
        return;
    }
    if (json_array_size(eps) == 0) {
        append(out, out_len, &used, "no endpoints");
        return;
    }
    for (size_t i = 0; i < json_array_size(eps); i++) {
        if (i > 0) {
            append(out, out_len, &used, ", ");
        }
        format_endpoint(json_array_get(eps, i), out, out_len, &used);
    }
}

/*
 * Print the UPSTREAMS cell of @p p: one upstream per line, the first on the
 * row itself (already indented), the others indented by @p indent, so the
 * table stays readable with several upstreams of several endpoints. The
 * upstreams are those of the system file, else whatever the instance
 * reported.
 */
static void print_upstreams(const sk_system *sys, const probe *p, int indent)
{
    const sk_sys_service *svc = sys != NULL ? sk_system_service_find(sys, p->inst->service) : NULL;
    char line[1024];
    size_t n_printed = 0;

    if (p->upstreams == NULL) {
        if (svc != NULL && svc->n_upstreams == 0) {
            printf("-\n");
        } else {
            printf("unknown (%s: %s)\n", UPSTREAMS_PATH, p->upstreams_error);
        }
        return;
    }
    if (svc != NULL) {
        for (size_t i = 0; i < svc->n_upstreams; i++) {
            format_upstream(p, svc->upstreams[i].service, line, sizeof(line));
            printf("%*s%s\n", n_printed++ > 0 ? indent : 0, "", line);
        }
    } else {
        const char *name;
        const json_t *eps;
        json_object_foreach ((json_t *)p->upstreams, name, eps) {
            (void)eps;
            format_upstream(p, name, line, sizeof(line));
            printf("%*s%s\n", n_printed++ > 0 ? indent : 0, "", line);
        }
    }
    if (n_printed == 0) {
        printf("-\n");
    }
}

static void format_health(const probe *p, char *out, size_t out_len)
{
    if (!p->inst->is_ready) {
        snprintf(out, out_len, "not ready (registry)");
    } else if (p->st != SK_OK) {
        snprintf(out, out_len, "not ready (readyz: %s)", p->error);
    } else if (p->http_status != 200) {
        snprintf(out, out_len, "not ready (readyz %d)", p->http_status);
    } else {
        snprintf(out, out_len, "ready");
    }
}

static int width(int current, const char *s)
{
    int n = (int)strlen(s);
    return n > current ? n : current;
}

static void print_table(const sk_system *sys, const probe *probes, size_t n)
{
    int w_inst = (int)strlen("INSTANCE"), w_svc = (int)strlen("SERVICE"),
        w_addr = (int)strlen("ADDRESS"), w_health = (int)strlen("HEALTH");
    char health[160];

    for (size_t i = 0; i < n; i++) {
        format_health(&probes[i], health, sizeof(health));
        w_inst = width(w_inst, probes[i].inst->instance);
        w_svc = width(w_svc, probes[i].inst->service);
        w_addr = width(w_addr, probes[i].inst->address);
        w_health = width(w_health, health);
    }
    printf("%-*s  %-*s  %-*s  %-7s  %-*s  %s\n", w_inst, "INSTANCE", w_svc, "SERVICE", w_addr,
           "ADDRESS", "PID", w_health, "HEALTH", "UPSTREAMS");
    /* Where the UPSTREAMS column starts: the row's five columns and their separators. */
    int indent = w_inst + 2 + w_svc + 2 + w_addr + 2 + 7 + 2 + w_health + 2;
    for (size_t i = 0; i < n; i++) {
        const sk_instance *inst = probes[i].inst;
        format_health(&probes[i], health, sizeof(health));
        printf("%-*s  %-*s  %-*s  %-7d  %-*s  ", w_inst, inst->instance, w_svc, inst->service,
               w_addr, inst->address, inst->pid, w_health, health);
        print_upstreams(sys, &probes[i], indent);
    }
    /* Services of the system file with no live instance at all. */
    for (size_t s = 0; sys != NULL && s < sys->n_services; s++) {
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++) {
            seen = strcmp(probes[i].inst->service, sys->services[s].name) == 0;
        }
        if (!seen) {
            printf("%-*s  %-*s  %-*s  %-7s  %-*s  %s\n", w_inst, "-", w_svc, sys->services[s].name,
                   w_addr, "-", "-", w_health, "down (no instance registered)", "-");
        }
    }
}

/* ---------------------------------------------------------------- command */

/* The system file: --config, else the one `skald up` recorded; NULL (and no error) when none. */
static sk_system *load_system(const status_opts *o, const char *data)
{
    sk_system *sys = NULL;
    char *recorded = NULL;
    char *path_file = sk_asprintf("%s/run/config.path", data);
    const char *path = o->config;

    if (path == NULL && path_file != NULL &&
        cli_file_read_line(path_file, 8192, &recorded) == SK_OK && recorded[0] != '\0') {
        path = recorded;
    }
    if (path != NULL && sk_system_load(path, &sys) != SK_OK) {
        /* Status still works without it: the upstream names are all that is lost. */
        fprintf(stderr, "skald: status: %s (showing discovery only)\n", sk_error_message());
        sys = NULL;
    }
    sk_error_clear();
    sk_free(recorded);
    sk_free(path_file);
    return sys;
}

static bool is_gateway_instance(const sk_system *sys, const sk_instance *inst)
{
    const sk_sys_service *svc = sys != NULL ? sk_system_service_find(sys, inst->service) : NULL;
    return svc != NULL ? svc->is_gateway : strcmp(inst->service, "gateway") == 0;
}

int cli_cmd_status(int argc, char **argv)
{
    status_opts o;
    int rc = parse_args(argc, argv, &o);
    cli_conn conn = { 0 };
    sk_registry *reg = NULL;
    sk_http_client *client = NULL;
    sk_system *sys = NULL;
    sk_instance *list = NULL;
    size_t n = 0;
    probe *probes = NULL;

    if (rc >= 0) {
        return rc;
    }
    /* The bus logs reconnect warnings; here the outcome is reported once, below. */
    if (getenv("SK_LOG_LEVEL") == NULL) {
        sk_log_set_level(SK_LOG_LEVEL_ERROR);
    }
    const char *data = cli_data_dir_choose(o.data);
    rc = cli_conn_open(&conn, data, "status");
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = CLI_EXIT_FAILURE;
    sk_bus *bus = conn.bus;
    if (sk_registry_open(&reg, bus, 0) != SK_OK || list_instances(reg, &list, &n) != SK_OK) {
        cli_errorf("status", "reading the discovery registry: %s", sk_error_message());
        goto out;
    }
    sys = load_system(&o, data);
    if (n > 0 && sk_http_client_create(&client, &conn.tls) != SK_OK) {
        /* Without a client the services show "not ready (readyz: no HTTP client)". */
        fprintf(stderr, "skald: status: HTTP client: %s\n", sk_error_message());
        client = NULL;
    }
    probes = sk_calloc(n > 0 ? n : 1, sizeof(*probes));
    if (probes == NULL) {
        cli_errorf("status", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        probes[i].inst = &list[i];
        probes[i].is_gateway = is_gateway_instance(sys, &list[i]);
    }
    probe_all(client, probes, n);
    if (n == 0) {
        printf("no instance registered in discovery\n");
    }
    print_table(sys, probes, n);
    rc = CLI_EXIT_OK;
out:
    sk_http_client_destroy(client);
    for (size_t i = 0; probes != NULL && i < n; i++) {
        json_decref(probes[i].upstreams);
    }
    sk_free(probes);
    sk_registry_list_free(list, n);
    sk_registry_close(reg);
    cli_conn_close(&conn);
    sk_system_destroy(sys);
    return rc;
}
