/* SPDX-License-Identifier: MIT */
/*
 * CLI helpers: argument and port parsing, flag > environment > default
 * precedence, files, the pid file lock (held by another process), program
 * lookup and the plain-HTTP readiness probe against small local servers.
 */
/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "sk_test.h"

static void test_cli_port_parse(void **state)
{
    int port = -1;
    (void)state;

    assert_int_equal(cli_port_parse("1", &port), SK_OK);
    assert_int_equal(port, 1);
    assert_int_equal(cli_port_parse("65535", &port), SK_OK);
    assert_int_equal(port, 65535);
    const char *bad[] = { "0", "65536", "", "-1", "+80", " 80", "80 ", "0x50", "123456", "8o" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        SK_TEST_ASSERT_ERR(cli_port_parse(bad[i], &port), SK_EINVAL, "expected a port 1..65535");
        assert_int_equal(port, 0);
    }
    SK_TEST_ASSERT_ERR(cli_port_parse(NULL, &port), SK_EINVAL, "got nothing");
    SK_TEST_ASSERT_ERR(cli_port_parse("80", NULL), SK_EINVAL, "out must not be NULL");
}

static void test_cli_flag_forms(void **state)
{
    char *argv[] = { (char *)"up",        (char *)"--port",    (char *)"80",
                     (char *)"--data=/x", (char *)"--config=", (char *)"--portal",
                     (char *)"--config" };
    int argc = 7, i = 1;
    const char *v = NULL;
    (void)state;

    assert_int_equal(cli_flag(argc, argv, &i, "--port", &v), 1);
    assert_string_equal(v, "80");
    assert_int_equal(i, 2);
    i = 3;
    assert_int_equal(cli_flag(argc, argv, &i, "--data", &v), 1);
    assert_string_equal(v, "/x");
    assert_int_equal(i, 3);
    i = 4;
    assert_int_equal(cli_flag(argc, argv, &i, "--config", &v), -1);
    i = 5;
    assert_int_equal(cli_flag(argc, argv, &i, "--port", &v), 0);
    assert_null(v);
    i = 6; /* last argument, no value */
    assert_int_equal(cli_flag(argc, argv, &i, "--config", &v), -1);
    assert_true(cli_is_help("--help"));
    assert_true(cli_is_help("-h"));
    assert_true(cli_is_help("help"));
    assert_false(cli_is_help("--helpme"));
}

static void test_cli_data_dir_choose_precedence(void **state)
{
    (void)state;
    unsetenv("SKALD_DATA");
    assert_string_equal(cli_data_dir_choose(NULL), "./var");
    setenv("SKALD_DATA", "", 1);
    assert_string_equal(cli_data_dir_choose(NULL), "./var");
    setenv("SKALD_DATA", "/env/data", 1);
    assert_string_equal(cli_data_dir_choose(NULL), "/env/data");
    assert_string_equal(cli_data_dir_choose("/flag"), "/flag");
    unsetenv("SKALD_DATA");
}

static void test_cli_gateway_port_choose_precedence(void **state)
{
    int port = -1;
    (void)state;

    unsetenv("SKALD_GATEWAY_PORT");
    assert_int_equal(cli_gateway_port_choose(0, 8080, &port), SK_OK);
    assert_int_equal(port, 8080);
    setenv("SKALD_GATEWAY_PORT", "9090", 1);
    assert_int_equal(cli_gateway_port_choose(0, 8080, &port), SK_OK);
    assert_int_equal(port, 9090);
    assert_int_equal(cli_gateway_port_choose(7070, 8080, &port), SK_OK);
    assert_int_equal(port, 7070);
    setenv("SKALD_GATEWAY_PORT", "http", 1);
    SK_TEST_ASSERT_ERR(cli_gateway_port_choose(0, 8080, &port), SK_EINVAL,
                       "SKALD_GATEWAY_PORT: expected a port 1..65535, got \"http\"");
    unsetenv("SKALD_GATEWAY_PORT");
    SK_TEST_ASSERT_ERR(cli_gateway_port_choose(0, 0, &port), SK_EINVAL, "gateway.port");
    SK_TEST_ASSERT_ERR(cli_gateway_port_choose(0, 8080, NULL), SK_EINVAL, "out");
}

