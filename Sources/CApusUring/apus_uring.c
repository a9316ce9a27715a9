#include "apus_uring.h"
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/uio.h>

struct apus_ring {
    struct io_uring ring;
};

_Static_assert(sizeof(apus_iovec) == sizeof(struct iovec), "apus_iovec must match struct iovec");

apus_ring *apus_ring_create(unsigned entries, int *error) {
    apus_ring *r = calloc(1, sizeof(*r));
    if (!r) {
        *error = ENOMEM;
        return NULL;
    }
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) {
        *error = -rc;
        free(r);
        return NULL;
    }
    return r;
}

void apus_ring_destroy(apus_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

static struct io_uring_sqe *next_sqe(apus_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        io_uring_submit(&r->ring);  // the queue is full: hand it over, then retry
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

int apus_ring_prep_writev(apus_ring *r, int fd, const apus_iovec *iov, unsigned count, uint64_t offset, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_writev(sqe, fd, (const struct iovec *)iov, count, offset);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_fdatasync(apus_ring *r, int fd, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_nop(apus_ring *r, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_submit(apus_ring *r) { return io_uring_submit(&r->ring); }

int apus_ring_submit_and_wait(apus_ring *r, unsigned wait) { return io_uring_submit_and_wait(&r->ring, wait); }

int apus_ring_next_completion(apus_ring *r, int block, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    int rc = block ? io_uring_wait_cqe(&r->ring, &cqe) : io_uring_peek_cqe(&r->ring, &cqe);
    if (rc == -EAGAIN || (!block && cqe == NULL)) return 0;
    if (rc < 0) return rc;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 1;
}
