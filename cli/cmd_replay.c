/* SPDX-License-Identifier: MIT */
/*
 * `skald replay PROJECTION [--data DIR] [--timeout S]`: rebuilds a read
 * model wherever it is kept. It finds the instances through discovery, asks
 * each over mTLS, as the skald-cli identity, to replay (POST
 * /admin/projections/NAME/replay; instances sharing a database answer 409
 * except the one that projects it, and are followed), then follows their
 * progress (GET /admin/projections/NAME) until every one reads its new
 * version: a progress bar on a terminal, plain lines otherwise. Queries keep
 * being answered from the old version meanwhile.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define REPLAY_HTTP_TIMEOUT_MS   5000
#define REPLAY_POLL_MS           250
#define REPLAY_DEFAULT_TIMEOUT_S 600
#define REPLAY_MAX_INSTANCES     64

typedef struct replay_opts {
    const char *data;
    const char *projection;
    int64_t timeout_s;
} replay_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: skald replay PROJECTION [--data DIR] [--timeout S]\n"
            "  rebuilds read model PROJECTION (e.g. orderview) from the event streams in every\n"
            "  instance that keeps it, and switches each to the new version once it has caught up\n"
            "  --timeout S  give up following the progress after S seconds (default %d)\n",
            REPLAY_DEFAULT_TIMEOUT_S);
}

static bool projection_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* @return -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, replay_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_s = REPLAY_DEFAULT_TIMEOUT_S;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (cli_flag(argc, argv, &i, "--data", &v) != 0) {
            if (v == NULL) {
                cli_errorf("replay", "--data: expected a directory");
                return CLI_EXIT_USAGE;
            }
            o->data = v;
        } else if (cli_flag(argc, argv, &i, "--timeout", &v) != 0) {
            char *end = NULL;
            long long n = v != NULL ? strtoll(v, &end, 10) : 0;
            if (v == NULL || end == v || *end != '\0' || n < 1 || n > 86400) {
                cli_errorf("replay", "--timeout: expected seconds 1..86400, got \"%.20s\"",
                           v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
            o->timeout_s = n;
        } else if (argv[i][0] == '-' || o->projection != NULL) {
            cli_errorf("replay", "unexpected argument \"%.40s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else {
            o->projection = argv[i];
        }
    }
    if (o->projection == NULL) {
        cli_errorf("replay", "PROJECTION is required");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!projection_name_is_valid(o->projection)) {
        cli_errorf("replay",
                   "PROJECTION: expected 1..63 characters of [A-Za-z0-9_-], got \"%.40s\"",
                   o->projection);
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* ---------------------------------------------------------------- HTTP, one request at a time */

typedef struct call {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_done;
    sk_status st;
    int status;
    json_t *body; /* owned; NULL when not JSON */
    char error[256];
} call;

