/* Socket addresses as the socket module gives them (its makesockaddr):
 * (host, port) for AF_INET, (host, port, flowinfo, scope_id) for AF_INET6,
 * the path (str) or the abstract name (bytes) for AF_UNIX. */
#ifndef PL_SOCKADDR_H
#define PL_SOCKADDR_H

#include "compat.h"
#include <sys/socket.h>

/* New reference, or NULL with the error set. `len` is what the system call
 * reported (AF_UNIX names are bounded by it). */
PyObject *pl_sockaddr_to_py(const struct sockaddr *sa, socklen_t len);

#endif
