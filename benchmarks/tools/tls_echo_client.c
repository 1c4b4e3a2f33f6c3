/* Load generator for the TLS echo benchmarks: C and OpenSSL, no Python, so
 * every loop is measured against the same client.
 *
 *   tls_echo_client HOST PORT CONNS MSG_SIZE SECONDS
 *
 * Each connection does its TLS handshake first (not timed), then sends
 * MSG_SIZE bytes, waits until the same number of bytes came back, and
 * repeats, for SECONDS. Prints "<round trips> <seconds>". The server's
 * certificate is not verified: the benchmark measures the server. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    SSL *ssl;
    size_t sent;
    size_t received;
    unsigned int events; /* what epoll watches for this connection */
} conn_t;

static int ep;
static size_t msg;
static char *out, *in;
static long long trips;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
watch(conn_t *c, unsigned int events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* Blocking connect and handshake, then non-blocking for the echo phase. */
static int
connect_one(SSL_CTX *ctx, const char *host, const char *port, conn_t *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        ERR_print_errors_fp(stderr);
        return -1;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->events = EPOLLIN | EPOLLOUT;
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Write what is left of the message, read what came back, as far as the
 * socket allows; then wait for whatever OpenSSL is blocked on. 0 or -1. */
static int
step(conn_t *c)
{
    for (;;) {
        if (c->sent < msg) {
            int w = SSL_write(c->ssl, out + c->sent, (int)(msg - c->sent));
            if (w > 0) {
                c->sent += (size_t)w;
                continue;
            }
            int err = SSL_get_error(c->ssl, w);
            if (err == SSL_ERROR_WANT_WRITE) {
                watch(c, EPOLLIN | EPOLLOUT);
                return 0;
            }
            if (err != SSL_ERROR_WANT_READ)
                goto failed;
        }
        int r = SSL_read(c->ssl, in, 1 << 20);
        if (r > 0) {
            c->received += (size_t)r;
            if (c->received >= msg) {
                trips++;
                c->received -= msg;
                c->sent = 0;
            }
            continue;
        }
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ) {
            watch(c, EPOLLIN);
            return 0;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            watch(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        goto failed;
    }
failed:
    fprintf(stderr, "connection failed or closed by server\n");
    ERR_print_errors_fp(stderr);
    return -1;
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNS MSG_SIZE SECONDS\n", argv[0]);
        return 2;
    }
    int nconns = atoi(argv[3]);
    msg = (size_t)atol(argv[4]);
    double seconds = atof(argv[5]);
    out = malloc(msg);
    in = malloc(1 << 20);
    memset(out, 'x', msg);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) {
        if (connect_one(ctx, argv[1], argv[2], &conns[i]) < 0)
            return 1;
    }
    double start = now(), end = start + seconds;
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            if (step(evs[i].data.ptr) < 0)
                return 1;
        }
    }
    printf("%lld %.6f\n", trips, now() - start);
    return 0;
}
