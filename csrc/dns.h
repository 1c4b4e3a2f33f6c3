/* Name resolution (loop.getaddrinfo / loop.getnameinfo): one libuv work
 * request each on libuv's thread pool, its completion resolving an
 * asyncio.Future on the loop thread, with the socket module's conversions. */
#ifndef PL_DNS_H
#define PL_DNS_H

#include "compat.h"
#include "loop.h"

int pl_dns_init(PyObject *module);

/* Loop teardown: take this loop's lookups still queued out of the pool (the
 * ones a worker runs finish on their own; uv_run then sees them complete). */
void pl_dns_cancel_all(PLLoop *loop);

#endif
