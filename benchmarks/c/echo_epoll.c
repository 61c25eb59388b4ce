/* Reference server: single-threaded, level-triggered epoll, upper-case echo.
 * The machine's limit for a one-core server; iomodels's own models are measured against it.
 * usage: echo_epoll PORT   (0 picks a free port; prints "listening on 127.0.0.1:PORT")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)

typedef struct { char *pending; size_t len, off; } conn_t;  /* unsent reply bytes */

static conn_t *conns;
static int nconns;
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static void upper(char *p, ssize_t n) {
    for (ssize_t i = 0; i < n; i++) if (p[i] >= 'a' && p[i] <= 'z') p[i] -= 32;
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof(conn_t));
    close(fd);
}

/* send what is pending; 0 ok (maybe still pending), -1 dead */
static int flush(int ep, int fd) {
    conn_t *c = &conns[fd];
    while (c->off < c->len) {
        ssize_t n = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        c->off += (size_t)n;
    }
    struct epoll_event ev = {.data.fd = fd};
    if (c->off < c->len) {
        ev.events = EPOLLOUT;  /* stop reading until the client drains its replies */
    } else {
        c->len = c->off = 0;
        ev.events = EPOLLIN;
    }
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    nconns = 1 << 17;
    conns = calloc((size_t)nconns, sizeof(conn_t));
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("listen"); return 1; }
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("listening on 127.0.0.1:%d model=c-epoll\n", ntohs(a.sin_port));
    fflush(stdout);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[512];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    static char buf[BUF];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= nconns) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT || conns[fd].len) {
                if (flush(ep, fd) < 0) drop(ep, fd);
                continue;
            }
            ssize_t r = recv(fd, buf, BUF, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                drop(ep, fd);
                continue;
            }
            upper(buf, r);
            ssize_t s = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (s < 0 && errno != EAGAIN) { drop(ep, fd); continue; }
            if (s < 0) s = 0;
            if (s < r) {
                conn_t *c = &conns[fd];
                c->pending = realloc(c->pending, (size_t)(r - s));
                memcpy(c->pending, buf + s, (size_t)(r - s));
                c->len = (size_t)(r - s);
                c->off = 0;
                if (flush(ep, fd) < 0) drop(ep, fd);
            }
        }
    }
    return 0;
}
