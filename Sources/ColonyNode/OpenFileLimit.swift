import Glibc

/// The process's limit of open files. A node's io slots each hold a socket while a fetch
/// waits, and many systems start processes with a soft limit of 1024 under a hard limit far
/// above it; like Go's runtime, the node raises its soft limit to the hard one at start.
public enum OpenFileLimit {
    /// Raises the soft limit to the hard limit (when it is lower); returns the soft limit in force.
    @discardableResult
    public static func raiseToHard() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)   // RLIM_INFINITY is the largest value: Int.max
    }

    /// The soft limit in force.
    public static func current() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        return Int(clamping: limit.rlim_cur)
    }

    /// Open files kept for what is not a fetch: the node's sockets, its process pool's pipes,
    /// logs, handlers' own files.
    public static let reserved = 256

    /// How many fetches may hold a connection at once under a limit of `limit` open files.
    public static func fetchConnections(under limit: Int) -> Int {
        max(8, limit - reserved)
    }
}
