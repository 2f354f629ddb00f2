import CNNG
import Synchronization

/// A context on a REQ or REP socket: its own request/reply state, so that many exchanges can
/// be pending on one socket at once (nng's async-server pattern).
///
/// One exchange at a time per context: a REP context receives then sends; a REQ context
/// sends then receives (`request`).
public final class Context: @unchecked Sendable {
    let raw: nng_ctx
    /// Keeps the socket open while the context lives.
    public let socket: Socket
    private let closed = Atomic<Bool>(false)
    // One aio reused by the context's sequential operations: allocating and reaping one per
    // operation costs a wake-up of nng's reaper thread each time. A caller that overlaps
    // operations on one context (a misuse) gets a fresh aio instead of a shared one.
    private let operation: AsyncOperation
    private let operationInUse = Atomic<Bool>(false)

    init(socket: Socket) throws(NNGError) {
        var ctx = nng_ctx()
        try check(nng_ctx_open(&ctx, socket.raw), "open context")
        self.raw = ctx
        self.socket = socket
        do {
            operation = try AsyncOperation()
        } catch {
            nng_ctx_close(ctx)
            throw error
        }
    }

    private func borrowOperation() -> AsyncOperation? {
        operationInUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged ? operation : nil
    }

    private func returnOperation(_ borrowed: AsyncOperation?) {
        if borrowed != nil { operationInUse.store(false, ordering: .releasing) }
    }

    deinit { close() }

    /// Closes the context; its pending operations fail with `isClosed`. Idempotent.
    public func close() {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        // Never during nng_close (see `Socket.close`); after it, the context is closed already.
        let ctx = raw
        _ = socket.whileOpen { nng_ctx_close(ctx) }
    }

    /// Starts `call` on `aio`, or fails the aio as closed when the socket is closing (a
    /// context call during nng_close crashes nng 1.5.2; see `Socket.close`).
    private static func start(_ aio: OpaquePointer, on socket: Socket, _ call: (OpaquePointer) -> Void) {
        if !socket.whileOpen({ call(aio) }) { nng_aio_finish(aio, Int32(NNG_ECLOSED.rawValue)) }
    }

    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(NNGError) {
        let ctx = raw
        let socket = self.socket
        let op = borrowOperation()
        defer { returnOperation(op) }
        try await Transfer.send(bytes, operation: "send", timeout: timeout, using: op) { Self.start($0, on: socket) { nng_ctx_send(ctx, $0) } }
    }

    public func receive(timeout: Duration? = nil) async throws(NNGError) -> [UInt8] {
        let ctx = raw
        let socket = self.socket
        let op = borrowOperation()
        defer { returnOperation(op) }
        return try await Transfer.receive(operation: "receive", timeout: timeout, using: op) { Self.start($0, on: socket) { nng_ctx_recv(ctx, $0) } }
    }

    /// REQ: sends `request` and waits for its reply; each step may take up to `timeout`.
    ///
    /// The receive is started by nng's callback only after the send completed, and Swift
    /// cancellation is honoured only before the exchange starts; afterwards the timeout bounds
    /// it (closing the socket ends it at once). This sidesteps nng 1.5.2's crash when a REQ
    /// receive is cancelled or expires while a send on the same context is still pending
    /// (nanomsg/nng#1702, fixed in 1.7).
    public func request(_ request: [UInt8], timeout: Duration) async throws(NNGError) -> [UInt8] {
        if Task.isCancelled { throw NNGError(code: Int32(NNG_ECANCELED.rawValue), operation: "request") }
        let ctx = raw
        let socket = self.socket
        let op = borrowOperation()
        defer { returnOperation(op) }
        return try await Transfer.sendThenReceive(
            request, sendOperation: "send request", receiveOperation: "receive reply",
            sendTimeout: timeout, receiveTimeout: timeout, cancellable: false, using: op,
            send: { Self.start($0, on: socket) { nng_ctx_send(ctx, $0) } }, receive: { Self.start($0, on: socket) { nng_ctx_recv(ctx, $0) } }).bytes
    }

    /// REP: sends `reply` to the request received last, then waits for the next request; the
    /// serving loop of a REP context in one step. If the reply cannot be sent (the requester
    /// has gone), this still receives the next request.
    public func reply(_ reply: [UInt8], thenReceiveWithin timeout: Duration? = nil) async throws(NNGError) -> [UInt8] {
        try await replyThenReceiveMessage(reply, within: timeout).bytes
    }

    /// Receives the next message with the pipe it came on (see `ReceivedMessage`).
    public func receiveMessage(timeout: Duration? = nil) async throws(NNGError) -> ReceivedMessage {
        let ctx = raw
        let socket = self.socket
        let op = borrowOperation()
        defer { returnOperation(op) }
        return try await Transfer.receiveMessage(operation: "receive", timeout: timeout, using: op) { Self.start($0, on: socket) { nng_ctx_recv(ctx, $0) } }
    }

    /// `reply(_:thenReceiveWithin:)`, with the pipe the next request came on.
    public func replyThenReceiveMessage(_ reply: [UInt8], within timeout: Duration? = nil) async throws(NNGError) -> ReceivedMessage {
        let ctx = raw
        let socket = self.socket
        let op = borrowOperation()
        defer { returnOperation(op) }
        do {
            return try await Transfer.sendThenReceive(
                reply, sendOperation: "send reply", receiveOperation: "receive",
                sendTimeout: .seconds(10), receiveTimeout: timeout, cancellable: true, using: op,
                send: { Self.start($0, on: socket) { nng_ctx_send(ctx, $0) } }, receive: { Self.start($0, on: socket) { nng_ctx_recv(ctx, $0) } })
        } catch where error.operation == "send reply" && !error.isClosed && !error.isCancelled {
            return try await Transfer.receiveMessage(operation: "receive", timeout: timeout, using: op) { Self.start($0, on: socket) { nng_ctx_recv(ctx, $0) } }
        }
    }

    /// Default receive timeout of this context.
    public func setReceiveTimeout(_ timeout: Duration?) throws(NNGError) {
        try check(nng_ctx_set_ms(raw, NNG_OPT_RECVTIMEO, timeout.map(milliseconds) ?? NNG_DURATION_INFINITE), "set context receive timeout")
    }

    /// REQ only: resend time of requests on this context; nil turns resending off.
    public func setRequestResendTime(_ time: Duration?) throws(NNGError) {
        try check(nng_ctx_set_ms(raw, NNG_OPT_REQ_RESENDTIME, time.map(milliseconds) ?? NNG_DURATION_INFINITE), "set context resend time")
    }
}
