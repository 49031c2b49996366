/* SPDX-License-Identifier: MIT */
/*
 * The nats-server configuration `skald up` writes to DATA/run/nats.conf:
 * a loopback-only listener, JetStream with bounded memory and file stores,
 * and mutual TLS (every client presents a certificate signed by the local
 * CA). Rendering is a pure function so it can be tested without a server.
 */
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

sk_status cli_nats_conf_render(const cli_nats_conf *conf, sk_buf *out)
{
    sk_status st = SK_OK;

    if (conf == NULL || out == NULL) {
        return SK_FAIL(SK_EINVAL, "cli_nats_conf_render: %s must not be NULL",
                       conf == NULL ? "conf" : "out");
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
    if (st != SK_OK) {
        return st;
    }
    /*
     * No "http" (monitoring) port: nothing reads it and it would be one more
     * listener. TODO(nats authorization): map each certificate's URI SAN to a
     * user with per-service permissions (verify_and_map), see MEASUREMENTS.md.
     */
    return sk_buf_appendf(out,
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
                          "  verify: true\n"
                          "  timeout: %d\n"
                          "}\n",
                          conf->server_name, conf->port, NATS_MAX_PAYLOAD, NATS_WRITE_DEADLINE,
                          conf->store_dir, NATS_MAX_MEMORY_STORE, NATS_MAX_FILE_STORE,
                          conf->cert_file, conf->key_file, conf->ca_file, NATS_TLS_TIMEOUT_S);
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
