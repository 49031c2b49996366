/* SPDX-License-Identifier: MIT */
/*
 * A libcurl multi handle driven by epoll (libcurl's "multi_socket"
 * interface): the mesh's HTTP client thread (client.c) and `skald bench`
 * (cli/cmd_bench.c) both run their transfers on it. It has its own header,
 * not mesh_int.h, so the CLI can share it without the rest of the mesh's
 * internals.
 */
#ifndef SK_MESH_CURL_LOOP_H
#define SK_MESH_CURL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include <skald/core.h>

typedef struct sk__curl_loop {
    CURLM *multi;         /* borrowed */
    int epfd;             /* the sockets libcurl asked for, wakefd and guest_fd */
    int wakefd;           /* eventfd: sk__curl_loop_wake from another thread */
    int guest_fd;         /* one more descriptor watched for input, or -1 */
    int64_t timer_due_us; /* libcurl's next timeout (monotonic), -1: none */
} sk__curl_loop;

/** Take over @p multi's socket and timer callbacks. */
SK_NODISCARD sk_status sk__curl_loop_init(sk__curl_loop *l, CURLM *multi);
/**
 * Give the callbacks back and close the descriptors (safe after a failed
 * init). Call it before curl_multi_cleanup: libcurl reports the sockets it
 * closes there to the socket callback.
 */
void sk__curl_loop_fini(sk__curl_loop *l);
/**
 * Also watch @p fd (the gateway's HTTP server) for input; -1 stops watching
 * the one watched before. At most one at a time.
 */
SK_NODISCARD sk_status sk__curl_loop_watch(sk__curl_loop *l, int fd);
/**
 * Wait up to @p wait_ms (less when libcurl's timer is due sooner) for ready
 * sockets or a wake-up, and let libcurl act on what is ready and on its
 * timer. Finished transfers are then in curl_multi_info_read.
 * @return true when the watched descriptor was ready for input.
 */
bool sk__curl_loop_run(sk__curl_loop *l, int wait_ms);
/** End a sk__curl_loop_run that is waiting; any thread. */
void sk__curl_loop_wake(sk__curl_loop *l);

#endif
