/* Load generator for the echo benchmarks: C, no Python, so every loop is
 * measured against the same client.
 *
 *   echo_client HOST PORT CONNS MSG_SIZE SECONDS      (TCP)
 *   echo_client unix:PATH - CONNS MSG_SIZE SECONDS     (Unix socket)
 *
 * Each connection sends MSG_SIZE bytes, waits until the same number of bytes
 * came back, and repeats, for SECONDS. Prints "<round trips> <seconds>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    size_t sent;
    size_t received;
} conn_t;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
connect_one(const char *host, const char *port)
{
    int fd;
    if (strncmp(host, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strncpy(sa.sun_path, host + 5, sizeof(sa.sun_path) - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return -1;
    }
    else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
        inet_pton(AF_INET, host, &sa.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return -1;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST|unix:PATH PORT CONNS MSG_SIZE SECONDS\n", argv[0]);
        return 2;
    }
    int nconns = atoi(argv[3]);
    size_t msg = (size_t)atol(argv[4]);
    double seconds = atof(argv[5]);
    char *out = malloc(msg), *in = malloc(1 << 20);
    memset(out, 'x', msg);
    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = connect_one(argv[1], argv[2]);
        if (conns[i].fd < 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    long long trips = 0;
    double start = now(), end = start + seconds;
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && c->sent < msg) {
                ssize_t w = write(c->fd, out + c->sent, msg - c->sent);
                if (w > 0)
                    c->sent += (size_t)w;
                if (c->sent == msg) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r;
                while ((r = read(c->fd, in, 1 << 20)) > 0)
                    c->received += (size_t)r;
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    fprintf(stderr, "connection closed by server\n");
                    return 1;
                }
                if (c->received >= msg) {
                    trips++;
                    c->received -= msg;
                    c->sent = 0;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
        }
    }
    printf("%lld %.6f\n", trips, now() - start);
    return 0;
}
