/* Datagram transports: asyncio.DatagramTransport in C, over uv_udp_t for
 * AF_INET/AF_INET6 sockets and over the loop's own poller for AF_UNIX ones
 * (libuv's uv_udp_t accepts only IP sockets). */
#ifndef PL_UDP_H
#define PL_UDP_H

#include "uvhandle.h"

#include <sys/socket.h>

typedef struct PLUdp {
    PL_UVHANDLE_HEAD        /* uvh: a uv_udp_t for IP sockets, NULL for AF_UNIX */
    PyObject *address;      /* remote address the endpoint was made for, or NULL */
    PyObject *queue;        /* AF_UNIX: list of (bytes, addr) not sent yet */
    /* Datagrams read by one recvmmsg after pause_reading() was called for an
     * earlier one of the same batch: (bytes, addr) tuples, delivered in order
     * once reading resumes. NULL when none. */
    PyObject *backlog;
    /* The last peer address seen each way, kept so that a steady peer costs
     * no address conversion per datagram (getnameinfo formats with
     * sprintf; parsing a tuple back runs inet_pton). Tuples are immutable,
     * so the sent one is matched by identity. */
    PyObject *rx_addr;
    struct sockaddr_storage rx_sa;
    PyObject *tx_addr;
    struct sockaddr_storage tx_sa;
    int fd;
    int family;
    char connected;         /* the socket has a peer: send() without address */
    char in_batch;          /* inside libuv's callbacks for one recvmmsg */
    char stop_deferred;     /* paused during a batch: stop receiving when it ends */
    char writing;           /* AF_UNIX: writer registered */
    Py_ssize_t buffer_size; /* what get_write_buffer_size() reports */
    size_t pending;         /* datagrams queued (uv requests or queue items) */
} PLUdp;

extern PyObject *pl_udp_type; /* heap type, subclass of asyncio.DatagramTransport */

int pl_udp_init_types(PyObject *module);

#endif
