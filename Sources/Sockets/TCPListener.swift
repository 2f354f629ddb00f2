#if canImport(Glibc)
import Glibc
#endif
import CSockets
import Synchronization

/// A listening TCP socket whose accepts wait on `SocketReactor`; each accepted connection
/// becomes a `FrameConnection`.
public final class TCPListener: @unchecked Sendable {
    private let fd: Int32
    /// The port bound (the one asked for, or the kernel's pick for port 0).
    public let port: Int
    private let closed = Mutex(false)

    /// Binds `host:port` and listens; throws at once for a bad or busy address.
    public init(host: String, port: Int) throws(SocketError) {
        let operation = "listen on \(host):\(port)"
        guard let address = try HostAddresses.resolveNow(host, port: port).first else { throw SocketError(operation, .unresolved("no address")) }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(operation) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = address.storage
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, address.length) }
        }
        guard bound == 0, listen(fd, 4096) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            throw .system(operation, code)
        }
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let networkPort: UInt16 = withUnsafeBytes(of: &local) { raw in
            address.family == AF_INET6 ? raw.load(fromByteOffset: 2, as: UInt16.self) : raw.load(fromByteOffset: 2, as: UInt16.self)
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: networkPort))
    }

    deinit { close() }

    /// The next connection; throws `.cancelled` when the task is cancelled and the listener's
    /// error when it is closed or fails. A connection that fails between the kernel's accept
    /// and ours (reset, out of descriptors for a moment) is skipped.
    public func accept(frameBytesMax: Int) async throws(SocketError) -> FrameConnection {
        while true {
            if Task.isCancelled { throw SocketError("accept", .cancelled) }
            if closed.withLock({ $0 }) { throw SocketError("accept", .connectionClosed) }
            let connection = csockets_accept_nonblocking(fd)
            if connection >= 0 {
                let framed = FrameConnection(fd: connection, frameBytesMax: frameBytesMax)
                // A hello that cannot be sent: the connection failed, and its reader hears so.
                try? framed.flush()
                return framed
            }
            switch errno {
            case EAGAIN, EWOULDBLOCK:
                switch await SocketReactor.shared.wait(fd, for: EPOLLIN.rawValue, until: nil) {
                case .ready: continue
                case .timedOut, .cancelled: throw SocketError("accept", .cancelled)
                case .failed(let code):
                    if closed.withLock({ $0 }) { throw SocketError("accept", .connectionClosed) }
                    throw .system("accept", code)
                }
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory for now: the connection waits in the backlog.
                let code = errno
                if Task.isCancelled { throw SocketError("accept", .cancelled) }
                try? await Task.sleep(for: .milliseconds(50))
                if Task.isCancelled { throw SocketError("accept", .system(code)) }
            default:
                // Closed while accepting (EBADF and the like): the listener's stop, not a failure.
                if closed.withLock({ $0 }) { throw SocketError("accept", .connectionClosed) }
                throw .system("accept")
            }
        }
    }

    /// Stops listening; idempotent. An accept in progress ends.
    public func close() {
        guard !closed.withLock({ let was = $0; $0 = true; return was }) else { return }
        SocketReactor.shared.forget(fd)
        _ = Glibc.close(fd)
    }
}
