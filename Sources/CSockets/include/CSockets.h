// What Glibc's Swift module leaves out: epoll and eventfd (Sockets' reactor), accept4.
#include <sys/epoll.h>
#include <sys/eventfd.h>

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (glibc declares it only under _GNU_SOURCE).
int csockets_accept_nonblocking(int fd);
