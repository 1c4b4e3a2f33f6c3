/* Load generator for the TLS echo benchmarks: C and OpenSSL, no Python, so
 * every loop is measured against the same client.
 *
 *   tls_echo_client [--warmup] [--stats] HOST PORT CONNS MSG_SIZE SECONDS
 *
 * Each connection does its TLS handshake first (not timed), then sends
 * MSG_SIZE bytes, waits until the same number of bytes came back, and
 * repeats, for SECONDS. Prints "<round trips> <seconds>". The server's
 * certificate is not verified: the benchmark measures the server.
 *
 * The message goes out with one SSL_write of the whole message (OpenSSL
 * cuts it into records of at most 16 KiB: one record for 1 KiB, seven for
 * 100 KiB); a round trip counts when MSG_SIZE bytes came back, however many
 * records and reads that took.
 *
 * --warmup: before the timed connections open, one connection does its
 * handshake, one round trip, a TLS close_notify, and waits for the server
 * to close it. The server has then served and closed one connection, as any
 * running server has; without it the timed window is the first traffic of a
 * fresh server process (which matters to uvloop: glibc's malloc serves its
 * 256 KiB read per record with mmap until a large block has been freed, see
 * docs/performance.md, "TLS").
 * --stats: to stderr, per round trip of the timed window: the TLS records
 * sent and received (and their mean size on the wire, header included), and
 * the client's SSL_write and SSL_read calls that moved data. */
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
static int timing; /* counting records: only in the timed window */
static long long rec_out, rec_in, rec_out_bytes, rec_in_bytes, writes, reads;

/* Called by OpenSSL with each record's 5-byte header, sent or received. */
static void
on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl,
       void *arg)
{
    (void)version, (void)ssl, (void)arg;
    if (!timing || content_type != SSL3_RT_HEADER || len < 5)
        return;
    const unsigned char *h = buf;
    long long size = 5 + ((h[3] << 8) | h[4]);
    if (write_p) {
        rec_out++;
        rec_out_bytes += size;
    } else {
        rec_in++;
        rec_in_bytes += size;
    }
}

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
                writes++;
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
            reads++;
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

/* --warmup: one connection, one round trip, close_notify, then wait for
 * the server's end of stream (its close) before the timed connections. */
static int
warmup(SSL_CTX *ctx, const char *host, const char *port)
{
    conn_t c = {0};
    if (connect_one(ctx, host, port, &c) < 0)
        return -1;
    int flags = fcntl(c.fd, F_GETFL);
    fcntl(c.fd, F_SETFL, flags & ~O_NONBLOCK);
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, NULL);
    size_t got = 0;
    for (size_t sent = 0; sent < msg;) { /* records of at most 16 KiB */
        int w = SSL_write(c.ssl, out + sent, (int)(msg - sent));
        if (w <= 0)
            goto failed;
        sent += (size_t)w;
    }
    while (got < msg) {
        int r = SSL_read(c.ssl, in, 1 << 20);
        if (r <= 0)
            goto failed;
        got += (size_t)r;
    }
    SSL_shutdown(c.ssl);
    while (recv(c.fd, in, 1 << 20, 0) > 0)
        ; /* until the server closes its end */
    SSL_free(c.ssl);
    close(c.fd);
    return 0;
failed:
    fprintf(stderr, "warm-up connection failed\n");
    ERR_print_errors_fp(stderr);
    return -1;
}

int
main(int argc, char **argv)
{
    int warm = 0, stats = 0;
    while (argc > 1 && argv[1][0] == '-' && argv[1][1] == '-') {
        if (strcmp(argv[1], "--warmup") == 0)
            warm = 1;
        else if (strcmp(argv[1], "--stats") == 0)
            stats = 1;
        else
            break;
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (argc != 6) {
        fprintf(stderr, "usage: %s [--warmup] [--stats] HOST PORT CONNS MSG_SIZE SECONDS\n",
                argv[0]);
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
    SSL_CTX_set_msg_callback(ctx, on_msg);
    ep = epoll_create1(0);
    if (warm && warmup(ctx, argv[1], argv[2]) < 0)
        return 1;
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) {
        if (connect_one(ctx, argv[1], argv[2], &conns[i]) < 0)
            return 1;
    }
    timing = 1;
    double start = now(), end = start + seconds;
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            if (step(evs[i].data.ptr) < 0)
                return 1;
        }
    }
    timing = 0;
    printf("%lld %.6f\n", trips, now() - start);
    if (stats && trips) {
        double t = (double)trips;
        fprintf(stderr,
                "per round trip: records sent %.3f (mean %.0f B), received %.3f (mean %.0f B); "
                "SSL_write %.3f, SSL_read %.3f\n",
                rec_out / t, rec_out ? (double)rec_out_bytes / rec_out : 0.0, rec_in / t,
                rec_in ? (double)rec_in_bytes / rec_in : 0.0, writes / t, reads / t);
    }
    return 0;
}
