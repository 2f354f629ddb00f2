#if canImport(Glibc)
import Glibc
#endif
import CSockets
import Synchronization

/// A TCP connection carrying Colony's frames (`colony://`): each side first sends
/// `FrameFormat.hello`, then frames of an id and a payload, in either direction, any number in
/// flight. What arrives is read on `SocketReactor`'s thread and handed to the connection's
/// owner (`startReading`); sends may come from many tasks at once and go out whole, in the
/// order they were made.
///
/// Why not nng for this: every nng message crosses three or four of nng's threads on each
/// side: a request/reply to a coordinator costs 260-350 µs over nng here and about 80-120 µs
/// over this framing, in the same runs (docs/BENCHMARKS.md, W0).
public final class FrameConnection: @unchecked Sendable {
    private let fd: Int32
    /// The same socket under a second number, so that a send waiting for room and the
    /// reader waiting for data are two waits (the reactor keeps one per descriptor).
    private let writeFD: Int32
    public let frameBytesMax: Int
    private let buffer: UnsafeMutableRawBufferPointer
    private let reading = Mutex(Reading())
    /// Whether `fd` and `writeFD` were closed (their numbers may be reused at once).
    private let descriptors = Mutex(false)
    private let outgoing = Mutex(Outgoing())

    private struct Reading {
        /// Read but not yet split into frames.
        var inbound: [UInt8] = []
        var helloSeen = false
        /// The peer closed, a read failed, or `close` was called: no more reads.
        var ended = false
        var onFrames: (@Sendable ([FrameFormat.Frame]) -> Void)?
        var onEnd: (@Sendable (SocketError?) -> Void)?
    }

    private struct Outgoing {
        var bytes: [UInt8] = []
        /// A task is writing `bytes` out; others only append.
        var writing = false
        var failure: SocketError?
        /// `close` was called; the descriptors go when no writer holds them.
        var closing = false
    }

    /// How long a send may wait for the peer to make room before the connection is given up.
    public static let sendStallMax = Duration.seconds(30)

