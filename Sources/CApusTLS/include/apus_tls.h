// OpenSSL 3 (Debian's libssl) behind a narrow binding: hashes, HMAC and PBKDF2 for SCRAM, and
// TLS sessions over memory (a BIO pair), so that the shards' own network code — epoll or
// io_uring — moves the ciphertext. Only primitive and opaque types cross it.
#ifndef APUS_TLS_H
#define APUS_TLS_H

#include <stddef.h>
#include <stdint.h>

// MARK: Crypto (SCRAM). `bits` is 256 (SHA-256) or 512 (SHA-512). Return the output length, or -1.
int apus_digest(int bits, const void *data, size_t len, uint8_t *out);
int apus_hmac(int bits, const void *key, size_t key_len, const void *data, size_t len, uint8_t *out);
int apus_pbkdf2(int bits, const void *password, size_t password_len, const void *salt, size_t salt_len, int iterations, uint8_t *out);
int apus_random_bytes(uint8_t *out, size_t len);
// Constant-time comparison: 1 when equal.
int apus_equal(const void *a, const void *b, size_t len);

// MARK: TLS
typedef struct apus_tls_ctx apus_tls_ctx;
typedef struct apus_tls apus_tls;

// A server context from PEM files: the certificate chain and its private key (one file or two),
// the CAs trusted for client certificates (may be NULL), client authentication (0 none,
// 1 requested, 2 required), the lowest protocol ("TLSv1.2" or "TLSv1.3", NULL: 1.2), TLS 1.2
// cipher list and TLS 1.3 suites (NULL: OpenSSL's defaults). NULL on failure, with `err` filled.
apus_tls_ctx *apus_tls_server_ctx(const char *cert_file, const char *key_file, const char *key_password, const char *ca_file,
                                  int client_auth, const char *min_protocol, const char *ciphers, const char *suites,
                                  char *err, size_t err_len);
// A client context (tests, tools): trusts `ca_file`, presents `cert_file`/`key_file` if given.
apus_tls_ctx *apus_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, char *err, size_t err_len);
void apus_tls_ctx_free(apus_tls_ctx *ctx);

// A session with `buffer_size` bytes of ciphertext buffer each way; `server` 1 to accept.
apus_tls *apus_tls_new(apus_tls_ctx *ctx, int server, size_t buffer_size);
void apus_tls_free(apus_tls *t);

// Ciphertext from the network: where it may go (contiguous room, possibly 0), then how much came.
size_t apus_tls_in_space(apus_tls *t, uint8_t **ptr);
void apus_tls_in_commit(apus_tls *t, size_t n);
// Ciphertext for the network: what is ready (contiguous; possibly more after it), then how much went.
size_t apus_tls_out_data(apus_tls *t, uint8_t **ptr);
void apus_tls_out_consume(apus_tls *t, size_t n);
size_t apus_tls_out_pending(apus_tls *t);

// 1 done, 0 needs more ciphertext (or room to write), -1 failed (see apus_tls_error).
int apus_tls_handshake(apus_tls *t);
// Plaintext out: >0 bytes, 0 needs more ciphertext, -1 failed, -2 the peer closed (close_notify).
long apus_tls_read(apus_tls *t, void *buf, size_t len);
// Plaintext in: >0 bytes taken (perhaps fewer than `len`), 0 no room now, -1 failed. A call
// after 0 must offer the same bytes again.
long apus_tls_write(apus_tls *t, const void *buf, size_t len);
// The last error of this session (or of the thread's OpenSSL queue), as text.
void apus_tls_error(apus_tls *t, char *buf, size_t len);
// The peer certificate's subject in RFC 2253 form; 0 if none was presented.
int apus_tls_peer_subject(apus_tls *t, char *buf, size_t len);
// The negotiated protocol and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384").
const char *apus_tls_protocol(apus_tls *t);
const char *apus_tls_cipher(apus_tls *t);

#endif
