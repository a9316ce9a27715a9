#include "apus_tls.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static const EVP_MD *md_of(int bits) { return bits == 512 ? EVP_sha512() : bits == 256 ? EVP_sha256() : NULL; }

int apus_digest(int bits, const void *data, size_t len, uint8_t *out) {
    const EVP_MD *md = md_of(bits);
    unsigned int n = 0;
    if (!md || EVP_Digest(data, len, out, &n, md, NULL) != 1) return -1;
    return (int)n;
}

int apus_hmac(int bits, const void *key, size_t key_len, const void *data, size_t len, uint8_t *out) {
    const EVP_MD *md = md_of(bits);
    unsigned int n = 0;
    if (!md || !HMAC(md, key, (int)key_len, data, len, out, &n)) return -1;
    return (int)n;
}

int apus_pbkdf2(int bits, const void *password, size_t password_len, const void *salt, size_t salt_len, int iterations, uint8_t *out) {
    const EVP_MD *md = md_of(bits);
    if (!md || iterations < 1) return -1;
    int n = EVP_MD_get_size(md);
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, iterations, md, n, out) != 1) return -1;
    return n;
}

int apus_random_bytes(uint8_t *out, size_t len) { return RAND_bytes(out, (int)len) == 1 ? 0 : -1; }

int apus_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }

struct apus_tls_ctx { SSL_CTX *ssl; };

struct apus_tls {
    SSL *ssl;
    BIO *network;  // our end of the pair; SSL owns the other
    char error[256];
};

static void take_error(char *err, size_t err_len, const char *what) {
    unsigned long e = ERR_get_error();
    char detail[200] = "";
    if (e) ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, err_len, "%s%s%s", what, e ? ": " : "", detail);
    ERR_clear_error();
}

static int password_callback(char *buf, int size, int rwflag, void *userdata) {
    (void)rwflag;
    const char *password = userdata;
    if (!password) return 0;
    int n = (int)strlen(password);
    if (n > size) n = size;
    memcpy(buf, password, (size_t)n);
    return n;
}

apus_tls_ctx *apus_tls_server_ctx(const char *cert_file, const char *key_file, const char *key_password, const char *ca_file,
                                  int client_auth, const char *min_protocol, const char *ciphers, const char *suites,
                                  char *err, size_t err_len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { take_error(err, err_len, "SSL_CTX_new"); return NULL; }
    int min = (min_protocol && strcmp(min_protocol, "TLSv1.3") == 0) ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, min);
    // Partial writes: a full ciphertext buffer takes what fits, the rest is offered again.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_default_passwd_cb(ctx, password_callback);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)key_password);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) { take_error(err, err_len, "reading the certificate chain"); goto fail; }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file ? key_file : cert_file, SSL_FILETYPE_PEM) != 1) { take_error(err, err_len, "reading the private key"); goto fail; }
    if (SSL_CTX_check_private_key(ctx) != 1) { take_error(err, err_len, "the private key does not match the certificate"); goto fail; }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);  // the password is not kept beyond this call
    if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) { take_error(err, err_len, "ssl.cipher.suites (TLS 1.2)"); goto fail; }
    if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) { take_error(err, err_len, "ssl.cipher.suites (TLS 1.3)"); goto fail; }
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) { take_error(err, err_len, "reading the trusted CAs"); goto fail; }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
        if (names) SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (client_auth == 2) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else if (client_auth == 1) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    // No session tickets: nothing is written on a connection except in answer to the client.
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    apus_tls_ctx *result = malloc(sizeof *result);
    if (!result) goto fail;
    result->ssl = ctx;
    return result;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

apus_tls_ctx *apus_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, char *err, size_t err_len) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { take_error(err, err_len, "SSL_CTX_new"); return NULL; }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) { take_error(err, err_len, "reading the trusted CAs"); goto fail; }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) { take_error(err, err_len, "reading the certificate"); goto fail; }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file ? key_file : cert_file, SSL_FILETYPE_PEM) != 1) { take_error(err, err_len, "reading the key"); goto fail; }
    }
    apus_tls_ctx *result = malloc(sizeof *result);
    if (!result) goto fail;
    result->ssl = ctx;
    return result;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void apus_tls_ctx_free(apus_tls_ctx *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl);  // sessions made from it keep their own reference
    free(ctx);
}

