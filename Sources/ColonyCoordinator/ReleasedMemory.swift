#if canImport(Glibc)
import Glibc
#endif

/// Hands the allocator's free memory back to the system. glibc keeps freed small blocks in
/// its arenas; after a drain of a million tasks that is hundreds of MB the coordinator no
/// longer uses but still holds (RSS), until `malloc_trim`. (`malloc.h` is not part of Swift's
/// Glibc module, so the function is looked up once by name; elsewhere this does nothing.)
enum ReleasedMemory {
    private typealias Trim = @convention(c) (Int) -> Int32

    private static let mallocTrim: Trim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
        #else
        return nil
        #endif
    }()

    static func trim() {
        _ = mallocTrim?(0)
    }
}
