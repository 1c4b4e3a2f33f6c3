/* Socket addresses as Python objects, as the socket module makes them. */
#include "sockaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

PyObject *
pl_sockaddr_to_py(const struct sockaddr *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host)) == NULL)
            break;
        return Py_BuildValue("(si)", host, (int)ntohs(in4->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)) == NULL)
            break;
        return Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned int)in6->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? (size_t)len - off : 0;
        if (n > sizeof(un->sun_path))
            n = sizeof(un->sun_path);
        if (n > 0 && un->sun_path[0] == '\0') /* Linux's abstract namespace */
            return PyBytes_FromStringAndSize(un->sun_path, (Py_ssize_t)n);
        return PyUnicode_DecodeFSDefaultAndSize(un->sun_path, (Py_ssize_t)strnlen(un->sun_path, n));
    }
    default:
        return Py_BuildValue("(iy#)", (int)sa->sa_family, sa->sa_data,
                             (Py_ssize_t)(len > sizeof(sa->sa_family) ? len - sizeof(sa->sa_family) : 0));
    }
    PyErr_SetFromErrno(PyExc_OSError);
    return NULL;
}
