/* The physical reference for the echo benchmarks: an echo server written
 * directly on libuv, no Python at all.
 *   uv_echo_server PORT|unix:PATH     prints "ready" once listening */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} wreq_t;

static uv_loop_t *loop;

static void
alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void
close_cb(uv_handle_t *h)
{
    free(h);
}

static void
write_cb(uv_write_t *req, int status)
{
    (void)status;
    wreq_t *w = (wreq_t *)req;
    free(w->buf.base);
    free(w);
}

static void
read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
        int n = uv_try_write(s, &b, 1);
        if (n == nread) {
            free(buf->base);
            return;
        }
        if (n < 0)
            n = 0;
        wreq_t *w = malloc(sizeof(*w));
        w->buf = uv_buf_init(buf->base, (unsigned)nread);
        uv_buf_t rest = uv_buf_init(buf->base + n, (unsigned)(nread - n));
        uv_write(&w->req, s, &rest, 1, write_cb);
        return;
    }
    free(buf->base);
    if (nread < 0)
        uv_close((uv_handle_t *)s, close_cb);
}

static int is_unix;

static void
conn_cb(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_stream_t *c;
    if (is_unix) {
        c = malloc(sizeof(uv_pipe_t));
        uv_pipe_init(loop, (uv_pipe_t *)c, 0);
    }
    else {
        c = malloc(sizeof(uv_tcp_t));
        uv_tcp_init(loop, (uv_tcp_t *)c);
        uv_tcp_nodelay((uv_tcp_t *)c, 1);
    }
    if (uv_accept(server, c) == 0)
        uv_read_start(c, alloc_cb, read_cb);
    else
        uv_close((uv_handle_t *)c, close_cb);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT|unix:PATH\n", argv[0]);
        return 2;
    }
    loop = uv_default_loop();
    uv_stream_t *server;
    if (strncmp(argv[1], "unix:", 5) == 0) {
        is_unix = 1;
        static uv_pipe_t p;
        uv_pipe_init(loop, &p, 0);
        if (uv_pipe_bind(&p, argv[1] + 5) != 0)
            return 1;
        server = (uv_stream_t *)&p;
    }
    else {
        static uv_tcp_t t;
        struct sockaddr_in addr;
        uv_tcp_init(loop, &t);
        uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
        if (uv_tcp_bind(&t, (const struct sockaddr *)&addr, 0) != 0)
            return 1;
        server = (uv_stream_t *)&t;
    }
    if (uv_listen(server, 1024, conn_cb) != 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
