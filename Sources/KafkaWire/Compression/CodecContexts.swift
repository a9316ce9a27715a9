#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CZlib
import CZstd
import CLZ4

/// Per-thread codec contexts, reused across calls: creating a zstd or zlib context costs tens
/// of microseconds and ~0.3-1 MiB of allocation, which dominates small batches. Each call runs
/// synchronously on one thread, so a thread's contexts are never shared.
final class CodecContexts {
    /// Contexts grown beyond this (zstd keeps window buffers) are freed after use, not kept.
    static let keepLimit = 16 << 20

    var zstdC: OpaquePointer? = nil
    var zstdD: OpaquePointer? = nil
    var lz4D: OpaquePointer? = nil
    var deflater: UnsafeMutablePointer<z_stream>? = nil
    var deflaterLevel: Int32 = 0
    var inflater: UnsafeMutablePointer<z_stream>? = nil

    deinit {
        if let zstdC { ZSTD_freeCCtx(zstdC) }
        if let zstdD { ZSTD_freeDCtx(zstdD) }
        if let lz4D { LZ4F_freeDecompressionContext(lz4D) }
        if let deflater { deflateEnd(deflater); deflater.deallocate() }
        if let inflater { inflateEnd(inflater); inflater.deallocate() }
    }

    /// This thread's contexts, created on first use and released when the thread exits.
    static var current: CodecContexts {
        if let p = pthread_getspecific(codecContextsKey) {
            return Unmanaged<CodecContexts>.fromOpaque(p).takeUnretainedValue()
        }
        let contexts = CodecContexts()
        pthread_setspecific(codecContextsKey, Unmanaged.passRetained(contexts).toOpaque())
        return contexts
    }

    /// A zstd compression context (parameters are set per call by ZSTD_compressCCtx).
    func zstdCompressor() -> OpaquePointer? {
        if zstdC == nil { zstdC = ZSTD_createCCtx() }
        return zstdC
    }

    func doneCompressingZstd() {
        if let c = zstdC, ZSTD_sizeof_CCtx(c) > Self.keepLimit { ZSTD_freeCCtx(c); zstdC = nil }
    }

    /// A zstd decompression context, reset to a fresh session and default parameters.
    func zstdDecompressor() -> OpaquePointer? {
        if let d = zstdD {
            ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters)
            return d
        }
        zstdD = ZSTD_createDCtx()
        return zstdD
    }

    func doneDecompressingZstd() {
        if let d = zstdD, ZSTD_sizeof_DCtx(d) > Self.keepLimit { ZSTD_freeDCtx(d); zstdD = nil }
    }

    /// An LZ4 frame decompression context, reset to expect a new frame.
    func lz4Decompressor() -> OpaquePointer? {
        if let d = lz4D {
            LZ4F_resetDecompressionContext(d)
            return d
        }
        var d: OpaquePointer? = nil
        guard LZ4F_isError(LZ4F_createDecompressionContext(&d, UInt32(LZ4F_VERSION))) == 0 else { return nil }
        lz4D = d
        return d
    }

    func discardLZ4Decompressor() {
        if let d = lz4D { LZ4F_freeDecompressionContext(d); lz4D = nil }
    }

    /// A gzip deflate stream at `level`, reset for a new member; nil if zlib refuses the level.
    func gzipDeflater(level: Int32) -> UnsafeMutablePointer<z_stream>? {
        if let s = deflater {
            if deflaterLevel == level && deflateReset(s) == Z_OK { return s }
            deflateEnd(s)
            s.deallocate()
            deflater = nil
        }
        let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        s.initialize(to: z_stream())
        let rc = deflateInit2_(s, level, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8,
                               Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { s.deallocate(); return nil }
        deflater = s
        deflaterLevel = level
        return s
    }

    /// An inflate stream detecting gzip or zlib headers (window bits 15 + 32), reset.
    func gzipInflater() -> UnsafeMutablePointer<z_stream>? {
        if let s = inflater {
            if inflateReset(s) == Z_OK { return s }
            inflateEnd(s)
            s.deallocate()
            inflater = nil
        }
        let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        s.initialize(to: z_stream())
        guard inflateInit2_(s, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            s.deallocate()
            return nil
        }
        inflater = s
        return s
    }
}

/// The thread-specific slot holding each thread's `CodecContexts` (released at thread exit).
let codecContextsKey: pthread_key_t = {
    var key = pthread_key_t()
    let rc = pthread_key_create(&key) { p in
        guard let p else { return }
        Unmanaged<CodecContexts>.fromOpaque(p).release()
    }
    precondition(rc == 0, "pthread_key_create failed")
    return key
}()
