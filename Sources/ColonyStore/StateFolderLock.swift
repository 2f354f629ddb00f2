import Foundation

/// An exclusive lock on a state folder, held for the life of the coordinator that uses it.
///
/// Two coordinators on one folder would both hand out task 1 and overwrite each other's
/// journal. `flock(2)` on the folder itself belongs to the open directory, so the kernel
/// releases it when the process ends however it ends (kill -9 included): a restart after a
/// crash is never blocked by a stale lock, unlike a pid file. The folder, not a file in it: a
/// deleted lock file would let a second coordinator lock a new one. The holder's pid is written
/// into `DIR/colony.lock` only so that the refusal can name it.
final class StateFolderLock: @unchecked Sendable {
    static let fileName = "colony.lock"

    private var descriptor: Int32

    /// Takes the lock on `directory` (which must exist), or throws naming the pid that holds it.
    init(directory: String) throws(StoreError) {
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw StoreError("cannot open the state folder \(directory): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let reason = errno
            let holder = Self.readHolder(path)
            close(fd)
            if reason == EWOULDBLOCK {
                let who = holder.map { "pid \($0)" } ?? "another process"
                throw StoreError("the state folder \(directory) is in use by another coordinator (\(who)); stop it, or give this one another --state")
            }
            throw StoreError("cannot lock the state folder \(directory): \(String(cString: strerror(reason)))")
        }
        // Best effort: the lock is what counts, the pid only names the holder in a refusal.
        let pidFile = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if pidFile >= 0 {
            let pid = Array("\(getpid())\n".utf8)
            _ = pid.withUnsafeBytes { write(pidFile, $0.baseAddress, $0.count) }
            close(pidFile)
        } else if errno == EACCES || errno == EROFS {
            close(fd)
            throw StoreError("cannot write in the state folder \(directory): \(String(cString: strerror(errno)))")
        }
        descriptor = fd
    }

    private static func readHolder(_ path: String) -> Int32? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Lets the folder go (the kernel does it anyway when the process ends). Idempotent.
    func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
