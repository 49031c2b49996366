/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/log.c: line format, JSON lines, levels, escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"

/* Capture log output in a temporary file and return its text (owned). */
static FILE *capture;

static int setup(void **state)
{
    (void)state;
    capture = tmpfile();
    if (capture == NULL) {
        return -1;
    }
    sk__log_set_stream(capture);
    sk__log_set_service("svc");
    sk__log_set_format(SK__LOG_FORMAT_TEXT);
    sk_log_set_level(SK_LOG_LEVEL_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sk__log_set_stream(NULL);
    sk__log_set_service(NULL);
    sk__log_set_format(SK__LOG_FORMAT_TEXT);
    sk_log_set_level(SK_LOG_LEVEL_INFO);
    fclose(capture);
    return 0;
}

static char *captured(void)
{
    static char text[65536];
    size_t n;

    fflush(capture);
    rewind(capture);
    n = fread(text, 1, sizeof(text) - 1, capture);
    text[n] = '\0';
    return text;
}

static void test_sk_log_write_text_format(void **state)
{
    (void)state;
    sk_log_write(SK_LOG_LEVEL_INFO, "mod", "hello %d", 42);
    char *t = captured();
    /* 2026-11-25T10:00:00.123Z INFO svc mod hello 42 */
    assert_int_equal(strlen(t), 24 + strlen(" INFO svc mod hello 42\n"));
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    assert_string_equal(t + 24, " INFO svc mod hello 42\n");
}

static void test_sk_log_write_json_format(void **state)
{
    (void)state;
    sk__log_set_format(SK__LOG_FORMAT_JSON);
    sk_log_write(SK_LOG_LEVEL_WARN, "mod", "say \"hi\"\n\x01 ok");
    char *t = captured();
    json_error_t jerr;
    json_t *v = json_loads(t, 0, &jerr);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_object_get(v, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(v, "service")), "svc");
    assert_string_equal(json_string_value(json_object_get(v, "module")), "mod");
    assert_string_equal(json_string_value(json_object_get(v, "msg")), "say \"hi\"\n\x01 ok");
    assert_int_equal(strlen(json_string_value(json_object_get(v, "ts"))), 24);
    json_decref(v);
    assert_int_equal(strchr(t, '\n') - t, (long)strlen(t) - 1); /* exactly one line */
}

static void test_sk_log_write_escapes_control_characters(void **state)
{
    (void)state;
    sk_log_write(SK_LOG_LEVEL_ERROR, "m", "a\nb\rc\td\x1b[31m\\e\xff");
    char *t = captured();
    assert_non_null(strstr(t, " ERROR svc m a\\nb\\rc\\td\\x1b[31m\\\\e\\xff\n"));
    assert_int_equal(strchr(t, '\n') - t, (long)strlen(t) - 1);
}

static void test_sk_log_write_keeps_valid_utf8(void **state)
{
    (void)state;
    sk_log_write(SK_LOG_LEVEL_INFO, "m", "caf\xc3\xa9");
    assert_non_null(strstr(captured(), "caf\xc3\xa9\n"));
}

static void test_sk_log_write_truncates_long_message(void **state)
{
    (void)state;
    static char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    sk_log_write(SK_LOG_LEVEL_INFO, "m", "%s", big);
    char *t = captured();
    assert_true(strlen(t) < 4200);
    assert_non_null(strstr(t, "x...\n"));
}

static void test_sk_log_levels_skip_arguments(void **state)
{
    (void)state;
    int evaluated = 0;
    sk_log_set_level(SK_LOG_LEVEL_WARN);
    SK_LOG_INFO("not shown %d", ++evaluated);
    SK_LOG_DEBUG("not shown %d", ++evaluated);
    assert_int_equal(evaluated, 0);
    SK_LOG_WARN("shown %d", ++evaluated);
    SK_LOG_ERROR("shown %d", ++evaluated);
    assert_int_equal(evaluated, 2);
    char *t = captured();
    assert_non_null(strstr(t, " WARN svc app shown 1\n"));
    assert_non_null(strstr(t, " ERROR svc app shown 2\n"));
}

static void test_sk_log_set_level_clamps(void **state)
{
    (void)state;
    sk_log_set_level((sk_log_level)99);
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_DEBUG);
    sk_log_set_level((sk_log_level)-5);
    assert_int_equal(sk_log_level_current, SK_LOG_LEVEL_ERROR);
}

static void test_sk__log_level_parse(void **state)
{
    (void)state;
    sk_log_level l = SK_LOG_LEVEL_INFO;
    assert_true(sk__log_level_parse("debug", &l));
    assert_int_equal(l, SK_LOG_LEVEL_DEBUG);
    assert_true(sk__log_level_parse("ERROR", &l));
    assert_int_equal(l, SK_LOG_LEVEL_ERROR);
    assert_true(sk__log_level_parse("warn", &l));
    assert_int_equal(l, SK_LOG_LEVEL_WARN);
    assert_false(sk__log_level_parse("verbose", &l));
    assert_false(sk__log_level_parse(NULL, &l));
}

static void test_sk_log_write_null_module_and_format(void **state)
{
    (void)state;
    sk_log_write(SK_LOG_LEVEL_INFO, NULL, NULL);
    assert_non_null(strstr(captured(), " INFO svc app \n"));
}

static void *log_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        sk_log_write(SK_LOG_LEVEL_INFO, "t", "line %d of a thread that writes a lot", i);
    }
    return NULL;
}

static void test_sk_log_write_lines_never_interleave(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, log_thread, NULL), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    char *text = captured();
    int lines = 0;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_non_null(strstr(line, " INFO svc t line "));
        assert_memory_equal(nl - 5, "a lot", 5);
        assert_true(nl - line > 40);
        lines++;
        line = nl + 1;
    }
    assert_int_equal(lines, 800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sk_log_write_text_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_json_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_escapes_control_characters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_keeps_valid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_truncates_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_levels_skip_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_set_level_clamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk__log_level_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_null_module_and_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sk_log_write_lines_never_interleave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
