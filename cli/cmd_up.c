/* SPDX-License-Identifier: MIT */
/*
 * `skald up`: runs the whole system on this machine. Prepares the data dir
 * (PKI, nats.conf, nats.url), starts nats-server (or the nodes of a
 * cluster, broker.nodes in the system file) and every service instance
 * of the system file as direct children, waits for the gateway's /readyz,
 * then supervises until SIGTERM/SIGINT and stops everything in order:
 * gateway, services, nats-server. Only processes it started are signalled,
 * always by PID.
 */
/* realpath is an XSI extension. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define NATS_START_DEADLINE_MS 10000
#define STREAMS_DEADLINE_MS    15000
/* A new cluster first elects its JetStream meta leader (MEASUREMENTS.md: 5-12 s). */
#define CLUSTER_STREAMS_DEADLINE_MS 45000
#define READY_DEADLINE_MS      60000
#define READY_PROBE_TIMEOUT_MS 1000
/*
 * Poll steps while starting: short, because they add to `skald up`'s time
 * to ready (a loopback GET of /readyz costs well under a millisecond).
 */
#define START_POLL_MS 10

typedef struct up_opts {
    const char *config; /* as given */
    const char *data;   /* as given */
    int port_flag;      /* 0 = not given */
} up_opts;

/* Everything `skald up` holds; freed by up_fini. */
typedef struct up_state {
    sk_system *sys;
    char *data_dir;    /* absolute */
    char *config_path; /* absolute */
    char *bin_dir;
    char *nats_bin;
    char *run_dir, *pki_dir, *db_dir, *nats_dir, *log_dir;
    int gateway_port;
    /* One entry per nats-server node; a cluster when n_nodes > 1. */
    size_t n_nodes;
    int nats_ports[SK_SYS_BROKER_MAX_NODES];
    int cluster_ports[SK_SYS_BROKER_MAX_NODES];
    int http_ports[SK_SYS_BROKER_MAX_NODES];
    char nats_urls[SK_SYS_BROKER_MAX_NODES * 32]; /* "tls://127.0.0.1:P[,...]" */
    cli_pidfile pid;
    cli_supervisor *sup;
    int64_t t0_ms;
} up_state;

static void usage(FILE *f)
{
    fprintf(f, "usage: skald up [--config FILE] [--data DIR] [--port N]\n"
               "  --config FILE  system file (default skald.yaml)\n"
               "  --data DIR     data dir (default $SKALD_DATA, else ./var)\n"
               "  --port N       gateway port (default $SKALD_GATEWAY_PORT, else the system "
               "file's gateway.port)\n");
}

