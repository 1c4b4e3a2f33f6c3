/* Socket addresses as Python objects, as the socket module makes them. */
#include "sockaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

/* The host string of an IPv4/IPv6 address: the last one made is kept and
 * given again while addresses repeat (a server's peers are often a few
 * hosts: each idle connection's peername then shares its host string).
 * Strings are immutable, so sharing is invisible. New reference, or NULL
 * with the error set. */
static PyObject *
pl_sockaddr_host(int family, const void *addr, size_t addr_len)
{
    static unsigned char last[2][sizeof(struct in6_addr)];
    static PyObject *last_str[2];
    int k = family == AF_INET6;
    if (last_str[k] != NULL && memcmp(last[k], addr, addr_len) == 0)
        return Py_NewRef(last_str[k]);
    char host[INET6_ADDRSTRLEN];
    if (inet_ntop(family, addr, host, sizeof(host)) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    PyObject *str = PyUnicode_FromString(host);
    if (str != NULL) {
        memcpy(last[k], addr, addr_len);
        Py_XSETREF(last_str[k], Py_NewRef(str));
    }
    return str;
}

PyObject *
pl_sockaddr_to_py(const struct sockaddr *sa, socklen_t len)
{
    PyObject *host;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        host = pl_sockaddr_host(AF_INET, &in4->sin_addr, sizeof(in4->sin_addr));
        return host == NULL ? NULL : Py_BuildValue("(Ni)", host, (int)ntohs(in4->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        host = pl_sockaddr_host(AF_INET6, &in6->sin6_addr, sizeof(in6->sin6_addr));
        return host == NULL ? NULL
                            : Py_BuildValue("(NiII)", host, (int)ntohs(in6->sin6_port),
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
}