static void test_cli_files(void **state)
{
    char dir[64], path[128], sub[128];
    char *line = NULL;
    struct stat sb;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(sub, sizeof(sub), "%s/a", dir);
    assert_int_equal(cli_mkdir(sub, 0700), SK_OK);
    assert_int_equal(cli_mkdir(sub, 0700), SK_OK); /* exists: fine */
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    snprintf(path, sizeof(path), "%s/f", dir);
    SK_TEST_ASSERT_ERR(cli_file_read_line(path, 100, &line), SK_ENOTFOUND, "reading");
    assert_null(line);
    assert_int_equal(cli_file_write(path, "tls://127.0.0.1:4222\nsecond\n", 0600), SK_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(cli_file_read_line(path, 100, &line), SK_OK);
    assert_string_equal(line, "tls://127.0.0.1:4222");
    sk_free(line);
    SK_TEST_ASSERT_ERR(cli_file_read_line(path, 10, &line), SK_ELIMIT, path);
    assert_null(line);
    assert_int_equal(cli_file_write(path, "", 0600), SK_OK);
    assert_int_equal(cli_file_read_line(path, 100, &line), SK_OK);
    assert_string_equal(line, "");
    sk_free(line);
    /* A regular file where a directory is wanted. */
    SK_TEST_ASSERT_ERR(cli_mkdir(path, 0700), SK_EIO, "exists and is not a directory");
    snprintf(path, sizeof(path), "%s/no/such/f", dir);
    SK_TEST_ASSERT_ERR(cli_file_write(path, "x", 0600), SK_EIO, "writing");
    sk_test_rmrf(dir);
}

static void test_cli_pidfile_refuses_second_holder(void **state)
{
    char dir[64], path[128];
    cli_pidfile pf = { .fd = -1 };
    pid_t other = 0;
    int to_child[2], to_parent[2];
    char c = 0;
    (void)state;

    assert_int_equal(sk_test_tmpdir(dir, sizeof(dir)), SK_OK);
    snprintf(path, sizeof(path), "%s/skald.pid", dir);
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    /* POSIX record locks are per process: another process must hold it. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        cli_pidfile held = { .fd = -1 };
        pid_t o = 0;
        char r = cli_pidfile_acquire(&held, path, &o) == SK_OK ? 'y' : 'n';
        (void)!write(to_parent[1], &r, 1);
        (void)!read(to_child[0], &r, 1);
        _exit(0); /* exits without release: the kernel drops the lock */
    }
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    SK_TEST_ASSERT_ERR(cli_pidfile_acquire(&pf, path, &other), SK_EEXIST, "another `skald up`");
    assert_int_equal(other, child);
    assert_int_equal(write(to_child[1], "x", 1), 1);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    /* The holder died without cleaning up: the stale file is taken over. */
    assert_int_equal(cli_pidfile_acquire(&pf, path, &other), SK_OK);
    char *text = sk_test_read_file(path, NULL);
    char want[32];
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    assert_string_equal(text, want);
    sk_free(text);
    cli_pidfile_release(&pf);
    assert_int_equal(access(path, F_OK), -1);
    cli_pidfile_release(&pf); /* idempotent */
    SK_TEST_ASSERT_ERR(cli_pidfile_acquire(NULL, path, &other), SK_EINVAL, "pf");
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
    sk_test_rmrf(dir);
}

static void test_cli_program_find(void **state)
{
    char *path = NULL, *dir = NULL;
    (void)state;

    assert_int_equal(cli_program_find("sh", &path), SK_OK);
    assert_non_null(strstr(path, "/sh"));
    sk_free(path);
    SK_TEST_ASSERT_ERR(cli_program_find("skald-no-such-program", &path), SK_ENOTFOUND,
                       "skald-no-such-program not found");
    assert_null(path);
    assert_int_equal(cli_self_dir(&dir), SK_OK);
    assert_true(dir[0] == '/');
    sk_free(dir);
}

