import Synchronization

/// A client's way to a `colony://` server: requests and their replies over one
/// `FrameConnection`, any number in flight, matched by id.
///
/// It behaves as nng's REQ socket did for Colony, so the client and the node keep their
/// rules: the connection is kept (re-made after a loss, with back-off), and a request that had
/// no reply when its connection was lost is sent again on the next one (Colony's requests are
/// idempotent: keys, acknowledgements). A request waits for a connection, its reply, its
/// deadline or its task's cancellation, whichever comes first.
///
/// It must be closed: its connection keeper holds it (`CoordinatorLink` closes it when it goes).
public final class FramedChannel: Sendable {
    /// The connection came or went (a node reads these as nng's pipe events).
    public enum Event: Sendable, Equatable { case connected, disconnected }

    public let host: String
    public let port: Int
    public let frameBytesMax: Int
    /// Whether requests in flight when the connection is lost go again on the next one (else
    /// they fail with `connectionClosed`).
    public let resendsAfterLoss: Bool
    private let reconnectMin: Duration
    private let reconnectMax: Duration
    private let state = Mutex(State())
    public let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation

    private struct Pending {
        var payload: [UInt8]
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Result<[UInt8], SocketError>, Never>?
        /// The outcome, when it came before the requester began to wait.
        var outcome: Result<[UInt8], SocketError>?
    }

    private struct Sweeper {
        var generation: UInt64
        var until: ContinuousClock.Instant
        var task: Task<Void, Never>?
    }

    private struct State {
        var connection: FrameConnection?
        var pending: [UInt64: Pending] = [:]
        var nextID: UInt64 = 1
        var closed = false
        /// The task that ends requests at their deadlines: it sleeps until the earliest one
        /// (not a periodic tick) and is replaced when a request with an earlier one comes.
        var sweeper: Sweeper?
        var sweepers: UInt64 = 0
        var keeper: Task<Void, Never>?
    }

    /// Connects now, on the caller's thread, within `timeout` (throws the reason when nothing
    /// listens or the peer does not speak colony://), then keeps the connection.
    public convenience init(host: String, port: Int, frameBytesMax: Int, timeout: Duration, resendsAfterLoss: Bool = true,
                            reconnectMin: Duration = .milliseconds(50), reconnectMax: Duration = .seconds(2)) throws(SocketError) {
        try self.init(host: host, port: port, frameBytesMax: frameBytesMax, resendsAfterLoss: resendsAfterLoss,
                      reconnectMin: reconnectMin, reconnectMax: reconnectMax,
                      first: FrameConnection.connectNow(host: host, port: port, frameBytesMax: frameBytesMax, timeout: timeout))
    }

    /// Connects in the background, as long as it takes (a node started before its coordinator).
    public convenience init(connectingLaterTo host: String, port: Int, frameBytesMax: Int, resendsAfterLoss: Bool = true,
                            reconnectMin: Duration = .milliseconds(50), reconnectMax: Duration = .seconds(2)) {
        // Never throws: there is no first connection to make.
        try! self.init(host: host, port: port, frameBytesMax: frameBytesMax, resendsAfterLoss: resendsAfterLoss,
                       reconnectMin: reconnectMin, reconnectMax: reconnectMax, first: nil)
    }

    private init(host: String, port: Int, frameBytesMax: Int, resendsAfterLoss: Bool, reconnectMin: Duration, reconnectMax: Duration,
                 first: FrameConnection?) throws(SocketError) {
        self.host = host
        self.resendsAfterLoss = resendsAfterLoss
        self.port = port
        self.frameBytesMax = frameBytesMax
        self.reconnectMin = reconnectMin
        self.reconnectMax = reconnectMax
        (events, eventSink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(64))
        let keeper = Task { [self] in await keep(first) }
        state.withLock { $0.keeper = keeper }
    }

    deinit { close() }

