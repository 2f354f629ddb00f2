// What Glibc's Swift module leaves out: epoll and eventfd (Sockets' reactor).
#include <sys/epoll.h>
#include <sys/eventfd.h>
