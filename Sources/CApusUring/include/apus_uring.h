#pragma once
// A narrow binding of liburing for ApusIO. Only primitive types and an opaque ring cross this
// header: liburing.h defines _GNU_SOURCE/_XOPEN_SOURCE before the system headers, so a Swift
// module that includes it textually clashes with Glibc's module (fd_set field names).
#include <stddef.h>
#include <stdint.h>

typedef struct apus_ring apus_ring;

/// Same layout as struct iovec.
typedef struct apus_iovec {
    void *base;
    size_t length;
} apus_iovec;

/// A ring with `entries` submission slots; NULL with *error = errno on failure.
apus_ring *apus_ring_create(unsigned entries, int *error);
void apus_ring_destroy(apus_ring *ring);

/// Queue operations (submitting first if the submission queue is full). Return 0 or -errno.
int apus_ring_prep_writev(apus_ring *ring, int fd, const apus_iovec *iov, unsigned count, uint64_t offset, uint64_t tag);
int apus_ring_prep_fdatasync(apus_ring *ring, int fd, uint64_t tag);
int apus_ring_prep_nop(apus_ring *ring, uint64_t tag);

/// Submit queued operations; the second waits for at least `wait` completions. Return the
/// number submitted or -errno.
int apus_ring_submit(apus_ring *ring);
int apus_ring_submit_and_wait(apus_ring *ring, unsigned wait);

/// Takes one completion if available (1) or not (0); with `block`, waits for one (or -errno).
int apus_ring_next_completion(apus_ring *ring, int block, uint64_t *tag, int32_t *result);

// MARK: Network operations (a shard's event loop on io_uring)

/// Accepts one connection on `fd` (the result is a new non-blocking, close-on-exec socket).
/// Single-shot, so that it works from Linux 5.5 (multishot accept needs 5.19).
int apus_ring_prep_accept(apus_ring *ring, int fd, uint64_t tag);
/// Receives up to `length` bytes into `buffer`.
int apus_ring_prep_recv(apus_ring *ring, int fd, void *buffer, size_t length, uint64_t tag);
/// Sends the `count` buffers of `iov` (MSG_NOSIGNAL); `iov` must stay valid until completion.
int apus_ring_prep_sendv(apus_ring *ring, int fd, const apus_iovec *iov, unsigned count, uint64_t tag);
/// Reads 8 bytes into `buffer` (an eventfd's counter).
int apus_ring_prep_read(apus_ring *ring, int fd, void *buffer, unsigned length, uint64_t tag);
/// Completes once `fd` is writable (POLLOUT) or, with writable = 0, readable (POLLIN).
int apus_ring_prep_poll(apus_ring *ring, int fd, int writable, uint64_t tag);

/// Submits what is queued and waits up to `timeout_ms` for at least one completion. Returns
/// 0, or -errno (-ETIME when the time passed with none).
int apus_ring_submit_and_wait_ms(apus_ring *ring, int timeout_ms);

/// Like apus_ring_next_completion, without blocking.
int apus_ring_peek_completion(apus_ring *ring, uint64_t *tag, int32_t *result);