    /// Sends `payload` and waits for its reply until `deadline`.
    public func request(_ payload: [UInt8], until deadline: ContinuousClock.Instant) async throws(SocketError) -> [UInt8] {
        guard payload.count <= frameBytesMax else { throw SocketError("send the request", .requestTooLarge(payload.count, frameBytesMax)) }
        let registered = state.withLock { state -> (id: UInt64, connection: FrameConnection?, sweep: UInt64?, replaced: Task<Void, Never>?)? in
            if state.closed { return nil }
            let id = state.nextID
            state.nextID += 1
            state.pending[id] = Pending(payload: payload, deadline: deadline)
            if let sweeper = state.sweeper, sweeper.until <= deadline { return (id, state.connection, nil, nil) }
            state.sweepers += 1
            let replaced = state.sweeper?.task
            state.sweeper = Sweeper(generation: state.sweepers, until: deadline, task: nil)
            return (id, state.connection, state.sweepers, replaced)
        }
        guard let registered else { throw SocketError("send the request", .connectionClosed) }
        if let generation = registered.sweep {
            registered.replaced?.cancel()
            let task = Task { await sweepDeadlines(generation: generation, first: deadline) }
            let stale = state.withLock { state -> Bool in
                guard state.sweeper?.generation == generation else { return true }
                state.sweeper?.task = task
                return false
            }
            if stale { task.cancel() }
        }
        // A failed send is not this request's failure: the connection is going, and the next
        // one carries it again.
        try? registered.connection?.send(id: registered.id, payload)
        let id = registered.id
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8], SocketError>, Never>) in
                let now = state.withLock { state -> Result<[UInt8], SocketError>? in
                    guard var pending = state.pending[id] else { return .failure(SocketError("wait for the reply", .cancelled)) }
                    if let outcome = pending.outcome {
                        state.pending[id] = nil
                        return outcome
                    }
                    pending.continuation = continuation
                    state.pending[id] = pending
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            end(id, .failure(SocketError("wait for the reply", .cancelled)))
        }
        return try outcome.get()
    }

    /// Ends the request `id` with `outcome` (its reply, a timeout, a cancellation).
    private func end(_ id: UInt64, _ outcome: Result<[UInt8], SocketError>) {
        let continuation = state.withLock { state -> CheckedContinuation<Result<[UInt8], SocketError>, Never>? in
            guard var pending = state.pending[id] else { return nil }
            guard let continuation = pending.continuation else {
                if pending.outcome == nil { pending.outcome = outcome }
                state.pending[id] = pending
                return nil
            }
            state.pending[id] = nil
            return continuation
        }
        continuation?.resume(returning: outcome)
    }

    /// Ends requests whose deadline passed: sleeps until the earliest deadline, ends what is
    /// due, and goes on to the next, until none waits. Why not a periodic sweep: a node's long
    /// poll waits ~16 s, and a 20 ms tick woke a thread 50 times a second for nothing.
    /// Cancelled when a request with an earlier deadline starts a sweeper of its own.
    private func sweepDeadlines(generation: UInt64, first: ContinuousClock.Instant) async {
        var next = first
        while true {
            do { try await Task.sleep(until: next, clock: .continuous) } catch { return }
            let now = ContinuousClock.now
            let (expired, following) = state.withLock { state -> ([UInt64], ContinuousClock.Instant?) in
                var expired: [UInt64] = []
                var following: ContinuousClock.Instant?
                for (id, pending) in state.pending where pending.outcome == nil {
                    if pending.deadline <= now {
                        expired.append(id)
                    } else if following.map({ pending.deadline < $0 }) ?? true {
                        following = pending.deadline
                    }
                }
                // Only the current sweeper speaks for the state; a replaced one just ends what is due.
                guard state.sweeper?.generation == generation else { return (expired, nil) }
                if let following, !state.closed {
                    state.sweeper?.until = following
                } else {
                    state.sweeper = nil
                    following = nil
                }
                return (expired, following)
            }
            for id in expired { end(id, .failure(SocketError("wait for the reply", .timedOut))) }
            guard let following else { return }
            next = following
        }
    }

    /// Keeps a connection until `close`: reads replies, and after a loss connects again
    /// (back-off from `reconnectMin` to `reconnectMax`) and sends what had no reply.
    private func keep(_ first: FrameConnection?) async {
        var connection = first
        var failures = 0
        while !Task.isCancelled {
            if connection == nil {
                do {
                    connection = try await FrameConnection.connect(host: host, port: port, frameBytesMax: frameBytesMax,
                                                                   until: .now + .seconds(10))
                    failures = 0
                } catch {
                    failures += 1
                    await pause(failures)
                    continue
                }
            }
            guard let current = connection else { continue }
            let unanswered = state.withLock { state -> [(UInt64, [UInt8])]? in
                if state.closed { return nil }
                state.connection = current
                return state.pending.filter { $0.value.outcome == nil }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.payload) }
            }
            guard let unanswered else { break }
            eventSink.yield(.connected)
            // Replies are matched on the reactor's thread, which resumes each requester itself.
            let lostBecause: SocketError? = await withCheckedContinuation { ended in
                current.startReading(onFrames: { [self] frames in
                    for frame in frames { end(frame.id, .success(frame.payload)) }
                }, onEnd: { ended.resume(returning: $0) })
                for (id, payload) in unanswered { try? current.send(id: id, payload) }
            }
            let inFlight = state.withLock { state -> [UInt64] in
                state.connection = nil
                return resendsAfterLoss ? [] : Array(state.pending.keys)
            }
            // The reason, when there is one, goes with them (`connectionClosed` alone: the peer closed).
            for id in inFlight { end(id, .failure(lostBecause ?? SocketError("wait for the reply", .connectionClosed))) }
            current.close()
            connection = nil
            eventSink.yield(.disconnected)
            if case .notColony = lostBecause?.reason, let lostBecause {
                // Not a passing fault: what waits would only time out; say why now.
                for id in state.withLock({ Array($0.pending.keys) }) { end(id, .failure(lostBecause)) }
            }
            failures += 1
            await pause(failures)
        }
        // Closed while a new connection was being made: it was never installed; end it here.
        connection?.close()
    }

    private func pause(_ failures: Int) async {
        let factor = min(1 << min(failures - 1, 20), 1 << 20)
        try? await Task.sleep(for: min(reconnectMax, reconnectMin * factor))
    }

    /// Whether `close` was called.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Ends every request (`connectionClosed`) and the connection; idempotent.
    public func close() {
        let (waiting, keeper, connection) = state.withLock { state in
            if state.closed { return ([UInt64](), Task<Void, Never>?.none, FrameConnection?.none) }
            state.closed = true
            let taken = (Array(state.pending.keys), state.keeper, state.connection)
            state.keeper = nil
            state.sweeper?.task?.cancel()
            state.sweeper = nil
            return taken
        }
        keeper?.cancel()
        connection?.shutDown()
        for id in waiting { end(id, .failure(SocketError("wait for the reply", .connectionClosed))) }
        eventSink.finish()
    }
}
