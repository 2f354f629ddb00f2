import CNNG

/// Conversions between Swift byte arrays and `nng_msg`, kept in one place.
enum MessageBytes {
    static func make(_ bytes: [UInt8], operation: String) throws(NNGError) -> OpaquePointer {
        var msg: OpaquePointer?
        try check(nng_msg_alloc(&msg, 0), "\(operation): allocate message")
        guard let msg else { throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: operation) }
        if !bytes.isEmpty {
            let rv = bytes.withUnsafeBytes { nng_msg_append(msg, $0.baseAddress, $0.count) }
            if rv != 0 {
                nng_msg_free(msg)
                throw NNGError(code: rv, operation: "\(operation): fill message")
            }
        }
        return msg
    }

    /// Copies the body out, notes the pipe it came on, and frees the message.
    static func consumeReceived(_ msg: OpaquePointer) -> ReceivedMessage {
        let pipe = UInt32(bitPattern: nng_pipe_id(nng_msg_get_pipe(msg)))
        return ReceivedMessage(bytes: consume(msg), pipeID: pipe)
    }

    /// Copies the body out and frees the message.
    static func consume(_ msg: OpaquePointer) -> [UInt8] {
        let count = nng_msg_len(msg)
        let bytes: [UInt8]
        if count == 0 {
            bytes = []
        } else {
            let body = nng_msg_body(msg)!
            bytes = Array(UnsafeRawBufferPointer(start: body, count: count))
        }
        nng_msg_free(msg)
        return bytes
    }
}

/// A received message and the connection (nng pipe) it came on, so that a server can tell
/// which peer's connection a request used (and notice when that connection goes away).
public struct ReceivedMessage: Sendable {
    public let bytes: [UInt8]
    /// nng's pipe id, as in `PipeEvent.pipeID` (0 if unknown).
    public let pipeID: UInt32
}
