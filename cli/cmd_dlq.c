/* SPDX-License-Identifier: MIT */
/*
 * `skald dlq list [--all] [--json]` and `skald dlq redrive ID`: the dead
 * letters of the running system. Every consumer of every service publishes
 * its dead letters (and the resolution of redriven ones) on the
 * DEAD_LETTERS stream, so the CLI reads that stream, not the services'
 * databases; a redrive publishes the original message again on its
 * original subject for the owning consumer (sk_dlq_redrive). The system is
 * found through its data dir, like `skald status`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Longest reason printed in the table (the JSON output has all of it). */
#define REASON_COLUMN 60

static void usage(FILE *f)
{
    fprintf(f, "usage: skald dlq list [--all] [--json] [--data DIR]\n"
               "       skald dlq redrive ID [--data DIR]\n"
               "  list     dead letters still waiting for a redrive (with --all also the resolved\n"
               "           and superseded ones), oldest first\n"
               "  redrive  send dead letter ID back to its consumer, through the same upcasting\n"
               "           as live messages; the messages parked behind it follow in order\n");
}

int cli_dlq_print(const sk_dlq_list *l, bool is_all, bool is_json, FILE *out)
{
    json_t *arr = is_json ? json_array() : NULL;
    size_t n_shown = 0;

    if (is_json && arr == NULL) {
        cli_errorf("dlq", "out of memory");
        return CLI_EXIT_FAILURE;
    }
    if (!is_json) {
        fprintf(out, "%-36s  %-10s  %-24s  %-22s  %-20s  %-24s  %5s  %-20s  %s\n", "ID", "STATE",
                "CONSUMER", "SUBJECT", "TYPE", "AGGREGATE", "TRIES", "TIME", "REASON");
    }
    for (size_t i = 0; i < sk_dlq_list_count(l); i++) {
        const sk_dead_letter *d = sk_dlq_list_at(l, i);
        if (!is_all && d->state != SK_DEAD_LETTER_OPEN) {
            continue;
        }
        n_shown++;
        if (is_json) {
            json_t *o = sk_dead_letter_json(d);
            if (o == NULL || json_array_append_new(arr, o) != 0) {
                json_decref(arr);
                cli_errorf("dlq", "out of memory");
                return CLI_EXIT_FAILURE;
            }
            continue;
        }
        char when[SK_RFC3339_LEN];
        char reason[REASON_COLUMN + 4];
        const char *state = d->state == SK_DEAD_LETTER_OPEN       ? "open"
                            : d->state == SK_DEAD_LETTER_RESOLVED ? "resolved"
                                                                  : "superseded";
        sk_time_format_rfc3339(d->time_ms, when);
        when[19] = '\0'; /* seconds are enough in a table */
        snprintf(reason, sizeof(reason), "%s", d->error);
        for (char *p = reason; *p != '\0'; p++) {
            if (*p == '\n' || *p == '\r' || *p == '\t') {
                *p = ' ';
            }
        }
        if (strlen(d->error) > REASON_COLUMN) {
            memcpy(reason + REASON_COLUMN - 3, "...", 4);
        }
        fprintf(out, "%-36s  %-10s  %-24.24s  %-22.22s  %-20.20s  %-24.24s  %5lld  %-20s  %s\n",
                d->id, state, d->consumer, d->nats_subject, d->type[0] ? d->type : "-",
                d->aggregate[0] ? d->aggregate : "-", (long long)d->deliveries, when, reason);
    }
    if (is_json) {
        char *text = sk_json_dumps(arr);
        json_decref(arr);
        if (text == NULL) {
            cli_errorf("dlq", "out of memory");
            return CLI_EXIT_FAILURE;
        }
        fprintf(out, "%s\n", text);
        sk_free(text);
    } else if (n_shown == 0) {
        fprintf(out, "(no %sdead letters)\n", is_all ? "" : "open ");
    }
    return CLI_EXIT_OK;
}

int cli_dlq_redrive(sk_bus *bus, const char *id, FILE *out)
{
    sk_dlq_list *l = NULL;
    int rc = CLI_EXIT_FAILURE;
    sk_status st = sk_dlq_list_load(bus, &l);

    if (st != SK_OK) {
        cli_errorf("dlq", "reading %s: %s", SK_DLQ_STREAM, sk_error_message());
        goto out;
    }
    st = sk_dlq_redrive(bus, l, id);
    if (st != SK_OK) {
        cli_errorf("dlq redrive", "%s", sk_error_message());
        rc = st == SK_ENOTFOUND || st == SK_ESTATE ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        goto out;
    }
    {
        const sk_dead_letter *d = sk_dlq_list_find(l, id);
        fprintf(out,
                "skald: dead letter %s sent back to %s on %s; `skald dlq list --all` shows when "
                "it is resolved\n",
                id, d->consumer, d->nats_subject);
    }
    rc = CLI_EXIT_OK;
out:
    sk_dlq_list_destroy(l);
    return rc;
}

int cli_cmd_dlq(int argc, char **argv)
{
    const char *data = NULL, *verb = NULL, *id = NULL;
    bool is_all = false, is_json = false;
    cli_conn conn = { 0 };
    sk_dlq_list *l = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--all") == 0) {
            is_all = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            is_json = true;
        } else if (cli_flag(argc, argv, &i, "--data", &v) != 0) {
            if (v == NULL) {
                cli_errorf("dlq", "--data: expected a directory");
                return CLI_EXIT_USAGE;
            }
            data = v;
        } else if (argv[i][0] == '-') {
            cli_errorf("dlq", "unknown option \"%.40s\"", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else if (verb == NULL) {
            verb = argv[i];
        } else if (id == NULL) {
            id = argv[i];
        } else {
            cli_errorf("dlq", "unexpected argument \"%.40s\"", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (verb == NULL || (strcmp(verb, "list") != 0 && strcmp(verb, "redrive") != 0)) {
        cli_errorf("dlq", "expected `list` or `redrive ID`");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(verb, "list") == 0 && id != NULL) {
        cli_errorf("dlq list", "unexpected argument \"%.40s\"", id);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(verb, "redrive") == 0) {
        if (id == NULL || strlen(id) != SK_UUID_LEN - 1) {
            cli_errorf("dlq redrive",
                       "ID: expected a dead letter id (a UUID from `skald dlq list`)");
            return CLI_EXIT_USAGE;
        }
        if (is_all || is_json) {
            cli_errorf("dlq redrive", "--all and --json go with `list`");
            return CLI_EXIT_USAGE;
        }
    }
    if (getenv("SK_LOG_LEVEL") == NULL) {
        sk_log_set_level(SK_LOG_LEVEL_ERROR);
    }
    rc = cli_conn_open(&conn, cli_data_dir_choose(data), "dlq");
    if (rc != CLI_EXIT_OK) {
        return rc;
    }
    if (strcmp(verb, "redrive") == 0) {
        rc = cli_dlq_redrive(conn.bus, id, stdout);
    } else if (sk_dlq_list_load(conn.bus, &l) != SK_OK) {
        cli_errorf("dlq", "reading %s: %s", SK_DLQ_STREAM, sk_error_message());
        rc = CLI_EXIT_FAILURE;
    } else {
        rc = cli_dlq_print(l, is_all, is_json, stdout);
    }
    sk_dlq_list_destroy(l);
    cli_conn_close(&conn);
    return rc;
}
