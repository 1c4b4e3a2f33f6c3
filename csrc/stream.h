/* Stream transports (TCP and Unix sockets) over uv_stream_t: the read and
 * write engine, flow control and the close protocol asyncio expects. */
#ifndef PL_STREAM_H
#define PL_STREAM_H

#include "uvhandle.h"

typedef struct PLStream {
    PL_UVHANDLE_HEAD        /* uvh: a uv_tcp_t or uv_pipe_t (AF_UNIX) */
    PyObject *data_received_meth; /* bound protocol.data_received (Protocol only) */
    PyObject *get_buffer_meth;    /* bound get_buffer / buffer_updated (BufferedProtocol only) */
    PyObject *buffer_updated_meth;
    PyObject *lost_hook;    /* called once after connection_lost (Server._detach) */
    char lost_hook_self;    /* ... with the transport as its argument (3.13+'s _detach) */
    char server_counted;    /* attached in C to the stdlib's Server (its count or client set) */
    /* Accepted in C (accept.c): the socket object is made only when asked
     * for (`_sock`, `_extra`, get_extra_info('socket')); until then `sock`
     * is NULL and lazy_fd the descriptor libuv owns (-1 once made or when a
     * socket object was given). */
    int lazy_fd;
    int lazy_family, lazy_type, lazy_proto;
    int fd_slot;            /* its entry in the table of open streams by fd, or -1 */
    PyObject *empty_waiter; /* future set once nothing is queued (loop.sendfile) */
    /* A protocol that takes raw bytes from C (TLS): reads go there from the
     * loop's buffer, not through data_received/get_buffer. NULL otherwise. */
    pl_uvh_raw_in_fn raw_in;
    char eof_sent;          /* write_eof() called */
    char buffered;          /* protocol is an asyncio.BufferedProtocol */
    char rbuf_held;         /* rbuf holds a get_buffer() view */
    char eof_pending;       /* EOF seen, eof_received() not called yet */
    /* libuv calls the read callback right after the allocation callback,
     * on the same pass, even when reading was stopped in between (its read
     * callback pointer then NULL): while get_buffer() runs, stopping and
     * closing are only recorded, and the read callback does them. */
    char in_alloc;          /* inside pl__stream_alloc_cb's get_buffer() call */
    char stop_deferred;     /* uv_read_stop owed once the read callback runs */
    char close_deferred;    /* uv_close owed once the read callback runs */
    unsigned long long read_iteration; /* loop iteration of the last data read */
    size_t write_size;      /* bytes queued in pending uv_write requests */
    size_t reqs;            /* pending write/shutdown requests, each holding a reference */
    Py_buffer rbuf;
    PyObject *alloc_error;  /* what get_buffer() raised, for the read callback */
    /* The last write() of a data_received() call, not sent yet (a bytes
     * object): sent when the call returns, or with the FIN in one segment
     * when close() comes first (stream.c, "writing"). NULL otherwise. */
    PyObject *held;
    char in_recv;           /* inside this transport's data_received() call */
} PLStream;

extern PyObject *pl_stream_tcp_type;   /* heap type, subclass of asyncio.Transport */

int pl_stream_init_types(PyObject *module);

PyObject *Loop__new_stream_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

/* A stream transport on `fd`, a non-blocking connected stream socket of `family`
 * (AF_INET, AF_INET6, AF_UNIX; type and proto kept for the socket object),
 * with no socket object until one is asked for; `extra` is the transport's
 * own dict from now on. On failure NULL with the error set, and the fd stays
 * the caller's to close. */
PLStream *pl_stream_new_fd(PLLoop *loop, int fd, int family, int type, int proto,
                           PyObject *protocol, PyObject *extra, PyObject *context);

/* loop._fd_transport(fd): the loop's open stream transport on fd, or None
 * (loop._transports finds pyloop's streams through it). */
PyObject *Loop__fd_transport(PLLoop *self, PyObject *fd);
/* loop._set_fd_transport(fd, transport or None): stream.c's side of
 * loop._transports[fd] = transport / del loop._transports[fd]. */
PyObject *Loop__set_fd_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);
/* loop._open_streams(): a list of the loop's open stream transports. */
PyObject *Loop__open_streams(PLLoop *self, PyObject *ignored);

/* Close a transport that never got connected (its set-up failed): no
 * connection_lost, libuv closes the fd. */
void pl_stream_discard(PLStream *t);

/* transport._server = server and server._attach(...) as the stdlib's
 * transports do; server._detach(...) runs once after connection_lost. */
int pl_stream_attach_server(PLStream *t, PyObject *server);

/* pyloop's Server._clients (server.c, 3.13+) and the transports attached to
 * it in C: 1 when `o` is one of them, else 0. */
int pl_stream_server_member(PyObject *o, PyObject *clients);
/* Append (list) or add (set) to `into` every open transport of `loop`
 * attached in C to the server whose set is `clients`; `into`, or NULL with
 * the error set. */
PyObject *pl_stream_server_members(PLLoop *loop, PyObject *clients, PyObject *into);
/* A member taken out of the set from Python (the set's discard): 1, 0 when it
 * was no member, -1 with the error set. */
int pl_stream_server_unlist(PyObject *o);

#endif
