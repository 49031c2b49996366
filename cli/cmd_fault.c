/* SPDX-License-Identifier: MIT */
/*
 * `skald fault SERVICE [--abort-percent P --status CODE] [--delay-percent P
 * --delay-ms D] [--clear]`: sets or clears inbound fault injection on every
 * instance of SERVICE at run time. The fault is an Istio HTTPFaultInjection
 * object stored under the service's name in the KV bucket skald_faults;
 * every instance watches its key (and reads it at start), so the setting
 * reaches instances started later too, until --clear deletes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct fault_opts {
    const char *data;
    const char *service;
    double abort_percent, delay_percent;
    int status;
    int64_t delay_ms;
    bool has_abort, has_status, has_delay, has_delay_ms, is_clear;
} fault_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: skald fault SERVICE [--abort-percent P --status CODE] [--delay-percent P --delay-ms D]\n"
               "                          [--clear] [--data DIR]\n"
               "  --abort-percent P  answer P %% (0..100) of incoming requests with --status CODE (200..599)\n"
               "  --delay-percent P  delay P %% (0..100) of incoming requests by --delay-ms D (0..60000)\n"
               "  --clear            remove the fault injection of SERVICE\n");
}

/* A percentage 0..100, decimals allowed ("12.5"). */
static bool percent_parse(const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0.0 && v <= 100.0)) {
        return false;
    }
    *out = v;
    return true;
}

static bool int_parse(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* @return -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, fault_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int64_t n = 0;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--clear") == 0) {
            o->is_clear = true;
        } else if (cli_flag(argc, argv, &i, "--data", &v) != 0) {
            if (v == NULL) {
                cli_errorf("fault", "--data: expected a directory");
                return CLI_EXIT_USAGE;
            }
            o->data = v;
        } else if (cli_flag(argc, argv, &i, "--abort-percent", &v) != 0) {
            if (v == NULL || !percent_parse(v, &o->abort_percent)) {
                cli_errorf("fault", "--abort-percent: expected 0..100, got \"%.20s\"", v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
            o->has_abort = true;
        } else if (cli_flag(argc, argv, &i, "--status", &v) != 0) {
            if (v == NULL || !int_parse(v, 200, 599, &n)) {
                cli_errorf("fault", "--status: expected an HTTP status 200..599, got \"%.20s\"", v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
            o->status = (int)n;
            o->has_status = true;
        } else if (cli_flag(argc, argv, &i, "--delay-percent", &v) != 0) {
            if (v == NULL || !percent_parse(v, &o->delay_percent)) {
                cli_errorf("fault", "--delay-percent: expected 0..100, got \"%.20s\"", v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
            o->has_delay = true;
        } else if (cli_flag(argc, argv, &i, "--delay-ms", &v) != 0) {
            if (v == NULL || !int_parse(v, 0, 60000, &o->delay_ms)) {
                cli_errorf("fault", "--delay-ms: expected 0..60000, got \"%.20s\"", v != NULL ? v : "");
                return CLI_EXIT_USAGE;
            }
            o->has_delay_ms = true;
        } else if (argv[i][0] == '-' || o->service != NULL) {
            cli_errorf("fault", "unexpected argument \"%.40s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else {
            o->service = argv[i];
        }
    }
    if (o->service == NULL) {
        cli_errorf("fault", "SERVICE is required");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (o->is_clear && (o->has_abort || o->has_status || o->has_delay || o->has_delay_ms)) {
        cli_errorf("fault", "--clear takes no other fault option");
        return CLI_EXIT_USAGE;
    }
    if (!o->is_clear && !o->has_abort && !o->has_delay) {
        cli_errorf("fault", "give --abort-percent and --status, --delay-percent and --delay-ms, or --clear");
        return CLI_EXIT_USAGE;
    }
    if (o->has_abort != o->has_status) {
        cli_errorf("fault", "--abort-percent and --status go together");
        return CLI_EXIT_USAGE;
    }
    if (o->has_delay != o->has_delay_ms) {
        cli_errorf("fault", "--delay-percent and --delay-ms go together");
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* The Istio HTTPFaultInjection object for the options. Owned (json_decref). */
static json_t *fault_json(const fault_opts *o)
{
    json_t *fault = json_object();
    if (fault == NULL) {
        return NULL;
    }
    if (o->has_abort) {
        json_object_set_new(fault, "abort", json_pack("{s:{s:f}, s:i}", "percentage", "value", o->abort_percent,
                                                      "httpStatus", o->status));
    }
    if (o->has_delay) {
        char fixed[32];
        snprintf(fixed, sizeof(fixed), "%lldms", (long long)o->delay_ms);
        json_object_set_new(fault, "delay",
                            json_pack("{s:{s:f}, s:s}", "percentage", "value", o->delay_percent, "fixedDelay", fixed));
    }
    return fault;
}

/* The service must be one of the running system's (DATA/run/config.path). */
static int check_service(const char *data, const char *service)
{
    char *path_file = sk_asprintf("%s/run/config.path", data);
    char *config = NULL;
    sk_system *sys = NULL;
    int rc = CLI_EXIT_OK;
    if (path_file != NULL && cli_file_read_line(path_file, 4096, &config) == SK_OK &&
        sk_system_load(config, &sys) == SK_OK && sk_system_service_find(sys, service) == NULL) {
        cli_errorf("fault", "no service \"%.40s\" in %s", service, config);
        rc = CLI_EXIT_USAGE;
    }
    sk_system_destroy(sys);
    sk_free(config);
    sk_free(path_file);
    return rc;
}

int cli_cmd_fault(int argc, char **argv)
{
    fault_opts o;
    cli_conn conn = { 0 };
    sk_kv *kv = NULL;
    char *text = NULL;
    int rc = parse_args(argc, argv, &o);

    if (rc >= 0) {
        return rc;
    }
    if (getenv("SK_LOG_LEVEL") == NULL) {
        sk_log_set_level(SK_LOG_LEVEL_ERROR);
    }
    const char *data = cli_data_dir_choose(o.data);
    rc = check_service(data, o.service);
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    rc = cli_conn_open(&conn, data, "fault");
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    rc = CLI_EXIT_FAILURE;
    if (sk_kv_open(&kv, conn.bus, SK_FAULT_BUCKET, 0) != SK_OK) {
        cli_errorf("fault", "opening %s: %s", SK_FAULT_BUCKET, sk_error_message());
        goto out;
    }
    if (o.is_clear) {
        if (sk_kv_delete(kv, o.service) != SK_OK) {
            cli_errorf("fault", "clearing %s: %s", o.service, sk_error_message());
            goto out;
        }
        printf("skald: fault injection on %s cleared\n", o.service);
        rc = CLI_EXIT_OK;
        goto out;
    }
    json_t *fault = fault_json(&o);
    text = fault != NULL ? sk_json_dumps(fault) : NULL;
    json_decref(fault);
    if (text == NULL) {
        cli_errorf("fault", "out of memory");
        goto out;
    }
    if (sk_kv_put(kv, o.service, sk_slice_from_str(text)) != SK_OK) {
        cli_errorf("fault", "setting %s: %s", o.service, sk_error_message());
        goto out;
    }
    printf("skald: fault injection on %s: %s\n", o.service, text);
    rc = CLI_EXIT_OK;
out:
    sk_free(text);
    sk_kv_close(kv);
    cli_conn_close(&conn);
    return rc;
}