    /// Takes over `fd` (a connected TCP socket) and sends the hello.
    init(fd: Int32, frameBytesMax: Int) {
        self.fd = fd
        // Close-on-exec like `fd`: children the node starts must not keep the connection open.
        writeFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        self.frameBytesMax = frameBytesMax
        buffer = .allocate(byteCount: 64 << 10, alignment: 1)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // The hello is the first thing written; its writer (the creator's `flush`) holds `writing`.
        outgoing.withLock { state in
            state.bytes = FrameFormat.hello
            state.writing = true
        }
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects to `host:port` and says hello (the peer's hello is checked by the first read).
    public static func connect(host: String, port: Int, frameBytesMax: Int, until deadline: ContinuousClock.Instant) async throws(SocketError) -> FrameConnection {
        let connection = try await TCPConnection.connect(host: host, port: port, until: deadline)
        let framed = FrameConnection(fd: connection.releaseDescriptor(), frameBytesMax: frameBytesMax)
        try framed.flush()
        return framed
    }

    /// Connects to `host:port` on the caller's thread, waiting at most `timeout` (a client's
    /// first connection, which must fail at once, with the reason, when nothing listens).
    public static func connectNow(host: String, port: Int, frameBytesMax: Int, timeout: Duration) throws(SocketError) -> FrameConnection {
        let deadline = ContinuousClock.now + timeout
        var lastError = SocketError("connect", .system(EADDRNOTAVAIL))
        for address in try HostAddresses.resolveNow(host, port: port) {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw .system("connect") }
            var storage = address.storage
            let started = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, address.length) }
            }
            var failure: Int32 = started == 0 ? 0 : errno
            if failure == EINPROGRESS {
                var poll = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let (seconds, attoseconds) = (deadline - .now).components
                let left = max(0, seconds * 1_000 + attoseconds / 1_000_000_000_000_000 + 1)
                if Glibc.poll(&poll, 1, Int32(clamping: left)) == 1 {
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    failure = 0
                    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
                } else {
                    _ = Glibc.close(fd)
                    throw SocketError("connect", .timedOut)
                }
            }
            if failure == 0 {
                let framed = FrameConnection(fd: fd, frameBytesMax: frameBytesMax)
                try framed.flush()
                return framed
            }
            _ = Glibc.close(fd)
            lastError = .system("connect", failure)
        }
        throw lastError
    }

    /// Hands every frame that arrives to `onFrames`, in order, on the reactor's thread (it
    /// must not block: resume a waiter, start a task), then once `onEnd`: nil when the peer
    /// closed the connection, else why reading stopped (a bad hello, a frame over the bound,
    /// a failed read). Call once.
    public func startReading(onFrames: @escaping @Sendable ([FrameFormat.Frame]) -> Void, onEnd: @escaping @Sendable (SocketError?) -> Void) {
        let ended = reading.withLock { state -> Bool in
            state.onFrames = onFrames
            state.onEnd = onEnd
            return state.ended
        }
        if ended { return onEnd(SocketError("read a frame", .connectionClosed)) }
        do {
            // Level-triggered: bytes that came before the watch are reported at once.
            try SocketReactor.shared.watch(fd) { [weak self] in self?.readable() }
        } catch {
            endReading(error)
        }
    }

    /// Most bytes read per turn of the reactor, so one busy connection does not hold it.
    private static let readTurnBytesMax = 1 << 20

    /// The socket has data (or an end): reads what is there, splits it, hands it on.
    private func readable() {
        var frames: [FrameFormat.Frame] = []
        var end: SocketError??
        let deliver = reading.withLock { state -> (@Sendable ([FrameFormat.Frame]) -> Void)? in
            guard !state.ended else { return nil }
            var taken = 0
            while taken < Self.readTurnBytesMax {
                let n = recv(fd, buffer.baseAddress, buffer.count, 0)
                if n > 0 {
                    state.inbound.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
                    taken += n
                    continue
                }
                if n == 0 {
                    end = .some(nil)
                } else if errno == EINTR {
                    continue
                } else if errno != EAGAIN && errno != EWOULDBLOCK {
                    end = .some(.system("read a frame"))
                }
                break
            }
            do throws(SocketError) {
                frames = try Self.split(&state, frameBytesMax: frameBytesMax)
            } catch {
                end = .some(error)
            }
            if end != nil { state.ended = true }
            return state.onFrames
        }
        if !frames.isEmpty { deliver?(frames) }
        if let end { finishReading(end) }
    }

    /// Takes the hello and the whole frames off the front of what was read.
    private static func split(_ state: inout Reading, frameBytesMax: Int) throws(SocketError) -> [FrameFormat.Frame] {
        if !state.helloSeen {
            let hello = FrameFormat.hello
            if state.inbound.count >= hello.count {
                guard state.inbound.starts(with: hello) else { throw SocketError("read a frame", .notColony(Array(state.inbound.prefix(hello.count)))) }
                state.inbound.removeFirst(hello.count)
                state.helloSeen = true
            } else {
                if !hello.starts(with: state.inbound) { throw SocketError("read a frame", .notColony(state.inbound)) }
                return []
            }
        }
        let (frames, used) = try FrameFormat.split(state.inbound, frameBytesMax: frameBytesMax)
        if used > 0 { state.inbound.removeFirst(used) }
        return frames
    }

    /// Reading stopped (`reason` nil: the peer closed): no more watching, and the owner hears it once.
    private func endReading(_ reason: SocketError?) {
        reading.withLock { $0.ended = true }
        finishReading(reason)
    }

    private func finishReading(_ reason: SocketError?) {
        descriptors.withLock { released in if !released { SocketReactor.shared.forget(fd) } }
        let onEnd = reading.withLock { state -> (@Sendable (SocketError?) -> Void)? in
            let onEnd = state.onEnd
            state.onEnd = nil
            state.onFrames = nil
            return onEnd
        }
        onEnd?(reason)
    }

    /// Sends one frame. It goes out at once when the socket has room (the usual case);
    /// otherwise a task of its own writes it, so that cancelling the caller never cuts a
    /// frame in half. Throws when the connection failed before (the frame is not sent).
    public func send(id: UInt64, _ payload: [UInt8]) throws(SocketError) {
        let start = outgoing.withLock { state -> Result<Bool, SocketError> in
            if let failure = state.failure { return .failure(failure) }
            FrameFormat.append(id: id, payload, to: &state.bytes)
            if state.writing { return .success(false) }
            state.writing = true
            return .success(true)
        }
        if try start.get() { try flush() }
    }

    /// Writes what is queued; the caller holds `writing`. What cannot go at once is left to a
    /// task that waits for room.
    func flush() throws(SocketError) {
        while true {
            guard var bytes = takeQueued() else { return }
            let sent = bytes.withUnsafeBytes { raw in Glibc.send(fd, raw.baseAddress!, raw.count, Int32(MSG_NOSIGNAL)) }
            if sent == bytes.count { continue }
            if sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                let failure = SocketError.system("send a frame")
                fail(failure)
                _ = takeQueued()  // steps down as writer (and frees the descriptors if closed meanwhile)
                throw failure
            }
            bytes.removeFirst(max(0, sent))
            Task.detached { await self.flushWaiting(bytes) }
            return
        }
    }

    /// What is queued, taken by the writer; nil (and the writer steps down, closing the
    /// descriptors if `close` came meanwhile) when nothing is.
    private func takeQueued() -> [UInt8]? {
        let (taken, release) = outgoing.withLock { state -> ([UInt8]?, Bool) in
            if state.bytes.isEmpty || state.failure != nil {
                state.bytes = []
                state.writing = false
                return (nil, state.closing)
            }
            let taken = state.bytes
            state.bytes = []
            return (taken, false)
        }
        if release { releaseDescriptors() }
        return taken
    }

    /// Writes `bytes`, then whatever was queued meanwhile, waiting for room as needed.
    private func flushWaiting(_ first: [UInt8]) async {
        var bytes = first
        var offset = 0
        var deadline = ContinuousClock.now + Self.sendStallMax
        while true {
            if offset == bytes.count {
                guard let more = takeQueued() else { return }
                bytes = more
                offset = 0
            }
            let sent = bytes.withUnsafeBytes { raw in Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                offset += sent
                deadline = ContinuousClock.now + Self.sendStallMax
                continue
            }
            if sent < 0 && errno == EINTR { continue }
            guard sent < 0, errno == EAGAIN || errno == EWOULDBLOCK else {
                fail(.system("send a frame"))
                _ = takeQueued()
                return
            }
            let failure: SocketError? = switch await SocketReactor.shared.wait(writeFD, for: EPOLLOUT.rawValue, until: deadline) {
            case .ready: nil
            case .timedOut: SocketError("send a frame", .timedOut)
            case .cancelled: SocketError("send a frame", .cancelled)
            case .failed(let code): .system("send a frame", code)
            }
            if let failure {
                fail(failure)
                _ = takeQueued()
                return
            }
        }
    }

    /// A send failed: later sends throw, and the reader sees the connection end.
    private func fail(_ failure: SocketError) {
        outgoing.withLock { state in
            if state.failure == nil { state.failure = failure }
            state.bytes = []
        }
        shutDown()
    }

    /// Ends the connection for both sides at once (the reader hears the end, the peer sees
    /// it closed); `close` still frees it. Harmless after `close`.
    public func shutDown() {
        descriptors.withLock { released in if !released { _ = shutdown(fd, Int32(SHUT_RDWR)) } }
    }

    /// Closes the connection; idempotent. Reading ends (`onEnd` hears `connectionClosed`);
    /// a send still being written out is cut off, and the descriptors are freed when its
    /// writer lets go.
    public func close() {
        let wasReading = reading.withLock { state -> Bool in
            let was = !state.ended && state.onEnd != nil
            state.ended = true
            return was
        }
        if wasReading { finishReading(SocketError("read a frame", .connectionClosed)) }
        let (first, releaseNow) = outgoing.withLock { state -> (Bool, Bool) in
            if state.closing { return (false, false) }
            state.closing = true
            if state.failure == nil { state.failure = SocketError("send a frame", .system(EBADF)) }
            state.bytes = []
            return (true, !state.writing)
        }
        guard first else { return }
        shutDown()
        if releaseNow { releaseDescriptors() }
    }

    /// Frees the descriptors, once: after this their numbers may belong to other sockets, so
    /// nothing here touches them again (`descriptors` guards every later use).
    private func releaseDescriptors() {
        descriptors.withLock { released in
            guard !released else { return }
            released = true
            SocketReactor.shared.forget(fd)
            SocketReactor.shared.forget(writeFD)
            _ = Glibc.close(writeFD)
            _ = Glibc.close(fd)
        }
    }
}
