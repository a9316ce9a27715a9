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
