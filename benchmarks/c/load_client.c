/* Reference client: closed loop over N connections with epoll, every reply verified.
 * usage: load_client HOST PORT CONNECTIONS SIZE SECONDS
 * prints one JSON line: {"requests":..,"requests_per_s":..,"errors":..}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { size_t got; } conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SIZE SECONDS\n", argv[0]); return 2; }
    const char *host = argv[1];
    int port = atoi(argv[2]), nc = atoi(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    double seconds = atof(argv[5]);
    char *msg = malloc(size), *want = malloc(size);
    srand(1);
    for (size_t i = 0; i < size; i++) {
        msg[i] = (char)(rand() & 0xff);
        want[i] = (msg[i] >= 'a' && msg[i] <= 'z') ? (char)(msg[i] - 32) : msg[i];
    }
    int ep = epoll_create1(0), one = 1;
    conn_t *conns = calloc(65536, sizeof(conn_t));
    char **bufs = calloc(65536, sizeof(char *));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    for (int i = 0; i < nc; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bufs[fd] = malloc(size);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (send(fd, msg, size, 0) != (ssize_t)size) { perror("send"); return 1; }
    }
    long requests = 0, errors = 0;
    double start = now(), end = start + seconds;
    struct epoll_event evs[512];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            ssize_t r = recv(fd, bufs[fd] + conns[fd].got, size - conns[fd].got, 0);
            if (r <= 0) { errors++; epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); continue; }
            conns[fd].got += (size_t)r;
            if (conns[fd].got < size) continue;
            conns[fd].got = 0;
            if (memcmp(bufs[fd], want, size) != 0) errors++;
            requests++;
            if (send(fd, msg, size, 0) != (ssize_t)size) errors++;
        }
    }
    double elapsed = now() - start;
    printf("{\"requests\": %ld, \"requests_per_s\": %.1f, \"errors\": %ld, \"elapsed\": %.3f}\n",
           requests, (double)requests / elapsed, errors, elapsed);
    return errors ? 1 : 0;
}
