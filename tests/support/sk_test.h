/* SPDX-License-Identifier: MIT */
/*
 * Generic helpers for Skald tests: temporary directories, polling with a
 * deadline instead of sleeping, and free loopback ports. Include after the
 * cmocka prerequisites (stdarg.h, stddef.h, setjmp.h) when used with cmocka.
 * Module-specific fakes and fixtures live in other files of tests/support.
 */
#ifndef SK_TEST_H
#define SK_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <skald/core.h>

/**
 * Create a fresh directory /tmp/skald-test-XXXXXX.
 * @param[out] out receives the path (NUL-terminated); "" on failure.
 * @param out_len size of @p out; at least 32 bytes.
 * @return SK_OK, SK_EINVAL (NULL or small buffer), SK_EIO (mkdtemp failed).
 */
SK_NODISCARD sk_status sk_test_tmpdir(char *out, size_t out_len);

/**
 * Remove @p dir and everything under it (does not follow symlinks).
 * Refuses, silently, paths that are not under /tmp/, as a guard against a
 * test deleting something it should not. NULL-safe.
 */
void sk_test_rmrf(const char *dir);

/**
 * cmocka group setup and teardown for tests of the library: sk_init("test")
 * (which also routes jansson through sk_malloc, so allocation failures reach
 * JSON too) and sk_shutdown.
 */
int sk_test_group_setup(void **state);
int sk_test_group_teardown(void **state);

/**
 * Poll @p cond every 1-5 ms until it returns true or @p timeout_ms passes
 * (monotonic clock). @return true when the condition became true in time.
 */
bool sk_test_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms);

/**
 * A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it
 * back, close). Another process may take it before you bind; prefer binding
 * port 0 yourself when the code under test allows it.
 * @return the port, or -1 on failure.
 */
int sk_test_free_port(void);

/**
 * Start the program @p path with @p argv (NULL-terminated) and this
 * process's environment, its stdout and stderr appended to @p log_path.
 * Started from the main thread, the child gets SIGTERM when this process
 * ends, however it ends: an abort, a sanitizer's exit or CTest's SIGKILL
 * skip atexit handlers, and servers a test started would otherwise keep
 * running (PR_SET_PDEATHSIG follows the thread that forked, so it is not
 * set from other threads).
 * @return SK_OK and the child's pid in @p pid_out, or SK_EIO.
 */
SK_NODISCARD sk_status sk_test_spawn(const char *path,
                                     char *const argv[],
                                     const char *log_path,
                                     int *pid_out);

/** Read a whole file into an owned, NUL-terminated string (sk_free); NULL on failure. */
char *sk_test_read_file(const char *path, size_t *len_out);

/** Write @p len bytes to @p path (created or truncated). @return SK_OK or SK_EIO. */
SK_NODISCARD sk_status sk_test_write_file(const char *path, const void *data, size_t len);

/**
 * cmocka assertion: @p got must equal @p want and, when @p substr is not
 * NULL, sk_error_message() must contain it. Prints both on failure.
 */
#define SK_TEST_ASSERT_ERR(got, want, substr)                                                      \
    sk_test_assert_err((got), (want), (substr), __FILE__, __LINE__)
void sk_test_assert_err(sk_status got, sk_status want, const char *substr, const char *file,
                        int line);

#endif /* SK_TEST_H */
