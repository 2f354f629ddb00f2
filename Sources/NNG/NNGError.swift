import CNNG

/// An error reported by libnng, with the operation that failed and nng's own text.
///
/// `description` is one line meant for users, e.g.
/// `dial tcp://127.0.0.1:7411: Connection refused`.
public struct NNGError: Error, Sendable, Equatable, CustomStringConvertible {
    /// nng's numeric error code (`NNG_E*`).
    public let code: Int32
    /// What was being done, e.g. `dial tcp://127.0.0.1:7411` or `receive`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// nng's text for `code`.
    public var reason: String { String(cString: nng_strerror(code)) }

    public var description: String { "\(operation): \(reason)" }

    /// The operation did not finish before its deadline.
    public var isTimeout: Bool { code == Int32(NNG_ETIMEDOUT.rawValue) }
    /// The socket or context was closed while the operation was pending.
    public var isClosed: Bool { code == Int32(NNG_ECLOSED.rawValue) }
    /// The operation was cancelled (by Swift task cancellation).
    public var isCancelled: Bool { code == Int32(NNG_ECANCELED.rawValue) }
    /// Nothing accepted the connection.
    public var isConnectionRefused: Bool { code == Int32(NNG_ECONNREFUSED.rawValue) }
    /// The address was not a valid URL for any transport.
    public var isInvalidAddress: Bool {
        code == Int32(NNG_EADDRINVAL.rawValue) || code == Int32(NNG_ENOTSUP.rawValue) || code == Int32(NNG_EINVAL.rawValue)
    }
    /// The address is already bound by someone else.
    public var isAddressInUse: Bool { code == Int32(NNG_EADDRINUSE.rawValue) }
    /// A TLS handshake failed: a certificate was not trusted, or did not match the peer's name.
    public var isTLSFailure: Bool { code == Int32(NNG_ECRYPTO.rawValue) || code == Int32(NNG_EPEERAUTH.rawValue) }
}

@inline(__always)
func check(_ rv: Int32, _ operation: @autoclosure () -> String) throws(NNGError) {
    if rv != 0 { throw NNGError(code: rv, operation: operation()) }
}
