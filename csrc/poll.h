/* add_reader / add_writer on the loop's own epoll set. */
#ifndef PL_POLL_H
#define PL_POLL_H

#include "loop.h"

int pl_poll_init(PLLoop *loop);
void pl_poll_close(PLLoop *loop);
/* True when any fd is registered (the epoll set must be polled). */
int pl_poll_active(PLLoop *loop);
/* Move the handles of ready fds to the ready queue (never blocks). */
int pl_poll_dispatch(PLLoop *loop);
/* Run the readers of the listening sockets whose own watcher fired. */
int pl_poll_dispatch_listeners(PLLoop *loop);
/* uv_close every listening socket's watcher (the loop is closing). */
void pl_poll_listeners_close(PLLoop *loop);

/* For C callers: callback() when `fd` is readable (writer 0) or writable
 * (writer 1), replacing what was registered; and its removal. The
 * callback's Handle runs in a copy of the current context. 0, or -1 with
 * the error set. */
int pl_poll_add(PLLoop *loop, int fd, int writer, PyObject *callback);
int pl_poll_remove(PLLoop *loop, int fd, int writer);

PyObject *Loop__add_reader(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *Loop__add_writer(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *Loop__remove_reader(PLLoop *self, PyObject *fd);
PyObject *Loop__remove_writer(PLLoop *self, PyObject *fd);

#endif