/* @return -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, up_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->config = CLI_DEFAULT_CONFIG;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if ((m = cli_flag(argc, argv, &i, "--config", &v)) != 0) {
            if (m < 0) {
                cli_errorf("up", "--config: missing or empty value");
                return CLI_EXIT_USAGE;
            }
            o->config = v;
        } else if ((m = cli_flag(argc, argv, &i, "--data", &v)) != 0) {
            if (m < 0) {
                cli_errorf("up", "--data: missing or empty value");
                return CLI_EXIT_USAGE;
            }
            o->data = v;
        } else if ((m = cli_flag(argc, argv, &i, "--port", &v)) != 0) {
            if (m < 0 || cli_port_parse(v, &o->port_flag) != SK_OK) {
                cli_errorf("up", "--port: expected a port 1..65535, got \"%.20s\"",
                           v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
        } else {
            cli_errorf("up", "unknown argument \"%.64s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    return -1;
}

static void up_fini(up_state *u)
{
    cli_supervisor_destroy(u->sup);
    cli_pidfile_release(&u->pid);
    sk_system_destroy(u->sys);
    sk_free(u->data_dir);
    sk_free(u->config_path);
    sk_free(u->bin_dir);
    sk_free(u->nats_bin);
    sk_free(u->run_dir);
    sk_free(u->pki_dir);
    sk_free(u->db_dir);
    sk_free(u->nats_dir);
    sk_free(u->log_dir);
}

static sk_status abs_path(const char *path, char **out)
{
    char buf[PATH_MAX];
    if (realpath(path, buf) == NULL) {
        *out = NULL;
        return SK_FAIL(errno == ENOENT ? SK_ENOTFOUND : SK_EIO, "%s: %s", path, strerror(errno));
    }
    *out = sk_strdup(buf);
    return *out != NULL ? SK_OK : SK_FAIL(SK_ENOMEM, "copying a path");
}

/* DATA and its subdirectories, all 0700: the PKI keys and databases live there. */
static sk_status prepare_dirs(up_state *u, const char *data)
{
    sk_status st = cli_mkdir(data, 0700);
    if (st == SK_OK) {
        st = abs_path(data, &u->data_dir);
    }
    if (st != SK_OK) {
        return st;
    }
    u->run_dir = sk_asprintf("%s/run", u->data_dir);
    u->pki_dir = sk_asprintf("%s/pki", u->data_dir);
    u->db_dir = sk_asprintf("%s/db", u->data_dir);
    u->nats_dir = sk_asprintf("%s/nats", u->data_dir);
    u->log_dir = sk_asprintf("%s/run/logs", u->data_dir);
    if (u->run_dir == NULL || u->pki_dir == NULL || u->db_dir == NULL || u->nats_dir == NULL ||
        u->log_dir == NULL) {
        return SK_FAIL(SK_ENOMEM, "building data dir paths");
    }
    const char *dirs[] = { u->run_dir, u->pki_dir, u->db_dir, u->nats_dir, u->log_dir };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && st == SK_OK; i++) {
        st = cli_mkdir(dirs[i], 0700);
    }
    return st;
}

/* Every binary must exist before anything starts: a missing one is a build problem. */
static sk_status check_binaries(up_state *u)
{
    sk_status st = cli_self_dir(&u->bin_dir);
    if (st != SK_OK) {
        return st;
    }
    for (size_t i = 0; i < u->sys->n_services; i++) {
        char *bin = sk_asprintf("%s/skald-%s", u->bin_dir, u->sys->services[i].name);
        if (bin == NULL) {
            return SK_FAIL(SK_ENOMEM, "building binary paths");
        }
        bool ok = access(bin, X_OK) == 0;
        if (!ok) {
            st = SK_FAIL(SK_ENOTFOUND, "service %s: no executable %s (run `make build`)",
                         u->sys->services[i].name, bin);
        }
        sk_free(bin);
        if (!ok) {
            return st;
        }
    }
    st = cli_program_find("nats-server", &u->nats_bin);
    return st == SK_OK ? SK_OK : SK_WRAP(st, "nats-server (Debian package nats-server)");
}

static bool port_taken(const up_state *u, int port, size_t n_client)
{
    for (size_t i = 0; i < u->n_nodes; i++) {
        if ((i < n_client && u->nats_ports[i] == port) || u->cluster_ports[i] == port ||
            u->http_ports[i] == port) {
            return true;
        }
    }
    return false;
}

/* A free loopback port that no other listener of ours was given. */
static sk_status pick_port(up_state *u, size_t n_client, int *out)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        int port = 0;
        if (cli_port_is_free(0, &port) && !port_taken(u, port, n_client)) {
            *out = port;
            return SK_OK;
        }
    }
    return SK_FAIL(SK_EIO, "no free loopback port for nats-server");
}

/*
 * Client ports: the previous ones (nats.url) when they are all still free
 * and as many as the nodes (clients keep their URLs), else free ones.
 * Cluster and monitoring ports are chosen afresh at every start: only the
 * nodes themselves use them, and each node's config lists them all. The
 * supervisor restarts a node with the same config, so the ports hold for
 * the life of this `skald up`.
 */
