/* SPDX-License-Identifier: MIT */
/*
 * The `skald` command: one table maps each subcommand of CONTRACT.md to
 * its function (cmd_<verb>.c); commands not built yet answer "not available
 * in this version" with exit 2. main only initialises the library and
 * dispatches.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    cli_cmd_fn fn; /* NULL: not available in this version */
    const char *synopsis;
    const char *summary;
} command;

static const command commands[] = {
    { "up", cli_cmd_up, "up [--config FILE] [--data DIR] [--port N]",
      "start nats-server, every service and the gateway; supervise until ^C" },
    { "status", cli_cmd_status, "status [--data DIR]",
      "one line per instance: address, health, circuit state of its upstreams" },
    { "audit", NULL, "audit [FILE] [--format json]",
      "check a system file against the architecture checklist" },
    { "generate", NULL, "generate k8s [FILE] --out DIR", "Kubernetes + Istio manifests" },
    { "replay", cli_cmd_replay, "replay PROJECTION [--data DIR] [--timeout S]",
      "rebuild a read model from the event streams, with progress" },
    { "dlq", cli_cmd_dlq, "dlq list [--all] [--json] | dlq redrive ID",
      "inspect dead letters and send one back to its consumer" },
    { "fault", cli_cmd_fault,
      "fault SERVICE [--abort-percent P --status CODE] [--delay-percent P --delay-ms D] [--clear]",
      "set or clear fault injection on a service" },
    { "bench", cli_cmd_bench,
      "bench [--rate R | --concurrency C] [--duration S] [--find-max] [--json] [--data DIR]",
      "drive the public API, print throughput and latency percentiles" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: skald COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn == NULL ? " (not available in this version)" : "");
    }
    fprintf(f, "\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(f, "  skald %s\n", commands[i].synopsis);
    }
    fprintf(f, "\nThe data dir is --data DIR, else $SKALD_DATA, else ./var.\n"
               "Run `skald COMMAND --help` for the options of a command.\n");
}

int main(int argc, char **argv)
{
    int rc;

    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const command *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS && cmd == NULL; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            cmd = &commands[i];
        }
    }
    if (cmd == NULL) {
        cli_errorf(argv[1], "unknown command (see `skald --help`)");
        return CLI_EXIT_USAGE;
    }
    if (cmd->fn == NULL) {
        cli_errorf(cmd->name, "not available in this version");
        return CLI_EXIT_USAGE;
    }
    /* Writes to a closed socket must fail with EPIPE, not kill the CLI. */
    signal(SIGPIPE, SIG_IGN);
    if (sk_init("skald") != SK_OK) {
        cli_errorf("init", "%s", sk_error_message());
        return CLI_EXIT_FAILURE;
    }
    rc = cmd->fn(argc - 1, argv + 1);
    sk_shutdown();
    return rc;
}
