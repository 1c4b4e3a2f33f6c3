/* Pipe transports. The write side is a C transport on the transport base
 * (uvhandle.h): a libuv pipe handle on a duplicate of the caller's fd. The
 * read side is the stdlib's _UnixReadPipeTransport on the loop's poller
 * (pyloop/loop.py), reading through the loop's buffer here (see pipe.c). */
#ifndef PL_PIPE_H
#define PL_PIPE_H

#include "uvhandle.h"

typedef struct {
    PL_UVHANDLE_HEAD      /* uvh: a uv_pipe_t on `dupfd`; sock stays NULL */
    PyObject *pipe;       /* `_pipe`: the caller's object, closed after connection_lost */
    int fileno;           /* `_fileno`: the caller's fd (watched for its reader going away) */
    char watch_reader;    /* a FIFO or a socket: its reader's close is seen (the stdlib's rule) */
    char watching;        /* registered on the loop's poller */
    char lost_scheduled;  /* _call_connection_lost is scheduled or has run */
    size_t write_size;    /* bytes in pending uv_write requests */
    size_t reqs;          /* pending write requests, each holding a reference */
} PLWritePipe;

int pl_pipe_init_types(PyObject *module);

/* loop._pipe_read(fd) -> bytes: os.read(fd, 256 KiB) without the 256 KiB. */
PyObject *Loop__pipe_read(PLLoop *self, PyObject *fdobj);

/* loop._new_write_pipe_transport(pipe, protocol, extra): the transport, open;
 * the caller schedules connection_made, _start_reading and the waiter. */
PyObject *Loop__new_write_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

#endif
