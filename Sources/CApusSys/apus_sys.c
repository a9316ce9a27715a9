#define _GNU_SOURCE
#include "apus_sys.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <time.h>

int apus_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int apus_epoll_ctl(int epfd, int op, int fd, uint32_t events) {
    struct epoll_event event = {.events = events, .data.fd = fd};
    return epoll_ctl(epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &event) == 0 ? 0 : -errno;
}

int apus_epoll_wait(int epfd, apus_poll_event *out, int max_events, int timeout_ms) {
    struct epoll_event events[256];
    if (max_events > 256) max_events = 256;
    int n = epoll_wait(epfd, events, max_events, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        out[i].fd = events[i].data.fd;
        out[i].events = events[i].events;
    }
    return n;
}

int apus_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int64_t apus_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    off_t off = (off_t)*offset;
    ssize_t n = sendfile(out_fd, in_fd, &off, count);
    if (n < 0) return -errno;
    *offset = (int64_t)off;
    return n;
}

int apus_accept(int listen_fd, char *peer, size_t peer_len) {
    struct sockaddr_in address;
    socklen_t length = sizeof(address);
    int fd = accept4(listen_fd, (struct sockaddr *)&address, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char host[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &address.sin_addr, host, sizeof(host));
    snprintf(peer, peer_len, "%s:%u", host, (unsigned)ntohs(address.sin_port));
    return fd;
}

int apus_socket_accepted(int fd, char *peer, size_t peer_len) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in address;
    socklen_t length = sizeof(address);
    char host[INET_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&address, &length) == 0) {
        inet_ntop(AF_INET, &address.sin_addr, host, sizeof(host));
        port = ntohs(address.sin_port);
    }
    snprintf(peer, peer_len, "%s:%u", host, port);
    return 0;
}

int apus_shutdown(int fd) { return shutdown(fd, SHUT_RDWR) == 0 ? 0 : -errno; }

// MARK: Threads, CPUs and NUMA placement

#include <numa.h>
#include <pthread.h>
#include <sched.h>

int apus_allowed_cpus(int32_t *out, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -errno;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) out[n++] = cpu;
    }
    return n;
}

int apus_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void apus_current_thread_usage(apus_thread_usage *out) {
    struct timespec ts;
    struct rusage r;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    getrusage(RUSAGE_THREAD, &r);
    out->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    out->voluntary = r.ru_nvcsw;
    out->involuntary = r.ru_nivcsw;
}

int apus_name_current_thread(const char *name) {
    char shortName[16];
    snprintf(shortName, sizeof(shortName), "%s", name);
    return pthread_setname_np(pthread_self(), shortName);
}

int apus_numa_node_count(void) {
    if (numa_available() < 0) return 0;
    return numa_max_node() + 1;
}

int apus_numa_node_of_cpu(int cpu) {
    if (numa_available() < 0) return -1;
    return numa_node_of_cpu(cpu);
}

int apus_numa_prefer_node(int node) {
    if (numa_available() < 0 || node < 0 || node > numa_max_node()) return EINVAL;
    numa_set_preferred(node);
    return 0;
}

int apus_flock(int fd, int operation) {
    return flock(fd, operation);
}

int apus_reserve(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int apus_drop_behind(int fd, int64_t offset, int64_t length) {
    if (sync_file_range(fd, (off_t)offset, (off_t)length,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0) return -errno;
    int e = posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_DONTNEED);
    return e == 0 ? 0 : -e;
}

static _Thread_local int shard_thread;
static _Thread_local int disk_wait_allowed;
static _Thread_local long disk_wait_exceptions;

void apus_set_shard_thread(int on) { shard_thread = on; }
void apus_allow_disk_wait(int delta) {
    if (delta > 0 && shard_thread) disk_wait_exceptions++;
    disk_wait_allowed += delta;
}
int apus_is_shard_thread(void) { return shard_thread; }
long apus_disk_wait_exceptions_here(void) { return disk_wait_exceptions; }
int apus_disk_wait_forbidden(void) { return shard_thread && disk_wait_allowed == 0; }