/* A one-shot HTTP server: accepts one connection and writes @p answer (or nothing). */
typedef struct mini_server {
    int fd;
    int port;
    const char *answer; /* NULL = accept, then say nothing until closed */
    pthread_t thread;
} mini_server;

static void *mini_run(void *arg)
{
    mini_server *m = arg;
    int c = accept(m->fd, NULL, NULL);
    if (c >= 0) {
        char buf[512];
        (void)!read(c, buf, sizeof(buf));
        if (m->answer != NULL) {
            (void)!write(c, m->answer, strlen(m->answer));
        } else {
            (void)!read(c, buf, sizeof(buf)); /* until the client gives up */
        }
        close(c);
    }
    return NULL;
}

static void mini_start(mini_server *m, const char *answer)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    m->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(m->fd >= 0);
    assert_int_equal(bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(m->fd, 4), 0);
    assert_int_equal(getsockname(m->fd, (struct sockaddr *)&sa, &len), 0);
    m->port = ntohs(sa.sin_port);
    m->answer = answer;
    assert_int_equal(pthread_create(&m->thread, NULL, mini_run, m), 0);
}

static void mini_stop(mini_server *m)
{
    pthread_join(m->thread, NULL);
    close(m->fd);
}

static void test_cli_http_get_status_answers(void **state)
{
    mini_server m;
    int status = -1;
    (void)state;

    mini_start(&m, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(cli_http_get_status(m.port, "/readyz", 2000, &status), SK_OK);
    assert_int_equal(status, 503);
    mini_stop(&m);
    mini_start(&m, "HTTP/1.0 200 OK\r\n\r\n");
    assert_int_equal(cli_http_get_status(m.port, "/readyz", 2000, &status), SK_OK);
    assert_int_equal(status, 200);
    mini_stop(&m);
    mini_start(&m, "SSH-2.0-OpenSSH\r\n");
    SK_TEST_ASSERT_ERR(cli_http_get_status(m.port, "/readyz", 2000, &status), SK_EPROTO,
                       "not an HTTP/1.x answer");
    mini_stop(&m);
    mini_start(&m, "HTTP/1.1");
    SK_TEST_ASSERT_ERR(cli_http_get_status(m.port, "/readyz", 2000, &status), SK_EPROTO,
                       "connection closed before an answer");
    mini_stop(&m);
}

static void test_cli_http_get_status_failures(void **state)
{
    mini_server m;
    int status = -1, port = 0;
    (void)state;

    mini_start(&m, NULL);
    SK_TEST_ASSERT_ERR(cli_http_get_status(m.port, "/readyz", 100, &status), SK_ETIMEDOUT,
                       "no answer in time");
    mini_stop(&m);
    assert_true(cli_port_is_free(0, &port));
    assert_false(cli_port_accepts(port));
    SK_TEST_ASSERT_ERR(cli_http_get_status(port, "/readyz", 1000, &status), SK_EUNAVAILABLE,
                       "connecting to 127.0.0.1");
    assert_int_equal(status, 0);
    SK_TEST_ASSERT_ERR(cli_http_get_status(0, "/readyz", 100, &status), SK_EINVAL, "bad port");
    SK_TEST_ASSERT_ERR(cli_http_get_status(80, "readyz", 100, &status), SK_EINVAL, "path");
    SK_TEST_ASSERT_ERR(cli_http_get_status(80, "/readyz", 100, NULL), SK_EINVAL, "status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_port_parse),
        cmocka_unit_test(test_cli_flag_forms),
        cmocka_unit_test(test_cli_data_dir_choose_precedence),
        cmocka_unit_test(test_cli_gateway_port_choose_precedence),
        cmocka_unit_test(test_cli_files),
        cmocka_unit_test(test_cli_pidfile_refuses_second_holder),
        cmocka_unit_test(test_cli_program_find),
        cmocka_unit_test(test_cli_http_get_status_answers),
        cmocka_unit_test(test_cli_http_get_status_failures),
    };
    if (sk_init("test-cli") != SK_OK) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
