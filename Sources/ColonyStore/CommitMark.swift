import Foundation

/// The number of the journal's last commit, kept in a side file (`DIR/colony.commits`) next
/// to the same number inside the database.
///
/// SQLite cannot tell that its WAL was deleted or cut short: it opens what is left and reads
/// an older state, silently. The side file can: it is written after every commit (never
/// before, so it is never ahead of the database), and at start a database that holds a lower
/// number than the side file has lost committed history. A process kill leaves the side file's
/// latest write in the page cache; for a power loss it is fsynced at most `syncInterval` apart,
/// so a loss of history older than that is always seen.
final class CommitMark: @unchecked Sendable {
    static let fileName = "colony.commits"
    static let syncIntervalSeconds = 0.1

    let path: String
    private var descriptor: Int32
    private var lastSync = ContinuousClock.now
    private var unsynced = false

    /// Opens (creating) the side file in `directory`; `recorded` is the number it holds (nil:
    /// the file is new or empty, e.g. a state folder from before the mark existed).
    init(directory: String) throws(StoreError) {
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw StoreError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The commit number the file holds (nil: none yet), and the next task id as of that
    /// commit (0 when the file predates it): after a loss that is accepted, ids below it are
    /// never handed out again (clients may hold them).
    func recorded() -> (commit: UInt64, nextID: UInt64)? {
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let fields = String(decoding: buffer[..<count], as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard let commit = fields.first.flatMap({ UInt64($0) }) else { return nil }
        return (commit, fields.count > 1 ? UInt64(fields[1]) ?? 0 : 0)
    }

    /// Records `commit` (the number of a commit that has completed) and the next task id it
    /// left; `sync` forces an fsync.
    func record(_ commit: UInt64, nextID: UInt64, sync: Bool = false) {
        // Fixed width, so a shorter number never leaves the tail of a longer one behind.
        let text = Array((String(commit).leftPadded(to: 20) + " " + String(nextID).leftPadded(to: 20)).utf8) + [0x0A]
        _ = text.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        unsynced = true
        let now = ContinuousClock.now
        let interval = Duration.milliseconds(Int(Self.syncIntervalSeconds * 1000))
        if sync || now - lastSync >= interval {
            _ = fsync(descriptor)
            lastSync = now
            unsynced = false
        }
    }

    func close() {
        guard descriptor >= 0 else { return }
        if unsynced { _ = fsync(descriptor) }
        Foundation.close(descriptor)
        descriptor = -1
    }

    deinit { close() }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
