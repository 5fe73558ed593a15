/* Test aid, loaded with LD_PRELOAD: getaddrinfo() for the name
 * "slow.ev-websockets.test" takes 300 ms and answers 127.0.0.1; every other
 * name goes to the real resolver.  It lets a test watch the event loop
 * while a lookup is pending. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <time.h>

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
            dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && strcmp(node, "slow.ev-websockets.test") == 0) {
        struct timespec pause = { 0, 300 * 1000 * 1000 };
        nanosleep(&pause, NULL);
        node = "127.0.0.1";
    }
    return real(node, service, hints, res);
}
