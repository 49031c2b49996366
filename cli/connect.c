/* SPDX-License-Identifier: MIT */
/*
 * Connecting the CLI to a running system: the NATS URL that `skald up`
 * wrote in DATA/run/nats.url, and the CLI's own mTLS identity (skald-cli)
 * from DATA/pki. Used by every command that talks to a running system.
 */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

void cli_conn_close(cli_conn *c)
{
    sk_bus_close(c->bus);
    c->bus = NULL;
    sk_tls_files_fini(&c->tls);
    sk_free(c->url);
    c->url = NULL;
}

int cli_conn_open(cli_conn *c, const char *data, const char *context)
{
    char *url_path = sk_asprintf("%s/run/nats.url", data);
    char *pki_dir = sk_asprintf("%s/pki", data);
    int rc = CLI_EXIT_FAILURE;
    sk_status st;

    *c = (cli_conn){ 0 };
    if (url_path == NULL || pki_dir == NULL) {
        cli_errorf(context, "out of memory");
        goto out;
    }
    st = cli_file_read_line(url_path, 256, &c->url);
    if (st == SK_ENOTFOUND) {
        cli_errorf(context, "the system is not running: no %s (start it with `skald up --data %s`)", url_path,
                   data);
        goto out;
    }
    /* Commands connect before they start threads (it sets environment variables). */
    if (st != SK_OK || sk_tls_default_trust_set(pki_dir) != SK_OK ||
        sk_tls_files_init(&c->tls, pki_dir, CLI_IDENTITY) != SK_OK) {
        cli_errorf(context, "%s", sk_error_message());
        goto out;
    }
    if (access(c->tls.cert_file, R_OK) != 0 || access(c->tls.key_file, R_OK) != 0) {
        cli_errorf(context, "no CLI identity in %s (%s.pem/.key); was the system started with `skald up --data %s`?",
                   pki_dir, CLI_IDENTITY, data);
        goto out;
    }
    sk_bus_config bc = {
        .servers = c->url,
        .ca_file = c->tls.ca_file,
        .cert_file = c->tls.cert_file,
        .key_file = c->tls.key_file,
        .name = CLI_IDENTITY,
        .inbox_prefix = "_INBOX." CLI_IDENTITY,
    };
    if (sk_bus_open(&c->bus, &bc) != SK_OK) {
        cli_errorf(context, "connecting to NATS at %s: %s", c->url, sk_error_message());
        goto out;
    }
    int64_t deadline = sk_time_mono_ms() + CLI_CONNECT_DEADLINE_MS;
    while (!sk_bus_is_connected(c->bus) && sk_time_mono_ms() < deadline) {
        cli_sleep_ms(20);
    }
    if (!sk_bus_is_connected(c->bus)) {
        cli_errorf(context, "the system is not running: cannot connect to NATS at %s within %d ms", c->url,
                   CLI_CONNECT_DEADLINE_MS);
        goto out;
    }
    rc = CLI_EXIT_OK;
out:
    if (rc != CLI_EXIT_OK) {
        cli_conn_close(c);
    }
    sk_free(url_path);
    sk_free(pki_dir);
    return rc;
}
