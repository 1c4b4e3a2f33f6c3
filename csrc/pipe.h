/* Pipe transports, both sides C transports on the transport base
 * (uvhandle.h): a libuv pipe handle on a duplicate of the caller's fd. A
 * character device (a tty) is read by the stdlib's _UnixReadPipeTransport on
 * the loop's poller (pyloop/loop.py), through the loop's buffer here. */
#ifndef PL_PIPE_H
#define PL_PIPE_H

#include "uvhandle.h"

/* What both pipe kinds start with (after the transport base's head): the
 * functions they share take a PLPipe. */
#define PL_PIPE_HEAD                                                                        \
    PL_UVHANDLE_HEAD      /* uvh: a uv_pipe_t on a duplicate of `fileno`; sock stays NULL */ \
    PyObject *pipe;       /* `_pipe`: the caller's object, closed after connection_lost */  \
    int fileno;           /* `_fileno`: the caller's fd */                                  \
    char lost_scheduled;  /* _call_connection_lost is scheduled or has run */

typedef struct {
    PL_PIPE_HEAD
} PLPipe;

typedef struct {
    PL_PIPE_HEAD
    char watch_reader;    /* a FIFO or a socket: its reader's close is seen (the stdlib's rule) */
    char watching;        /* registered on the loop's poller */
    size_t write_size;    /* bytes in pending uv_write requests */
    size_t reqs;          /* pending write requests, each holding a reference */
} PLWritePipe;

/* The most a read of a pipe takes: a default pipe's capacity. Reads of
 * more made a StreamReader's buffer and read() results big enough that
 * glibc maps or grows its heap for each one (docs/performance.md, "The
 * read side in C"). */
#define PL_PIPE_READ_MAX (64 * 1024)

/* The read side: libuv reads a FIFO or a socket into the loop's buffer, one
 * bytes object for data_received (or a copy into a BufferedProtocol's
 * get_buffer()). */
typedef struct {
    PL_PIPE_HEAD
    char buffered;        /* the protocol is an asyncio.BufferedProtocol */
    /* A pipe that keeps arriving at least half full is read straight into a
     * bytes object of its capacity + 1 (every read ends short of it, so
     * libuv stops after one), which becomes data_received's argument
     * without a copy, and is reused when the protocol let go of it. */
    char streaming;       /* the last read was a bulk one: read into rbytes */
    /* A pipe bigger than PL_PIPE_READ_MAX is still read PL_PIPE_READ_MAX at
     * a time, one read per loop pass: a read that fills it ends libuv's
     * read loop for this pass (the next alloc is refused), so the protocol
     * runs between reads and what a StreamReader holds stays one read's
     * worth, while the writer has the whole pipe to fill. */
    char yield;           /* the last read filled rcap: refuse the next alloc */
    char yielding;        /* that alloc was refused: its UV_ENOBUFS is no error */
    Py_ssize_t rcap;      /* rbytes' size: the pipe's capacity + 1, or PL_PIPE_READ_MAX
                           * for a bigger pipe; 0: never (a socket) */
    PyObject *rbytes;     /* the bytes object read into, owned while streaming */
} PLReadPipe;

int pl_pipe_init_types(PyObject *module);

/* loop._pipe_read(fd) -> bytes: os.read(fd, 256 KiB) without the 256 KiB. */
PyObject *Loop__pipe_read(PLLoop *self, PyObject *fdobj);

/* loop._new_write_pipe_transport(pipe, protocol, extra): the transport, open;
 * the caller schedules connection_made, _start_reading and the waiter. */
PyObject *Loop__new_write_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

/* loop._new_read_pipe_transport(pipe, protocol, extra): the transport, open
 * and not reading yet (the caller schedules connection_made, _start_reading
 * and the waiter); None for a character device, which the caller reads the
 * stdlib's way; ValueError for anything but a pipe, socket or character
 * device, as the stdlib's. */
PyObject *Loop__new_read_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

#endif
