/* SPDX-License-Identifier: MIT */
/*
 * svc_memory.c: the main thread trims the heap only when the process used
 * under 2 % of a core since the last tick, and while it stays idle only when
 * more of the heap came free. The ticks here are given their times, so only
 * the process's own CPU decides, not the machine's load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
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

/* Without AddressSanitizer, whose allocator glibc's malloc_trim does not see. */
#if defined(__SANITIZE_ADDRESS__)
#define HAS_GLIBC_HEAP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_GLIBC_HEAP 0
#endif
#endif
#ifndef HAS_GLIBC_HEAP
#ifdef __GLIBC__
#define HAS_GLIBC_HEAP 1
#else
#define HAS_GLIBC_HEAP 0
#endif
#endif

#define N_BLOCKS 64

/*
 * Free 4 MiB in the middle of the heap: a block allocated after them keeps
 * free() from handing it back at the top, so only a trim can. Returns the pin.
 */
static void *free_a_hole(void)
{
    void *blocks[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++) {
        blocks[i] = malloc(64 * 1024); /* under glibc's mmap threshold: from the heap */
        assert_non_null(blocks[i]);
        memset(blocks[i], 1, 64 * 1024);
    }
    void *pin = malloc(64);
    assert_non_null(pin);
    for (int i = 0; i < N_BLOCKS; i++) {
        free(blocks[i]);
    }
    return pin;
}

static void test_svc_memory_trims_only_when_idle(void **state)
{
    (void)state;
    svc_memory m;

    svc__memory_init(&m, 0);
    /* 60 ms of CPU in a 1 s tick: 6 % of a core, busy. */
    burn(60000);
    void *pin1 = free_a_hole();
    assert_false(svc__memory_tick(&m, 1000));
    assert_int_equal(m.n_trims, 0);

    /* A quiet 10 s tick: trimmed, and the hole went back. */
    assert_true(svc__memory_tick(&m, 11000));
    assert_int_equal(m.n_trims, 1);
    if (HAS_GLIBC_HEAP) {
        assert_true(m.is_released);
    }

    /* Still quiet, nothing freed since: no second walk of the arenas. */
    assert_false(svc__memory_tick(&m, 21000));
    assert_int_equal(m.n_trims, 1);

    /* Still quiet, and 4 MiB more freed meanwhile (a connection closed): trimmed again. */
    void *pin2 = free_a_hole();
    bool is_trimmed = svc__memory_tick(&m, 31000);
    if (HAS_GLIBC_HEAP) {
        assert_true(is_trimmed);
        assert_int_equal(m.n_trims, 2);
        assert_true(m.is_released);
    }

    /* Still quiet, and memory allocated while busy is freed now (a connection the server
     * closed after its idle bound): the free heap grew, trimmed again. */
    void *late[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++) {
        late[i] = malloc(64 * 1024);
        assert_non_null(late[i]);
        memset(late[i], 1, 64 * 1024);
    }
    void *pin3 = malloc(64);
    assert_non_null(pin3);
    burn(60000);
    assert_false(svc__memory_tick(&m, 32000)); /* busy while it allocated */
    assert_true(svc__memory_tick(&m, 42000));  /* the first quiet tick */
    for (int i = 0; i < N_BLOCKS; i++) {
        free(late[i]);
    }
    is_trimmed = svc__memory_tick(&m, 52000);
    if (HAS_GLIBC_HEAP) {
        assert_true(is_trimmed);
        assert_true(m.is_released);
    }
    free(pin3);

    /* A tick that does not move time forward cannot tell: not trimmed. */
    uint64_t n = m.n_trims;
    assert_false(svc__memory_tick(&m, 52000));
    assert_int_equal(m.n_trims, n);

    /* Busy again, then quiet: the first quiet tick trims whatever the heap holds. */
    burn(60000);
    assert_false(svc__memory_tick(&m, 53000));
    assert_true(svc__memory_tick(&m, 63000));
    assert_int_equal(m.n_trims, n + 1);
    free(pin1);
    free(pin2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_memory_trims_only_when_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