static void on_done(sk_status st, const sk_http_response *resp, void *ctx)
{
    call *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->st = st;
    if (st == SK_OK) {
        c->status = resp->status;
        if (sk_json_parse_object(resp->body, &c->body) != SK_OK) {
            c->body = NULL;
        }
    } else {
        snprintf(c->error, sizeof(c->error), "%s", sk_error_message());
    }
    c->is_done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Send and wait. On return c->st/status/body/error are set; free with call_fini. */
static void call_run(
    call *c, sk_http_client *client, const sk_instance *inst, const char *method, const char *path)
{
    char url[SK_DISCOVERY_MAX_ADDRESS + 160];
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    snprintf(url, sizeof(url), "https://%s%s", inst->address, path);
    sk_http_request req = {
        .method = method,
        .url = url,
        .timeout_ms = REPLAY_HTTP_TIMEOUT_MS,
        .expect_service = inst->service,
    };
    sk_status st = sk_http_client_send(client, &req, on_done, c);
    if (st != SK_OK) {
        c->st = st;
        snprintf(c->error, sizeof(c->error), "%s", sk_error_message());
        return;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->is_done) {
        pthread_cond_wait(&c->cv, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

static void call_fini(call *c)
{
    json_decref(c->body);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static const char *call_detail(const call *c)
{
    if (c->st != SK_OK) {
        return c->error;
    }
    const char *d = json_string_value(json_object_get(c->body, "detail"));
    return d != NULL ? d : "no detail";
}

/* ---------------------------------------------------------------- progress */

typedef struct target {
    const sk_instance *inst;
    int64_t want_version; /* live_version must reach it */
    int64_t live_version;
    uint64_t applied;
    uint64_t total;
    bool is_done;
    char error[256];
} target;

static void progress_print(const char *name, const target *t, size_t n, bool is_tty, bool is_final)
{
    uint64_t applied = 0, total = 0;
    size_t n_done = 0;
    for (size_t i = 0; i < n; i++) {
        applied += t[i].is_done ? t[i].total : t[i].applied;
        total += t[i].total;
        n_done += t[i].is_done ? 1 : 0;
    }
    int pct = total > 0 ? (int)(applied * 100 / total) : (n_done == n ? 100 : 0);
    if (is_tty) {
        char bar[41];
        int fill = pct * 40 / 100;
        for (int i = 0; i < 40; i++) {
            bar[i] = i < fill ? '#' : '-';
        }
        bar[40] = '\0';
        printf("\rreplay %s [%s] %3d%% %llu/%llu events, %zu/%zu instances switched", name, bar,
               pct, (unsigned long long)applied, (unsigned long long)total, n_done, n);
        if (is_final) {
            printf("\n");
        }
        fflush(stdout);
        return;
    }
    printf("replay %s: %d%% (%llu/%llu events)", name, pct, (unsigned long long)applied,
           (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        printf("%s %s %s", i == 0 ? ":" : ",", t[i].inst->instance,
               t[i].is_done ? "switched" : "replaying");
    }
    printf("\n");
    fflush(stdout);
}

/* One poll of every instance still replaying. @return false on an error (printed). */
static bool poll_all(sk_http_client *client, const char *name, target *t, size_t n)
{
    char path[160];
    snprintf(path, sizeof(path), "/admin/projections/%s", name);
    for (size_t i = 0; i < n; i++) {
        if (t[i].is_done) {
            continue;
        }
        call c;
        call_run(&c, client, t[i].inst, "GET", path);
        if (c.st != SK_OK || c.status != 200 || c.body == NULL) {
            /* An instance restarting answers again soon (the replay resumes there): keep polling.
             */
            snprintf(t[i].error, sizeof(t[i].error), "%s",
                     c.st == SK_OK ? call_detail(&c) : c.error);
            call_fini(&c);
            continue;
        }
        t[i].error[0] = '\0';
        t[i].live_version = json_integer_value(json_object_get(c.body, "live_version"));
        t[i].applied = (uint64_t)json_integer_value(json_object_get(c.body, "applied_seq"));
        t[i].total = (uint64_t)json_integer_value(json_object_get(c.body, "target_seq"));
        t[i].is_done = t[i].live_version >= t[i].want_version &&
                       json_integer_value(json_object_get(c.body, "building_version")) == 0;
        call_fini(&c);
    }
    return true;
}

/* ---------------------------------------------------------------- discovery */

/*
 * The registry's watcher fills in the bucket's entries asynchronously:
 * poll until the count has not changed for 250 ms (and something arrived),
 * or 1 s passed.
 */
static sk_status instances_list(sk_registry *reg, sk_instance **out, size_t *n)
{
    int64_t start = sk_time_mono_ms(), changed = start;
    size_t last = (size_t)-1;

    *out = NULL;
    *n = 0;
    for (;;) {
        sk_instance *list = NULL;
        size_t count = 0;
        sk_status st = sk_registry_list(reg, &list, &count);
        sk_registry_list_free(*out, *n);
        *out = NULL;
        *n = 0;
        if (st != SK_OK) {
            return st;
        }
        *out = list;
        *n = count;
        int64_t now = sk_time_mono_ms();
        if (count != last) {
            last = count;
            changed = now;
        }
        if (now - start >= 1000 || (count > 0 && now - changed >= 250)) {
            return SK_OK;
        }
        cli_sleep_ms(20);
    }
}

/* ---------------------------------------------------------------- command */

int cli_cmd_replay(int argc, char **argv)
{
    replay_opts o;
    int rc = parse_args(argc, argv, &o);
    cli_conn conn = { 0 };
    sk_registry *reg = NULL;
    sk_http_client *client = NULL;
    sk_instance *list = NULL;
    size_t n_list = 0, n = 0;
    target *t = NULL;
    char path[160];

    if (rc >= 0) {
        return rc;
    }
    if (getenv("SK_LOG_LEVEL") == NULL) {
        sk_log_set_level(SK_LOG_LEVEL_ERROR);
    }
    rc = cli_conn_open(&conn, cli_data_dir_choose(o.data), "replay");
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = CLI_EXIT_FAILURE;
    if (sk_registry_open(&reg, conn.bus, 0) != SK_OK ||
        instances_list(reg, &list, &n_list) != SK_OK) {
        cli_errorf("replay", "reading the discovery registry: %s", sk_error_message());
        goto out;
    }
    if (sk_http_client_create(&client, &conn.tls) != SK_OK) {
        cli_errorf("replay", "HTTP client: %s", sk_error_message());
        goto out;
    }
    t = sk_calloc(n_list > 0 ? n_list : 1, sizeof(*t));
    if (t == NULL) {
        cli_errorf("replay", "out of memory");
        goto out;
    }
    /* Which instances keep this read model: they know it under /admin/projections/NAME. */
    snprintf(path, sizeof(path), "/admin/projections/%s", o.projection);
    size_t n_unreachable = 0;
    for (size_t i = 0; i < n_list && n < REPLAY_MAX_INSTANCES; i++) {
        call c;
        call_run(&c, client, &list[i], "GET", path);
        if (c.st == SK_OK && c.status == 200) {
            t[n++].inst = &list[i];
        } else if (c.st != SK_OK || (c.status != 404 && c.status != 403)) {
            /* 404: no such read model there; 403: the gateway, which has no admin routes. */
            n_unreachable++;
            fprintf(stderr, "skald: replay: %s: %s%s\n", list[i].instance,
                    c.st == SK_OK ? "answered: " : "", call_detail(&c));
        }
        call_fini(&c);
    }
    if (n == 0) {
        cli_errorf("replay",
                   "no running instance keeps a read model named %s (%zu instance(s) asked, %zu "
                   "unreachable)",
                   o.projection, n_list, n_unreachable);
        goto out;
    }
    snprintf(path, sizeof(path), "/admin/projections/%s/replay", o.projection);
    size_t n_projecting = 0; /* instances that build, or run the projections (others follow) */
    for (size_t i = 0; i < n; i++) {
        call c;
        call_run(&c, client, t[i].inst, "POST", path);
        if (c.st == SK_OK && (c.status == 202 || c.status == 200) && c.body != NULL) {
            n_projecting++;
            t[i].want_version = json_integer_value(json_object_get(c.body, "building_version"));
            printf("replay %s: %s builds version %lld\n", o.projection, t[i].inst->instance,
                   (long long)t[i].want_version);
        } else if (c.st == SK_OK && c.status == 409) {
            /* Already replaying (started by someone else): follow that one. */
            printf("replay %s: %s: %s; following it\n", o.projection, t[i].inst->instance,
                   call_detail(&c));
            t[i].want_version = 0;
        } else {
            cli_errorf("replay", "%s: %s%s", t[i].inst->instance, c.st == SK_OK ? "answered: " : "",
                       call_detail(&c));
            call_fini(&c);
            goto out;
        }
        call_fini(&c);
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].want_version == 0) {
            /* Following a replay started elsewhere: wait for its building version to go live. */
            call c;
            char spath[160];
            snprintf(spath, sizeof(spath), "/admin/projections/%s", o.projection);
            call_run(&c, client, t[i].inst, "GET", spath);
            int64_t b = c.body != NULL
                            ? json_integer_value(json_object_get(c.body, "building_version"))
                            : 0;
            int64_t l =
                c.body != NULL ? json_integer_value(json_object_get(c.body, "live_version")) : 0;
            /* A replay started by someone else, or (not projecting) a standby of a shared one. */
            if (c.body != NULL && json_is_true(json_object_get(c.body, "projecting"))) {
                n_projecting++;
            }
            t[i].want_version = b != 0 ? b : l;
            call_fini(&c);
        }
    }
    if (n_projecting == 0) {
        cli_errorf("replay",
                   "no reachable instance projects read model %s (those asked share it with one "
                   "that is hung or unreachable); nothing was replayed",
                   o.projection);
        goto out;
    }
    bool is_tty = isatty(STDOUT_FILENO) == 1;
    int64_t deadline = sk_time_mono_ms() + o.timeout_s * 1000;
    int64_t last_line = 0;
    for (;;) {
        SK_IGNORE(poll_all(client, o.projection, t, n)); /* errors are kept per instance */
        bool all = true;
        for (size_t i = 0; i < n; i++) {
            all = all && t[i].is_done;
        }
        int64_t now = sk_time_mono_ms();
        if (all) {
            progress_print(o.projection, t, n, is_tty, true);
            break;
        }
        if (is_tty || now - last_line >= 1000) {
            last_line = now;
            progress_print(o.projection, t, n, is_tty, false);
        }
        if (now > deadline) {
            if (is_tty) {
                printf("\n");
            }
            for (size_t i = 0; i < n; i++) {
                if (!t[i].is_done) {
                    cli_errorf("replay", "%s: not switched to version %lld after %lld s%s%s",
                               t[i].inst->instance, (long long)t[i].want_version,
                               (long long)o.timeout_s,
                               t[i].error[0] != '\0' ? "; last error: " : "", t[i].error);
                }
            }
            goto out;
        }
        cli_sleep_ms(REPLAY_POLL_MS);
    }
    for (size_t i = 0; i < n; i++) {
        printf("replay %s: %s now reads version %lld\n", o.projection, t[i].inst->instance,
               (long long)t[i].live_version);
    }
    rc = CLI_EXIT_OK;
out:
    sk_free(t);
    sk_http_client_destroy(client);
    sk_registry_list_free(list, n_list);
    sk_registry_close(reg);
    cli_conn_close(&conn);
    return rc;
}
