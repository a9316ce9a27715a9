#pragma once
// Thin wrappers for Linux calls Swift's Glibc module does not export (epoll, eventfd,
// sendfile, accept4). Only primitive types cross this header, so it does not clash with
// the system headers other C modules include.
#include <stdint.h>
#include <stddef.h>

typedef struct apus_poll_event {
    int32_t fd;
    uint32_t events;
} apus_poll_event;

enum {
    APUS_POLLIN = 0x001,
    APUS_POLLOUT = 0x004,
    APUS_POLLERR = 0x008,
    APUS_POLLHUP = 0x010,
    APUS_POLLRDHUP = 0x2000,
};

int apus_epoll_create(void);
/// op: 1 add, 2 delete, 3 modify (EPOLL_CTL_*). Returns 0 or -errno.
int apus_epoll_ctl(int epfd, int op, int fd, uint32_t events);
/// Returns the number of events or -errno.
int apus_epoll_wait(int epfd, apus_poll_event *events, int max_events, int timeout_ms);
int apus_eventfd(void);
/// Returns the bytes sent or -errno.
int64_t apus_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; returns the fd or -errno; fills the peer.
int apus_accept(int listen_fd, char *peer, size_t peer_len);
/// Sets TCP_NODELAY on a socket accepted elsewhere (io_uring) and fills its peer address.
int apus_socket_accepted(int fd, char *peer, size_t peer_len);
/// shutdown(SHUT_RDWR): operations in flight on the socket complete. 0 or -errno.
int apus_shutdown(int fd);
/// flock(2) (Swift sees the name as struct flock). -1 with errno on failure.
int apus_flock(int fd, int operation);
/// fallocate(2) with FALLOC_FL_KEEP_SIZE: reserves blocks, the file's size unchanged. -1 with errno on failure.
int apus_reserve(int fd, int64_t offset, int64_t length);
/// sync_file_range (wait, write, wait) then posix_fadvise(DONTNEED) on the range: written back,
/// then dropped from the page cache. 0 or -errno.
int apus_drop_behind(int fd, int64_t offset, int64_t length);

/// Fills `out` with the CPUs this process may run on (ascending); returns the count or -errno.
int apus_allowed_cpus(int32_t *out, int max);
/// Pins the calling thread to one CPU; returns 0 or an errno.
int apus_pin_current_thread(int cpu);
/// The shard-thread contract (ShardThreadContract): marks the calling thread as a shard's.
void apus_set_shard_thread(int on);
/// Opens (+1) or closes (-1) a scope in which the calling shard thread may wait on the disk.
void apus_allow_disk_wait(int delta);
/// Whether the calling thread is a shard thread outside such a scope.
int apus_disk_wait_forbidden(void);
/// Whether the calling thread is marked as a shard thread.
int apus_is_shard_thread(void);
/// How many such scopes the calling thread opened while marked as a shard thread.
long apus_disk_wait_exceptions_here(void);
/// The calling thread's CPU time and context switches so far: voluntary ones (it slept in a
/// call: the disk, a lock, a page fault) and involuntary ones (it was preempted while runnable).
typedef struct {
    uint64_t cpu_ns;
    int64_t voluntary;
    int64_t involuntary;
} apus_thread_usage;
void apus_current_thread_usage(apus_thread_usage *out);
/// Names the calling thread (first 15 bytes), for top and perf.
int apus_name_current_thread(const char *name);
/// NUMA nodes libnuma reports, or 0 when NUMA is unavailable (call nothing else then).
int apus_numa_node_count(void);
/// The node of `cpu`, or -1.
int apus_numa_node_of_cpu(int cpu);
/// Prefers memory from `node` for the calling thread's allocations; 0 or EINVAL.
int apus_numa_prefer_node(int node);