apus_tls *apus_tls_new(apus_tls_ctx *ctx, int server, size_t buffer_size) {
    apus_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ssl = SSL_new(ctx->ssl);
    BIO *inner = NULL;
    if (!t->ssl || BIO_new_bio_pair(&inner, buffer_size, &t->network, buffer_size) != 1) {
        if (t->ssl) SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, inner, inner);
    if (server) SSL_set_accept_state(t->ssl); else SSL_set_connect_state(t->ssl);
    return t;
}

void apus_tls_free(apus_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);  // frees the inner BIO
    BIO_free(t->network);
    free(t);
}

size_t apus_tls_in_space(apus_tls *t, uint8_t **ptr) {
    char *p = NULL;
    ossl_ssize_t n = BIO_nwrite0(t->network, &p);
    if (n <= 0) { *ptr = NULL; return 0; }
    *ptr = (uint8_t *)p;
    return (size_t)n;
}

void apus_tls_in_commit(apus_tls *t, size_t n) {
    char *p = NULL;
    if (n > 0) BIO_nwrite(t->network, &p, (int)n);
}

size_t apus_tls_out_data(apus_tls *t, uint8_t **ptr) {
    char *p = NULL;
    ossl_ssize_t n = BIO_nread0(t->network, &p);
    if (n <= 0) { *ptr = NULL; return 0; }
    *ptr = (uint8_t *)p;
    return (size_t)n;
}

void apus_tls_out_consume(apus_tls *t, size_t n) {
    char *p = NULL;
    if (n > 0) BIO_nread(t->network, &p, (int)n);
}

size_t apus_tls_out_pending(apus_tls *t) { return BIO_ctrl_pending(t->network); }

static int failure(apus_tls *t, int ret, const char *what) {
    int code = SSL_get_error(t->ssl, ret);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) { ERR_clear_error(); return 0; }
    if (code == SSL_ERROR_ZERO_RETURN) { ERR_clear_error(); return -2; }
    take_error(t->error, sizeof t->error, what);
    long verify = SSL_get_verify_result(t->ssl);
    if (verify != X509_V_OK) {
        size_t used = strlen(t->error);
        snprintf(t->error + used, sizeof t->error - used, " (certificate: %s)", X509_verify_cert_error_string(verify));
    }
    return -1;
}

int apus_tls_handshake(apus_tls *t) {
    ERR_clear_error();
    int ret = SSL_do_handshake(t->ssl);
    if (ret == 1) return 1;
    int r = failure(t, ret, "TLS handshake");
    return r == -2 ? -1 : r;
}

long apus_tls_read(apus_tls *t, void *buf, size_t len) {
    ERR_clear_error();
    size_t got = 0;
    int ret = SSL_read_ex(t->ssl, buf, len, &got);
    if (ret == 1) return (long)got;
    return failure(t, ret, "TLS read");
}

long apus_tls_write(apus_tls *t, const void *buf, size_t len) {
    ERR_clear_error();
    size_t put = 0;
    int ret = SSL_write_ex(t->ssl, buf, len, &put);
    if (ret == 1) return (long)put;
    int r = failure(t, ret, "TLS write");
    return r == -2 ? -1 : r;
}

void apus_tls_error(apus_tls *t, char *buf, size_t len) { snprintf(buf, len, "%s", t->error[0] ? t->error : "unknown TLS error"); }

int apus_tls_peer_subject(apus_tls *t, char *buf, size_t len) {
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    if (!cert) return 0;
    BIO *mem = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    int n = BIO_read(mem, buf, (int)len - 1);
    buf[n > 0 ? n : 0] = 0;
    BIO_free(mem);
    X509_free(cert);
    return 1;
}

const char *apus_tls_protocol(apus_tls *t) { return SSL_get_version(t->ssl); }
const char *apus_tls_cipher(apus_tls *t) { return SSL_get_cipher_name(t->ssl); }
