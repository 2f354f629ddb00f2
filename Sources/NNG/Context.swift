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

    init(socket: Socket) throws(NNGError) {
        var ctx = nng_ctx()
        try check(nng_ctx_open(&ctx, socket.raw), "open context")
        self.raw = ctx
        self.socket = socket
    }

    deinit { close() }

    /// Closes the context; its pending operations fail with `isClosed`. Idempotent.
    public func close() {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        nng_ctx_close(raw)
    }

    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(NNGError) {
        let ctx = raw
        try await Transfer.send(bytes, operation: "send", timeout: timeout) { nng_ctx_send(ctx, $0) }
    }

    public func receive(timeout: Duration? = nil) async throws(NNGError) -> [UInt8] {
        let ctx = raw
        return try await Transfer.receive(operation: "receive", timeout: timeout) { nng_ctx_recv(ctx, $0) }
    }

    /// REQ: sends `request` and waits for its reply, failing after `timeout` in total.
    ///
    /// The receive starts only after the send completed, and Swift cancellation is honoured
    /// only before the send starts and by the timeout afterwards. This sidesteps nng 1.5.2's
    /// crash when a REQ receive is cancelled or expires while a send on the same context is
    /// still pending (nanomsg/nng#1702, fixed in 1.7).
    public func request(_ request: [UInt8], timeout: Duration) async throws(NNGError) -> [UInt8] {
        if Task.isCancelled { throw NNGError(code: Int32(NNG_ECANCELED.rawValue), operation: "request") }
        let ctx = raw
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        try await Transfer.send(request, operation: "send request", timeout: timeout, cancellable: false) { nng_ctx_send(ctx, $0) }
        let remaining = max(deadline - clock.now, .milliseconds(1))
        return try await Transfer.receive(operation: "receive reply", timeout: remaining, cancellable: false) { nng_ctx_recv(ctx, $0) }
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
