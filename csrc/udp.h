/* Datagram transports: asyncio.DatagramTransport in C, over uv_udp_t for
 * AF_INET/AF_INET6 sockets and over the loop's own poller for AF_UNIX ones
 * (libuv's uv_udp_t accepts only IP sockets). */
#ifndef PL_UDP_H
#define PL_UDP_H

#include "loop.h"

typedef enum {
    PL_UDP_INIT = 0, /* allocated; no socket attached yet */
    PL_UDP_OPEN,     /* socket attached; reads and sends allowed */
    PL_UDP_CLOSING,  /* uv_close called, close callback pending (libuv backend) */
    PL_UDP_CLOSED    /* socket released (handle memory freed) */
} pl_udp_state;

typedef struct PLUdp {
    PyObject_HEAD
    /* Same offset as asyncio.BaseTransport's `_extra` slot: this type is a
     * real subclass of asyncio.DatagramTransport and the slot is shared. */
    PyObject *extra;
    PLLoop *loop;
    uv_udp_t *uvh;          /* IP sockets: PyMem-allocated, freed in the close callback */
    PyObject *protocol;
    PyObject *sock;         /* the Python socket the transport owns */
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
    PyObject *weakreflist;
    pl_udp_state state;
    int fd;
    int family;
    char connected;         /* the socket has a peer: send() without address */
    char closing;           /* close()/abort() called */
    char paused;            /* pause_reading() in effect */
    char reading;           /* receiving (uv_udp_recv_start or reader registered) */
    char in_batch;          /* inside libuv's callbacks for one recvmmsg */
    char stop_deferred;     /* paused during a batch: stop receiving when it ends */
    char writing;           /* AF_UNIX: writer registered */
    char protocol_connected;
    char protocol_paused;   /* pause_writing() was called */
    int conn_lost;          /* as asyncio: > 0 once connection_lost is scheduled */
    Py_ssize_t buffer_size; /* what get_write_buffer_size() reports */
    size_t pending;         /* datagrams queued (uv requests or queue items) */
    Py_ssize_t high_water;
    Py_ssize_t low_water;
} PLUdp;

extern PyObject *pl_udp_type; /* heap type, subclass of asyncio.DatagramTransport */

int pl_udp_init_types(PyObject *module);

/* loop.close() with this transport still open (called from the loop's walk
 * over its libuv handles). */
void pl_udp_close_for_loop(uv_handle_t *handle);

/* The loop's tp_traverse, for a UDP handle: as pl_stream_traverse_uv. */
int pl_udp_traverse_uv(uv_handle_t *handle, visitproc visit, void *arg);

#endif
