#define _GNU_SOURCE
#include <sys/socket.h>
#include "CSockets.h"

int csockets_accept_nonblocking(int fd) {
    return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