static sk_status choose_nats_ports(up_state *u, const char *url_path)
{
    char *prev = NULL;
    size_t n_prev = 0;
    int ports[SK_SYS_BROKER_MAX_NODES];
    bool reuse = cli_file_read_line(url_path, 512, &prev) == SK_OK &&
                 cli_nats_url_ports(prev, ports, SK_SYS_BROKER_MAX_NODES, &n_prev) == SK_OK &&
                 n_prev == u->n_nodes;
    sk_status st = SK_OK;

    sk_free(prev);
    sk_error_clear(); /* a missing or stale nats.url is normal */
    for (size_t i = 0; reuse && i < n_prev; i++) {
        reuse = cli_port_is_free(ports[i], NULL);
    }
    memset(u->nats_ports, 0, sizeof(u->nats_ports));
    memset(u->cluster_ports, 0, sizeof(u->cluster_ports));
    memset(u->http_ports, 0, sizeof(u->http_ports));
    for (size_t i = 0; i < u->n_nodes && st == SK_OK; i++) {
        if (reuse) {
            u->nats_ports[i] = ports[i];
        } else {
            st = pick_port(u, i, &u->nats_ports[i]);
        }
    }
    for (size_t i = 0; u->n_nodes > 1 && i < u->n_nodes && st == SK_OK; i++) {
        st = pick_port(u, u->n_nodes, &u->cluster_ports[i]);
        if (st == SK_OK) {
            st = pick_port(u, u->n_nodes, &u->http_ports[i]);
        }
    }
    size_t len = 0;
    u->nats_urls[0] = '\0';
    for (size_t i = 0; i < u->n_nodes && st == SK_OK; i++) {
        int n = snprintf(u->nats_urls + len, sizeof(u->nats_urls) - len, "%stls://127.0.0.1:%d",
                         i > 0 ? "," : "", u->nats_ports[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    return st;
}

/* The supervisor's name of node @p i: "nats-server" alone, "nats-1".. in a cluster. */
static void node_name(const up_state *u, size_t i, char *out, size_t out_len)
{
    if (u->n_nodes == 1) {
        snprintf(out, out_len, "nats-server");
    } else {
        snprintf(out, out_len, "nats-%zu", i + 1);
    }
}

/* DATA/run/nats.conf alone, DATA/run/nats-<i>.conf in a cluster. Owned. */
static char *node_conf_path(const up_state *u, size_t i)
{
    return u->n_nodes == 1 ? sk_asprintf("%s/nats.conf", u->run_dir)
                           : sk_asprintf("%s/nats-%zu.conf", u->run_dir, i + 1);
}

/* Render and write the config of every node; a cluster node stores in DATA/nats/node-<i>. */
static sk_status write_node_confs(up_state *u, const sk_tls_files *tls)
{
    char cluster_name[SK_MESH_MAX_SERVICE + 16], server_name[SK_MESH_MAX_SERVICE + 16];
    sk_status st = SK_OK;

    snprintf(cluster_name, sizeof(cluster_name), "skald-%s", u->sys->name);
    for (size_t i = 0; i < u->n_nodes && st == SK_OK; i++) {
        sk_buf conf;
        char *path = node_conf_path(u, i);
        char *store = u->n_nodes == 1 ? sk_strdup(u->nats_dir)
                                      : sk_asprintf("%s/node-%zu", u->nats_dir, i + 1);
        sk_buf_init(&conf, 64 * 1024);
        if (path == NULL || store == NULL) {
            st = SK_FAIL(SK_ENOMEM, "building nats-server paths");
        }
        if (st == SK_OK && u->n_nodes > 1) {
            st = cli_mkdir(store, 0700);
        }
        /* The single server keeps its historical name; a node's name says which it is. */
        if (u->n_nodes == 1) {
            snprintf(server_name, sizeof(server_name), "skald");
        } else {
            snprintf(server_name, sizeof(server_name), "skald-%zu", i + 1);
        }
        cli_nats_conf nc = {
            .port = u->nats_ports[i],
            .server_name = server_name,
            .store_dir = store,
            .cert_file = tls->cert_file,
            .key_file = tls->key_file,
            .ca_file = tls->ca_file,
            .sys = u->sys,
            .http_port = u->http_ports[i],
            .cluster_port = u->cluster_ports[i],
            .cluster_name = cluster_name,
            .route_ports = u->cluster_ports,
            .n_route_ports = u->n_nodes,
        };
        if (st == SK_OK) {
            st = cli_nats_conf_render(&nc, &conf);
        }
        if (st == SK_OK) {
            st = cli_file_write(path, conf.data, 0600);
        }
        sk_buf_fini(&conf);
        sk_free(path);
        sk_free(store);
    }
    return st;
}

/*
 * DATA/run/nats.nodes: one line per node, "NAME CLIENT_PORT CLUSTER_PORT
 * HTTP_PORT" (0 when the node has none), for operators and tests.
 */
static sk_status write_nodes_file(up_state *u)
{
    char text[SK_SYS_BROKER_MAX_NODES * 64], name[32];
    size_t len = 0;
    char *path = sk_asprintf("%s/nats.nodes", u->run_dir);

    if (path == NULL) {
        return SK_FAIL(SK_ENOMEM, "nats.nodes path");
    }
    text[0] = '\0';
    for (size_t i = 0; i < u->n_nodes; i++) {
        node_name(u, i, name, sizeof(name));
        int n = snprintf(text + len, sizeof(text) - len, "%s %d %d %d\n", name, u->nats_ports[i],
                         u->cluster_ports[i], u->http_ports[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    sk_status st = cli_file_write(path, text, 0600);
    sk_free(path);
    return st;
}

static sk_status write_run_files(up_state *u)
{
    sk_status st = SK_OK;
    sk_tls_files tls = { 0 };
    char *url_path = sk_asprintf("%s/nats.url", u->run_dir);
    char *cfg_path = sk_asprintf("%s/config.path", u->run_dir);
    char line[PATH_MAX + 2];

    if (url_path == NULL || cfg_path == NULL) {
        st = SK_FAIL(SK_ENOMEM, "building run file paths");
        goto out;
    }
    st = choose_nats_ports(u, url_path);
    if (st == SK_OK) {
        st = sk_tls_files_init(&tls, u->pki_dir, CLI_NATS_IDENTITY);
    }
    if (st == SK_OK) {
        st = write_node_confs(u, &tls);
    }
    if (st == SK_OK) {
        st = write_nodes_file(u);
    }
    /* Services and CLI commands get every node: nats.c fails over between them. */
    snprintf(line, sizeof(line), "%s\n", u->nats_urls);
    if (st == SK_OK) {
        st = cli_file_write(url_path, line, 0600);
    }
    /* `skald status` and later commands find the system file of the running system here. */
    snprintf(line, sizeof(line), "%s\n", u->config_path);
    if (st == SK_OK) {
        st = cli_file_write(cfg_path, line, 0600);
    }
    if (st == SK_OK && setenv("SKALD_NATS_URL", u->nats_urls, 1) != 0) {
        st = SK_FAIL(SK_EIO, "setenv SKALD_NATS_URL: %s", strerror(errno));
    }
out:
    sk_tls_files_fini(&tls);
    sk_free(url_path);
    sk_free(cfg_path);
    return st;
}

static sk_status
spawn_logged(up_state *u, const char *name, cli_stop_phase phase, const char *const *argv)
{
    char *log = sk_asprintf("%s/%s.log", u->log_dir, name);
    if (log == NULL) {
        return SK_FAIL(SK_ENOMEM, "building the log path of %s", name);
    }
    sk_status st = cli_supervisor_spawn(u->sup, name, phase, argv, log);
    sk_free(log);
    return st;
}

/* Start every node (the supervisor restarts each one that dies), then wait for their ports. */
static sk_status start_nats(up_state *u)
{
    char name[32];
    sk_status st = SK_OK;

    for (size_t i = 0; i < u->n_nodes && st == SK_OK; i++) {
        char *conf = node_conf_path(u, i);
        if (conf == NULL) {
            return SK_FAIL(SK_ENOMEM, "nats.conf path");
        }
        const char *argv[] = { u->nats_bin, "-c", conf, NULL };
        node_name(u, i, name, sizeof(name));
        st = spawn_logged(u, name, CLI_PHASE_BROKER, argv);
        sk_free(conf);
    }
    int64_t deadline = sk_time_mono_ms() + NATS_START_DEADLINE_MS;
    for (size_t i = 0; i < u->n_nodes && st == SK_OK; i++) {
        node_name(u, i, name, sizeof(name));
        while (!cli_port_accepts(u->nats_ports[i])) {
            if (cli_supervisor_is_stopping(u->sup)) {
                return SK_FAIL(SK_ECANCELED, "stopped while nats-server was starting");
            }
            if (sk_time_mono_ms() >= deadline) {
                return SK_FAIL(SK_ETIMEDOUT,
                               "%s did not accept connections on 127.0.0.1:%d within %d ms "
                               "(see %s/%s.log)",
                               name, u->nats_ports[i], NATS_START_DEADLINE_MS, u->log_dir, name);
            }
            cli_supervisor_poll(u->sup, 20);
        }
    }
    return st;
}

/*
 * Create every stream and the discovery bucket as the CLI identity before
 * any service starts: the services' NATS users may look streams up but not
 * create them (docs/operations.md). JetStream may still be starting when
 * the port accepts, so failures are retried until the deadline.
 */
static sk_status create_streams(up_state *u)
{
    sk_tls_files tls = { 0 };
    sk_bus *bus = NULL;
    sk_status st = sk_tls_files_init(&tls, u->pki_dir, CLI_IDENTITY);

    if (st != SK_OK) {
        return st;
    }
    sk_bus_config bc = {
        .servers = u->nats_urls,
        .ca_file = tls.ca_file,
        .cert_file = tls.cert_file,
        .key_file = tls.key_file,
        .name = "skald-up",
        .inbox_prefix = CLI_NATS_INBOX,
        .replicas = u->sys->broker.replicas,
    };
    st = sk_bus_open(&bus, &bc);
    int64_t deadline =
        sk_time_mono_ms() + (u->n_nodes > 1 ? CLUSTER_STREAMS_DEADLINE_MS : STREAMS_DEADLINE_MS);
    while (st == SK_OK) {
        if (sk_bus_is_connected(bus)) {
            st = cli_nats_streams_ensure(bus, u->sys);
            if (st == SK_OK) {
                break;
            }
        } else {
            st = SK_FAIL(SK_EUNAVAILABLE, "not connected to nats-server");
        }
        if (cli_supervisor_is_stopping(u->sup)) {
            st = SK_FAIL(SK_ECANCELED, "stopped while creating streams");
            break;
        }
        if (sk_time_mono_ms() >= deadline) {
            st = SK_WRAP(st, "creating streams (see %s/nats-*.log)", u->log_dir);
            break;
        }
        st = SK_OK;
        cli_supervisor_poll(u->sup, START_POLL_MS);
    }
    sk_bus_close(bus);
    sk_tls_files_fini(&tls);
    return st;
}

static sk_status start_instance(up_state *u, const sk_sys_service *svc, int k)
{
    char instance[SK_MESH_MAX_SERVICE + 16], port[16];
    char *bin = sk_asprintf("%s/skald-%s", u->bin_dir, svc->name);
    if (bin == NULL) {
        return SK_FAIL(SK_ENOMEM, "building the binary path of %s", svc->name);
    }
    snprintf(instance, sizeof(instance), "%s-%d", svc->name, k);
    snprintf(port, sizeof(port), "%d", u->gateway_port);
    /*
     * The service name is a word of the command line (CONTRACT.md: `ps` shows it).
     * Only the gateway gets --port: for the others the NULL ends argv there.
     */
    const char *argv[] = { bin,
                           "--service",
                           svc->name,
                           "--instance",
                           instance,
                           "--config",
                           u->config_path,
                           "--data",
                           u->data_dir,
                           svc->is_gateway ? "--port" : NULL,
                           port,
                           NULL };
    sk_status st =
        spawn_logged(u, instance, svc->is_gateway ? CLI_PHASE_GATEWAY : CLI_PHASE_SERVICE, argv);
    sk_free(bin);
    return st;
}

static sk_status start_services(up_state *u, size_t *n_started)
{
    *n_started = 0;
    for (size_t i = 0; i < u->sys->n_services; i++) {
        const sk_sys_service *svc = &u->sys->services[i];
        int n = svc->instances > 0 ? svc->instances : 1;
        if (svc->is_gateway && n > 1) {
            /* Every gateway instance would bind the same public port. */
            fprintf(stderr, "skald: up: %s: instances: %d; starting 1 (one public port)\n",
                    svc->name, n);
            n = 1;
        }
        for (int k = 1; k <= n; k++) {
            sk_status st = start_instance(u, svc, k);
            if (st != SK_OK) {
                return st;
            }
            (*n_started)++;
        }
    }
    return SK_OK;
}

/* Supervise until the gateway answers /readyz 200 (true), or a stop is asked (false). */
static bool wait_ready(up_state *u, int64_t deadline)
{
    bool warned = false;
    while (!cli_supervisor_is_stopping(u->sup)) {
        int status = 0;
        if (cli_http_get_status(u->gateway_port, "/readyz", READY_PROBE_TIMEOUT_MS, &status) ==
                SK_OK &&
            status == 200) {
            printf("skald: ready in %lld ms\n", (long long)(sk_time_mono_ms() - u->t0_ms));
            fflush(stdout);
            return true;
        }
        sk_error_clear();
        if (!warned && sk_time_mono_ms() >= deadline) {
            warned = true;
            fprintf(stderr,
                    "skald: up: not ready after %d ms (GET /readyz answered %d); still "
                    "supervising, see the logs in %s\n",
                    READY_DEADLINE_MS, status, u->log_dir);
        }
        cli_supervisor_poll(u->sup, warned ? 1000 : START_POLL_MS);
    }
    return false;
}

static int run(up_state *u, const up_opts *o)
{
    sk_status st;
    pid_t other = 0;
    size_t n_started = 0;

    st = sk_system_load(o->config, &u->sys);
    if (st != SK_OK) {
        cli_errorf("up", "%s", sk_error_message());
        return CLI_EXIT_USAGE;
    }
    u->n_nodes = (size_t)u->sys->broker.nodes;
    if (cli_gateway_port_choose(o->port_flag, u->sys->gateway_port, &u->gateway_port) != SK_OK) {
        cli_errorf("up", "%s", sk_error_message());
        return CLI_EXIT_USAGE;
    }
    bool has_gateway = false;
    for (size_t i = 0; i < u->sys->n_services; i++) {
        has_gateway = has_gateway || u->sys->services[i].is_gateway;
    }
    if (!has_gateway) {
        cli_errorf("up", "%s: services: no service has \"gateway: true\"", o->config);
        return CLI_EXIT_USAGE;
    }
    if (abs_path(o->config, &u->config_path) != SK_OK || prepare_dirs(u, o->data) != SK_OK) {
        cli_errorf("up", "%s", sk_error_message());
        return CLI_EXIT_FAILURE;
    }
    char *pid_path = sk_asprintf("%s/skald.pid", u->run_dir);
    st = pid_path != NULL ? cli_pidfile_acquire(&u->pid, pid_path, &other)
                          : SK_FAIL(SK_ENOMEM, "pid file path");
    sk_free(pid_path);
    if (st == SK_EEXIST) {
        cli_errorf("up",
                   "another `skald up` (pid %ld) is running with data dir %s; stop it first "
                   "(kill %ld) or choose another --data",
                   (long)other, u->data_dir, (long)other);
        return CLI_EXIT_FAILURE;
    }
    if (st != SK_OK || check_binaries(u) != SK_OK) {
        cli_errorf("up", "%s", sk_error_message());
        return CLI_EXIT_FAILURE;
    }
    if (!cli_port_is_free(u->gateway_port, NULL)) {
        cli_errorf("up",
                   "gateway port %d on 127.0.0.1 is in use; choose another with --port or "
                   "SKALD_GATEWAY_PORT",
                   u->gateway_port);
        return CLI_EXIT_FAILURE;
    }
    st = cli_pki_setup(u->pki_dir, u->sys);
    if (st == SK_OK) {
        /* Before the supervisor's threads; children inherit it too. */
        st = sk_tls_default_trust_set(u->pki_dir);
    }
    if (st == SK_OK) {
        st = write_run_files(u);
    }
    if (st == SK_OK) {
        st = cli_supervisor_create(&u->sup);
    }
    if (st != SK_OK) {
        cli_errorf("up", "%s", sk_error_message());
        return CLI_EXIT_FAILURE;
    }
    printf("skald: system %s from %s, data in %s\n", u->sys->name, u->config_path, u->data_dir);
    printf("skald: logs in %s/<process>.log\n", u->log_dir);
    fflush(stdout);
    st = start_nats(u);
    if (st == SK_OK) {
        if (u->n_nodes == 1) {
            printf("skald: nats-server on %s (pid %ld)\n", u->nats_urls,
                   (long)cli_supervisor_pid(u->sup, "nats-server"));
        } else {
            printf("skald: nats-server cluster of %zu nodes on %s, %d replicas of every stream "
                   "(nodes in %s/nats.nodes)\n",
                   u->n_nodes, u->nats_urls, u->sys->broker.replicas, u->run_dir);
        }
        fflush(stdout);
        st = create_streams(u);
    }
    if (st == SK_OK) {
        st = start_services(u, &n_started);
    }
    if (st != SK_OK) {
        bool stopped = st == SK_ECANCELED;
        if (!stopped) {
            cli_errorf("up", "%s", sk_error_message());
        }
        cli_supervisor_stop_all(u->sup, 0);
        return stopped ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
    printf("skald: started %zu service processes\n", n_started);
    printf("skald: gateway   http://127.0.0.1:%d/\n", u->gateway_port);
    printf("skald: dashboard http://127.0.0.1:%d/ui/\n", u->gateway_port);
    fflush(stdout);
    (void)wait_ready(u, u->t0_ms + READY_DEADLINE_MS);
    while (!cli_supervisor_is_stopping(u->sup)) {
        cli_supervisor_poll(u->sup, -1);
        if (cli_supervisor_take_reload(u->sup)) {
            /* SIGHUP: re-issue the certificates that are due, then every child re-reads its own. */
            if (cli_pki_setup(u->pki_dir, u->sys) != SK_OK) {
                cli_errorf("up", "renewing certificates: %s", sk_error_message());
            } else {
                printf("skald: certificates renewed where due; asking every process to re-read them\n");
                fflush(stdout);
                cli_supervisor_signal_all(u->sup, SIGHUP);
            }
        }
    }
    cli_supervisor_stop_all(u->sup, 0);
    printf("skald: stopped\n");
    return CLI_EXIT_OK;
}

int cli_cmd_up(int argc, char **argv)
{
    up_opts o;
    up_state u;
    int rc = parse_args(argc, argv, &o);

    if (rc >= 0) {
        return rc;
    }
    memset(&u, 0, sizeof(u));
    u.pid.fd = -1;
    u.t0_ms = sk_time_mono_ms();
    o.data = cli_data_dir_choose(o.data);
    rc = run(&u, &o);
    up_fini(&u);
    return rc;
}
