import Foundation

/// An exclusive lock on a state folder, held for the life of the coordinator that uses it.
///
/// Two coordinators on one folder would both hand out task 1 and overwrite each other's
/// journal. `flock(2)` on `DIR/colony.lock` belongs to the open file, so the kernel releases it
/// when the process ends however it ends (kill -9 included): a restart after a crash is never
/// blocked by a stale lock, unlike a pid file. The holder's pid is written into the file only so
/// that the refusal can name it.
final class StateFolderLock: @unchecked Sendable {
    static let fileName = "colony.lock"

    private var descriptor: Int32

    /// Takes the lock on `directory` (which must exist), or throws naming the pid that holds it.
    init(directory: String) throws(StoreError) {
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StoreError("cannot open the lock file \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let reason = errno
            let holder = Self.readHolder(fd)
            close(fd)
            if reason == EWOULDBLOCK {
                let who = holder.map { "pid \($0)" } ?? "another process"
                throw StoreError("the state folder \(directory) is in use by another coordinator (\(who)); stop it, or give this one another --state")
            }
            throw StoreError("cannot lock the state folder \(directory) (\(path)): \(String(cString: strerror(reason)))")
        }
        let pid = Array("\(getpid())\n".utf8)
        // Best effort: the lock is what counts, the pid only names the holder in a refusal.
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        descriptor = fd
    }

    private static func readHolder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Lets the folder go (the kernel does it anyway when the process ends). Idempotent.
    func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
