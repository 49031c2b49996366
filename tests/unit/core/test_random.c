/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/random.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <skald/core.h>

#include "sk_test.h"

static void test_sk_random_bytes_fills(void **state)
{
    (void)state;
    uint8_t a[64], b[64], zero[64] = { 0 };
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(sk_random_bytes(a, sizeof(a)), SK_OK);
    assert_int_equal(sk_random_bytes(b, sizeof(b)), SK_OK);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_sk_random_bytes_large_and_empty(void **state)
{
    (void)state;
    static uint8_t big[1 << 20];
    assert_int_equal(sk_random_bytes(big, sizeof(big)), SK_OK);
    assert_int_equal(sk_random_bytes(big, 0), SK_OK);
    assert_int_equal(sk_random_bytes(NULL, 0), SK_OK);
}

static void test_sk_random_bytes_null(void **state)
{
    (void)state;
    SK_TEST_ASSERT_ERR(sk_random_bytes(NULL, 4), SK_EINVAL, "out must not be NULL");
}

/* Many small draws (served from the per-thread buffer) never repeat. */
static void test_sk_random_bytes_small_draws_are_distinct(void **state)
{
    (void)state;
    enum { N = 2000, LEN = 16 };
    static uint8_t draws[N][LEN];
    for (int i = 0; i < N; i++) {
        assert_int_equal(sk_random_bytes(draws[i], LEN), SK_OK);
    }
    for (int i = 0; i < N; i++) {
        for (int j = i + 1; j < N; j++) {
            assert_memory_not_equal(draws[i], draws[j], LEN);
        }
    }
}

/* A forked child must not hand out the bytes its parent's buffer still holds. */
static void test_sk_random_bytes_fork_child_differs(void **state)
{
    (void)state;
    uint8_t first[16], parent_next[16], child_next[16];
    int fds[2];
    assert_int_equal(sk_random_bytes(first, sizeof(first)), SK_OK); /* fills the buffer */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t b[16];
        int ok = sk_random_bytes(b, sizeof(b)) == SK_OK && write(fds[1], b, sizeof(b)) == 16;
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], child_next, sizeof(child_next)), 16);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sk_random_bytes(parent_next, sizeof(parent_next)), SK_OK);
    assert_memory_not_equal(parent_next, child_next, sizeof(child_next));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sk_random_bytes_fills),
        cmocka_unit_test(test_sk_random_bytes_large_and_empty),
        cmocka_unit_test(test_sk_random_bytes_null),
        cmocka_unit_test(test_sk_random_bytes_small_draws_are_distinct),
        cmocka_unit_test(test_sk_random_bytes_fork_child_differs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
