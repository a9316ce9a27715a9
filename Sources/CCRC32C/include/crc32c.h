#ifndef APUS_CRC32C_H
#define APUS_CRC32C_H

/* CRC32C (Castagnoli), as used by Kafka's RecordBatch v2. The fastest available
 * implementation (ISA-L loaded at run time, SSE4.2, or portable software) is chosen once. */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Chains the standard CRC32C: crc of "" is 0, update(update(0, a), b) == update(0, a ++ b).
 * `buf` may be NULL when `len` is 0. Thread-safe. */
uint32_t apus_crc32c_update(uint32_t crc, const void *buf, size_t len);

/* Name of the implementation in use: "isa-l", "sse4.2" or "software". */
const char *apus_crc32c_implementation(void);

/* Forces an implementation by name ("isa-l", "sse4.2", "software"), or restores the automatic
 * choice when `name` is NULL or "auto". Returns 0 on success, -1 if it is unavailable here. */
int apus_crc32c_force(const char *name);

/* Computes with the named implementation without changing the global choice (for tests and
 * benchmarks). Returns 0 and stores the result in *out, or -1 if it is unavailable here. */
int apus_crc32c_update_using(const char *name, uint32_t crc, const void *buf, size_t len,
                             uint32_t *out);

#ifdef __cplusplus
}
#endif

#endif
