/* Test aid, loaded with LD_PRELOAD: the kernel takes at most
 * SHORT_WRITES_MAX bytes (default 1000) per write(2), writev(2), send(2),
 * sendto(2) or sendmsg(2) on a socket, and a non-blocking socket that was
 * just given a short write answers the next call with EAGAIN, as a socket
 * whose buffer is full would.  Other descriptors (files, pipes) are left
 * alone.  It makes every large send a series of partial writes with waits
 * for writability in between. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 4096

/* Descriptors whose last write was cut short. */
static unsigned char cut_short[MAX_FDS];

static size_t cap(void)
{
    static size_t max;
    if (!max) {
        const char *env = getenv("SHORT_WRITES_MAX");
        long n = env ? atol(env) : 0;
        max = n > 0 ? (size_t)n : 1000;
    }
    return max;
}

static int is_socket(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Whether this call is refused with EAGAIN: the one after a short write
 * on a non-blocking socket. */
static int must_wait(int fd)
{
    if (fd < 0 || fd >= MAX_FDS || !cut_short[fd])
        return 0;
    cut_short[fd] = 0;
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || !(flags & O_NONBLOCK))
        return 0;
    errno = EAGAIN;
    return 1;
}

/* Record the outcome of a call that asked for `asked` bytes. */
static ssize_t took(int fd, size_t asked, ssize_t n)
{
    if (n > 0 && (size_t)n < asked && fd >= 0 && fd < MAX_FDS)
        cut_short[fd] = 1;
    return n;
}

/* Cut an iovec list to at most cap() bytes; returns the new count. */
static int cut_iov(const struct iovec *in, int count, struct iovec *out, size_t *asked)
{
    size_t left = cap(), total = 0;
    int n = 0;
    for (int i = 0; i < count && left > 0 && n < 64; i++) {
        size_t len = in[i].iov_len < left ? in[i].iov_len : left;
        out[n].iov_base = in[i].iov_base;
        out[n].iov_len = len;
        left -= len;
        n++;
    }
    for (int i = 0; i < count; i++)
        total += in[i].iov_len;
    *asked = total;
    return n;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (!is_socket(fd))
        return real(fd, buf, len);
    if (must_wait(fd))
        return -1;
    return took(fd, len, real(fd, buf, len < cap() ? len : cap()));
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static ssize_t (*real)(int, const void *, size_t, int);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    if (must_wait(fd))
        return -1;
    return took(fd, len, real(fd, buf, len < cap() ? len : cap(), flags));
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *addr, socklen_t addrlen)
{
    static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))
            dlsym(RTLD_NEXT, "sendto");
    if (must_wait(fd))
        return -1;
    return took(fd, len, real(fd, buf, len < cap() ? len : cap(), flags, addr, addrlen));
}

ssize_t writev(int fd, const struct iovec *iov, int count)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real)
        real = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    if (!is_socket(fd))
        return real(fd, iov, count);
    if (must_wait(fd))
        return -1;
    struct iovec cut[64];
    size_t asked;
    int n = cut_iov(iov, count, cut, &asked);
    return took(fd, asked, real(fd, cut, n));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real)
        real = (ssize_t (*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
    if (must_wait(fd))
        return -1;
    struct iovec cut[64];
    size_t asked;
    struct msghdr copy = *msg;
    copy.msg_iov = cut;
    copy.msg_iovlen = cut_iov(msg->msg_iov, (int)msg->msg_iovlen, cut, &asked);
    return took(fd, asked, real(fd, &copy, flags));
}
