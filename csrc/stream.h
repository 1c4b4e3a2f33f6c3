/* Stream transports (TCP and Unix sockets) over uv_stream_t: the read and
 * write engine, flow control and the close protocol asyncio expects. */
#ifndef PL_STREAM_H
#define PL_STREAM_H

#include "loop.h"

typedef enum {
    PL_STREAM_INIT = 0, /* allocated; no libuv handle yet */
    PL_STREAM_OPEN,     /* handle open; reads/writes allowed */
    PL_STREAM_CLOSING,  /* uv_close called, close callback pending */
    PL_STREAM_CLOSED    /* close callback ran; handle memory freed */
} pl_stream_state;

typedef struct PLStream {
    PyObject_HEAD
    /* Same offset as asyncio.BaseTransport's `_extra` slot: this type is a
     * real subclass of asyncio.Transport and the slot is shared. */
    PyObject *extra;
    PLLoop *loop;
    uv_stream_t *uvh;       /* PyMem-allocated, freed in the close callback */
    PyObject *protocol;
    PyObject *data_received_meth; /* bound protocol.data_received (Protocol only) */
    PyObject *get_buffer_meth;    /* bound get_buffer / buffer_updated (BufferedProtocol only) */
    PyObject *buffer_updated_meth;
    PyObject *sock;         /* the Python socket whose fd libuv now owns */
    PyObject *lost_hook;    /* called once after connection_lost (Server._detach) */
    PyObject *empty_waiter; /* future set once nothing is queued (loop.sendfile) */
    PyObject *weakreflist;
    pl_stream_state state;
    char closing;           /* close()/abort() called or connection lost */
    char eof_sent;          /* write_eof() called */
    char reading;           /* uv_read_start active */
    char paused;            /* pause_reading() in effect */
    char buffered;          /* protocol is an asyncio.BufferedProtocol */
    char tls;               /* protocol is pyloop's TLS protocol: reads go to pl_tls_data_in */
    char protocol_connected;
    char protocol_paused;   /* pause_writing() was called */
    char rbuf_held;         /* rbuf holds a get_buffer() view */
    char eof_pending;       /* EOF seen, eof_received() not called yet */
    /* libuv calls the read callback right after the allocation callback,
     * on the same pass, even when reading was stopped in between (its read
     * callback pointer then NULL): while get_buffer() runs, stopping and
     * closing are only recorded, and the read callback does them. */
    char in_alloc;          /* inside pl__stream_alloc_cb's get_buffer() call */
    char stop_deferred;     /* uv_read_stop owed once the read callback runs */
    char close_deferred;    /* uv_close owed once the read callback runs */
    int conn_lost;          /* as asyncio: > 0 once the connection is lost */
    unsigned long long read_iteration; /* loop iteration of the last data read */
    size_t write_size;      /* bytes queued in pending uv_write requests */
    size_t reqs;            /* pending write/shutdown requests, each holding a reference */
    size_t high_water;
    size_t low_water;
    Py_buffer rbuf;
    PyObject *alloc_error;  /* what get_buffer() raised, for the read callback */
} PLStream;

extern PyObject *pl_stream_tcp_type;   /* heap type, subclass of asyncio.Transport */

int pl_stream_init_types(PyObject *module);

/* The loop's tp_traverse, for a stream handle: visit the references libuv
 * holds on the transport's behalf (the open handle's, each request's). */
int pl_stream_traverse_uv(uv_handle_t *handle, visitproc visit, void *arg);

/* loop.close() with this transport still open. */
void pl_stream_close_for_loop(uv_handle_t *handle);

PyObject *Loop__new_stream_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

#endif
