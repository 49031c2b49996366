/* SPDX-License-Identifier: MIT */
/*
 * System-test fixture: runs `skald up` on a fresh data dir and a free port,
 * waits for readiness, and talks HTTP to the gateway (libcurl, one handle
 * per calling thread). Stops the system with SIGTERM and reports its exit.
 */
#ifndef SK_TEST_SYSTEM_H
#define SK_TEST_SYSTEM_H

#include <stdbool.h>
#include <sys/types.h>

#include <skald/core.h>

typedef struct sk_test_system {
    pid_t pid;
    int port;
    char data_dir[256];
    char base_url[64];
} sk_test_system;

/**
 * Start `SK_BIN_DIR/skald up --config SK_SOURCE_DIR/skald.yaml --data TMP
 * --port FREE` and wait until /readyz answers 200 (deadline @p ready_ms).
 */
SK_NODISCARD sk_status sk_test_system_start(sk_test_system *sys, int64_t ready_ms);
/**
 * SIGTERM, wait (deadline 30 s, then SIGKILL); @return the exit status (-1 when killed,
 * -2 when a process's log holds a sanitizer report).
 */
int sk_test_system_stop(sk_test_system *sys);
/** Remove the data dir. */
void sk_test_system_cleanup(sk_test_system *sys);

/**
 * PID of the running child of `skald up` that serves @p service: its command
 * line has the word "--service" followed by the word @p service, or its
 * argv[0] is (a path ending in) "skald-<service>". Words match exactly, so
 * "order" never matches "orderview". Reads only /proc, so any thread may call it.
 * @return the PID, or 0 when none runs (for example between a crash and its
 *         restart) or on bad arguments.
 */
pid_t sk_test_system_service_pid(const sk_test_system *sys, const char *service);

/**
 * Wait until a child serving @p service runs whose PID is not @p old_pid
 * (pass 0 for any), polling every 20 ms.
 * @return SK_OK with *pid_out set, SK_ETIMEDOUT after @p timeout_ms, or
 *         SK_EINVAL on bad arguments.
 */
SK_NODISCARD sk_status sk_test_system_await_service(const sk_test_system *sys,
                                                    const char *service,
                                                    pid_t old_pid,
                                                    int64_t timeout_ms,
                                                    pid_t *pid_out);

/**
 * PID of the running child of `skald up` that is instance @p instance
 * ("orderview-2"): its command line has the word "--instance" followed by
 * the word @p instance (exact match, so "orderview-1" never matches
 * "orderview-10"). Reads only /proc, so any thread may call it.
 * @return the PID, or 0 when none runs or on bad arguments.
 */
pid_t sk_test_system_instance_pid(const sk_test_system *sys, const char *instance);

/**
 * Wait until instance @p instance runs with a PID other than @p old_pid
 * (0 for any), polling every 20 ms.
 * @return SK_OK with *pid_out set, SK_ETIMEDOUT after @p timeout_ms, or
 *         SK_EINVAL on bad arguments.
 */
SK_NODISCARD sk_status sk_test_system_await_instance(const sk_test_system *sys,
                                                     const char *instance,
                                                     pid_t old_pid,
                                                     int64_t timeout_ms,
                                                     pid_t *pid_out);

/**
 * PID of the running child of `skald up` whose program is @p program: the
 * last path component of its argv[0] equals @p program ("nats-server").
 * Reads only /proc, so any thread may call it.
 * @return the PID, or 0 when none runs or on bad arguments.
 */
pid_t sk_test_system_program_pid(const sk_test_system *sys, const char *program);

/**
 * Wait until a child running @p program has a PID other than @p old_pid
 * (0 for any), polling every 20 ms.
 * @return SK_OK with *pid_out set, SK_ETIMEDOUT after @p timeout_ms, or
 *         SK_EINVAL on bad arguments.
 */
SK_NODISCARD sk_status sk_test_system_await_program(const sk_test_system *sys,
                                                    const char *program,
                                                    pid_t old_pid,
                                                    int64_t timeout_ms,
                                                    pid_t *pid_out);

/**
 * Poll GET /readyz on the gateway until it answers 200.
 * @return SK_OK, or SK_ETIMEDOUT after @p timeout_ms (the last answer in the message).
 */
SK_NODISCARD sk_status sk_test_system_await_ready(const sk_test_system *sys, int64_t timeout_ms);

/** One HTTP exchange's answer; free with sk_test_http_fini. */
typedef struct sk_test_http {
    int status;
    char *body;           /* NUL-terminated, owned */
    size_t body_len;
    json_t *json;         /* parsed body when it is JSON, else NULL */
    char content_type[128];
    char location[256];
    char allow[128];
} sk_test_http;

/**
 * Send METHOD base_url+PATH with @p body (NULL for none) and extra header
 * lines ("Name: value", NULL-terminated list or NULL).
 * @return SK_OK when an answer arrived.
 */
SK_NODISCARD sk_status sk_test_http_send(const sk_test_system *sys,
                                         const char *method,
                                         const char *path,
                                         const char *body,
                                         size_t body_len,
                                         const char *const *headers,
                                         sk_test_http *out);
void sk_test_http_fini(sk_test_http *r);

/**
 * GET https://ADDRESS PATH of a service instance ("127.0.0.1:4711") over
 * mutual TLS with the CLI's identity (DATA/pki/skald-cli.{pem,key}), the
 * chain checked against DATA/pki/ca.pem. Any thread (one curl handle per call).
 * @return SK_OK when an answer arrived (free @p out with sk_test_http_fini),
 *         SK_EIO when none did, SK_EINVAL on bad arguments.
 */
SK_NODISCARD sk_status sk_test_service_get(const sk_test_system *sys,
                                           const char *address,
                                           const char *path,
                                           sk_test_http *out);

/**
 * Run `SK_BIN_DIR/skald ARGS --data DATA_DIR` (ARGS go through the shell
 * verbatim) and collect its stdout and stderr.
 * @return SK_OK with *out (owned, NUL-terminated, free with sk_free) and
 *         *exit_code (-1 when it did not exit normally); SK_EIO when it could
 *         not run; SK_EINVAL on bad arguments.
 */
SK_NODISCARD sk_status sk_test_system_cli(const sk_test_system *sys,
                                          const char *args,
                                          char **out,
                                          int *exit_code);

/**
 * Address ("127.0.0.1:4711") of instance @p instance ("order-1") as
 * `skald status` lists it.
 * @return SK_OK, SK_ENOTFOUND (not listed), SK_EIO (status failed), SK_EINVAL.
 */
SK_NODISCARD sk_status sk_test_system_instance_address(const sk_test_system *sys,
                                                       const char *instance,
                                                       char *out,
                                                       size_t out_len);

#endif /* SK_TEST_SYSTEM_H */
