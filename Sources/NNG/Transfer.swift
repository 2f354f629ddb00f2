import CNNG

/// The send and receive paths shared by sockets and contexts.
enum Transfer {
    static func send(
        _ bytes: [UInt8], operation: String, timeout: Duration?, cancellable: Bool = true,
        start: @escaping (OpaquePointer) -> Void
    ) async throws(NNGError) {
        let msg = try MessageBytes.make(bytes, operation: operation)
        let op: AsyncOperation
        do { op = try AsyncOperation() } catch {
            nng_msg_free(msg)
            throw error
        }
        nng_aio_set_msg(op.aio, msg)
        let rv = await op.run(timeoutMilliseconds: timeout.map(milliseconds), cancellable: cancellable, start)
        if rv != 0 {
            // A failed send leaves the message with us.
            if let unsent = op.takeMessage() { nng_msg_free(unsent) }
            throw NNGError(code: rv, operation: operation)
        }
    }

    static func receive(
        operation: String, timeout: Duration?, cancellable: Bool = true,
        start: @escaping (OpaquePointer) -> Void
    ) async throws(NNGError) -> [UInt8] {
        let op = try AsyncOperation()
        let rv = await op.run(timeoutMilliseconds: timeout.map(milliseconds), cancellable: cancellable, start)
        if rv != 0 { throw NNGError(code: rv, operation: operation) }
        guard let msg = op.takeMessage() else {
            throw NNGError(code: Int32(NNG_EINTERNAL.rawValue), operation: "\(operation): no message")
        }
        return MessageBytes.consume(msg)
    }
}

/// Converts a Swift duration to nng's milliseconds, rounding up so that a tiny positive
/// timeout never becomes "no wait at all".
func milliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    if seconds < 0 { return 0 }
    let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: ms)
}
