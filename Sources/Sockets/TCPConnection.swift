#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CSockets
import Synchronization

/// One TCP connection whose steps wait on `SocketReactor`, never on a thread: bytes out, bytes
/// in. Steps on one connection are awaited one after the other.
public final class TCPConnection: @unchecked Sendable {
    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    private let closed = Mutex(false)
    /// Most bytes one `read` returns.
    public static let readSize = 64 << 10

    private init(fd: Int32) {
        self.fd = fd
        buffer = .allocate(byteCount: Self.readSize, alignment: 1)
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects to `host` (a name, or an IPv4 or IPv6 address, brackets allowed) on `port`,
    /// trying each address the name resolves to in turn.
    public static func connect(host: String, port: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> TCPConnection {
        try checkStillWanted(until: deadline, "connect")
        let addresses = try await HostAddresses.resolve(host, port: port, until: deadline)
        var lastError = SocketError("connect", .system(EADDRNOTAVAIL))
        for address in addresses {
            do {
                return try await connect(to: address, until: deadline)
            } catch where error.reason == .timedOut || error.reason == .cancelled {
                throw error
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private static func connect(to address: HostAddresses.Address, until deadline: ContinuousClock.Instant) async throws(SocketError) -> TCPConnection {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("connect") }
        let connection = TCPConnection(fd: fd)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var storage = address.storage
        let started = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
        }
        if started == 0 { return connection }
        guard errno == EINPROGRESS else { throw .system("connect") }
        // Looked at before waiting: on loopback the handshake is often over by now.
        var waits = false
        while true {
            if waits { try await wait(fd, for: EPOLLOUT.rawValue, until: deadline, "connect") }
            waits = true
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
            if failure != 0 { throw .system("connect", failure) }
            // Not connected yet (or a wake-up meant for an earlier wait on this number).
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let connected = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &peerLength) }
            }
            if connected == 0 { return connection }
            if errno != ENOTCONN { throw .system("connect") }
        }
    }

    /// Waits for `events` on the socket; throws what ended the wait unless it is ready.
    private static func wait(_ fd: Int32, for events: UInt32, until deadline: ContinuousClock.Instant, _ operation: String) async throws(SocketError) {
        switch await SocketReactor.shared.wait(fd, for: events, until: deadline) {
        case .ready: return
        case .timedOut: throw SocketError(operation, .timedOut)
        case .cancelled: throw SocketError(operation, .cancelled)
        case .failed(let code): throw .system(operation, code)
        }
    }

    /// Throws when the deadline passed or the task is cancelled: checked before every step,
    /// since a step that can go on at once (data keeps arriving) never waits, and so never
    /// meets them in `SocketReactor.wait`.
    private static func checkStillWanted(until deadline: ContinuousClock.Instant, _ operation: String) throws(SocketError) {
        if Task.isCancelled { throw SocketError(operation, .cancelled) }
        if ContinuousClock.now >= deadline { throw SocketError(operation, .timedOut) }
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) async throws(SocketError) {
        var sent = 0
        while sent < bytes.count {
            try Self.checkStillWanted(until: deadline, "send the request")
            let n = bytes.withUnsafeBytes { raw in send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
                continue
            }
            guard n < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { throw .system("send the request") }
            if errno == EINTR { continue }
            try await Self.wait(fd, for: EPOLLOUT.rawValue, until: deadline, "send the request")
        }
    }

    /// What has arrived (at most `readSize` bytes), waiting for at least one byte; empty
    /// when the peer closed the connection.
    public func read(until deadline: ContinuousClock.Instant) async throws(SocketError) -> [UInt8] {
        while true {
            try Self.checkStillWanted(until: deadline, "read the response")
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return Array(UnsafeRawBufferPointer(rebasing: buffer[..<n])) }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { throw .system("read the response") }
            if errno == EINTR { continue }
            try await Self.wait(fd, for: EPOLLIN.rawValue, until: deadline, "read the response")
        }
    }

    /// Hands the descriptor to a new owner (`FrameConnection`): this object no longer closes it.
    func releaseDescriptor() -> Int32 {
        closed.withLock { $0 = true }
        return fd
    }

    /// Closes the connection; idempotent. No step may be in progress.
    public func close() {
        guard !closed.withLock({ let was = $0; $0 = true; return was }) else { return }
        SocketReactor.shared.forget(fd)
        _ = Glibc.close(fd)
    }
}
