import CNNG

/// The send and receive paths shared by sockets and contexts.
enum Transfer {
    /// An aio (the reusable one, or a new one) holding a message with `bytes`.
    private static func loaded(_ bytes: [UInt8], operation: String, reusable: AsyncOperation?) throws(NNGError) -> AsyncOperation {
        let msg = try MessageBytes.make(bytes, operation: operation)
        let op: AsyncOperation
        if let reusable {
            op = reusable
        } else {
            do { op = try AsyncOperation() } catch {
                nng_msg_free(msg)
                throw error
            }
        }
        nng_aio_set_msg(op.aio, msg)
        return op
    }

    static func send(
        _ bytes: [UInt8], operation: String, timeout: Duration?, cancellable: Bool = true,
        using reusable: AsyncOperation? = nil, start: @escaping (OpaquePointer) -> Void
    ) async throws(NNGError) {
        let op = try loaded(bytes, operation: operation, reusable: reusable)
        let outcome = await op.run(timeoutMilliseconds: timeout.map(milliseconds), cancellable: cancellable, start)
        if outcome.code != 0 {
            // A failed send leaves the message with us.
            if let unsent = op.takeMessage() { nng_msg_free(unsent) }
            throw NNGError(code: outcome.code, operation: operation)
        }
        // nng owns the sent message now; forget it so a reused aio never hands it out again.
        op.forgetMessage()
    }

    static func receive(
        operation: String, timeout: Duration?, cancellable: Bool = true,
        using reusable: AsyncOperation? = nil, start: @escaping (OpaquePointer) -> Void
    ) async throws(NNGError) -> [UInt8] {
        try await receiveMessage(operation: operation, timeout: timeout, cancellable: cancellable, using: reusable, start: start).bytes
    }

    static func receiveMessage(
        operation: String, timeout: Duration?, cancellable: Bool = true,
        using reusable: AsyncOperation? = nil, start: @escaping (OpaquePointer) -> Void
    ) async throws(NNGError) -> ReceivedMessage {
        let op: AsyncOperation
        if let reusable { op = reusable } else { op = try AsyncOperation() }
        let outcome = await op.run(timeoutMilliseconds: timeout.map(milliseconds), cancellable: cancellable, start)
        if outcome.code != 0 { throw NNGError(code: outcome.code, operation: operation) }
        guard let msg = op.takeMessage() else {
            throw NNGError(code: Int32(NNG_EINTERNAL.rawValue), operation: "\(operation): no message")
        }
        return MessageBytes.consumeReceived(msg)
    }

    /// Sends `bytes`, then receives on the same aio; the receive is started by nng's callback
    /// as soon as the send completed. Throws with `sendOperation` or `receiveOperation`
    /// naming the step that failed.
    static func sendThenReceive(
        _ bytes: [UInt8], sendOperation: String, receiveOperation: String,
        sendTimeout: Duration?, receiveTimeout: Duration?, cancellable: Bool,
        using reusable: AsyncOperation?,
        send: @escaping (OpaquePointer) -> Void, receive: @escaping @Sendable (OpaquePointer) -> Void
    ) async throws(NNGError) -> ReceivedMessage {
        let op = try loaded(bytes, operation: sendOperation, reusable: reusable)
        let outcome = await op.run(
            timeoutMilliseconds: sendTimeout.map(milliseconds), cancellable: cancellable, send,
            then: receive, nextTimeoutMilliseconds: receiveTimeout.map(milliseconds) ?? NNG_DURATION_DEFAULT)
        if outcome.code != 0 {
            if outcome.failedInFirstStep {
                if let unsent = op.takeMessage() { nng_msg_free(unsent) }
                throw NNGError(code: outcome.code, operation: sendOperation)
            }
            throw NNGError(code: outcome.code, operation: receiveOperation)
        }
        guard let reply = op.takeMessage() else {
            throw NNGError(code: Int32(NNG_EINTERNAL.rawValue), operation: "\(receiveOperation): no message")
        }
        return MessageBytes.consumeReceived(reply)
    }
}

/// Converts a Swift duration to nng's milliseconds, rounding up so that a tiny positive
/// timeout never becomes "no wait at all".
func milliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    if seconds < 0 { return 0 }
    // Anything beyond Int32's milliseconds (24.8 days) is clamped; seconds * 1000 would
    // overflow Int64 for a Duration near its largest.
    if seconds >= Int64(Int32.max) / 1000 + 1 { return Int32.max }
    let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: ms)
}
