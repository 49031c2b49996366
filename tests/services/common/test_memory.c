/* SPDX-License-Identifier: MIT */
/*
 * svc_memory.c: the main thread trims the heap only when the process used
 * under 2 % of a core since the last tick. The ticks here are given their
 * times, so only the process's own CPU decides, not the machine's load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <sys/resource.h>

#include "svc_int.h"

static int64_t cpu_us(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* Use @p us of CPU, and make sure the compiler keeps the work. */
static void burn(int64_t us)
{
    volatile uint64_t x = 1;
    int64_t until = cpu_us() + us;
    while (cpu_us() < until) {
        for (int i = 0; i < 10000; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
        }
    }
}

static void test_svc_memory_trims_only_when_idle(void **state)
{
    (void)state;
    svc_memory m;

    svc__memory_init(&m, 0);
    /* 60 ms of CPU in a 1 s tick: 6 % of a core, busy. */
    burn(60000);
    assert_false(svc__memory_tick(&m, 1000));
    assert_int_equal(m.n_trims, 0);

    /* Memory freed after a burst of work, then a quiet 10 s tick: trimmed. */
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc(64 * 1024);
        assert_non_null(blocks[i]);
    }
    for (int i = 0; i < 64; i++) {
        free(blocks[i]);
    }
    assert_true(svc__memory_tick(&m, 11000));
    assert_int_equal(m.n_trims, 1);

    /* Still quiet: trimmed on every tick (memory freed meanwhile goes back too). */
    assert_true(svc__memory_tick(&m, 21000));
    assert_int_equal(m.n_trims, 2);

    /* A tick that does not move time forward cannot tell: not trimmed. */
    assert_false(svc__memory_tick(&m, 21000));
    assert_int_equal(m.n_trims, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_memory_trims_only_when_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
