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

// MARK: Network operations

#include <poll.h>
#include <sys/socket.h>

int apus_ring_prep_accept(apus_ring *r, int fd, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_recv(apus_ring *r, int fd, void *buffer, size_t length, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_recv(sqe, fd, buffer, length, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_sendv(apus_ring *r, int fd, const apus_iovec *iov, unsigned count, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    // writev on a socket is a send without flags; SIGPIPE is ignored by the server.
    io_uring_prep_writev(sqe, fd, (const struct iovec *)iov, count, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_read(apus_ring *r, int fd, void *buffer, unsigned length, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, fd, buffer, length, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_prep_poll(apus_ring *r, int fd, int writable, uint64_t tag) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, writable ? POLLOUT : POLLIN | 0x2000 /* POLLRDHUP */);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int apus_ring_submit_and_wait_ms(apus_ring *r, int timeout_ms) {
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_cqe *cqe = NULL;
    int rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    return rc < 0 ? rc : 0;
}

int apus_ring_peek_completion(apus_ring *r, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    if (io_uring_peek_cqe(&r->ring, &cqe) != 0 || cqe == NULL) return 0;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 1;
}
