#if canImport(Glibc)
import Glibc
#endif

/// A socket step that failed: which step, and why, in one line ("connect: Connection refused").
public struct SocketError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        case timedOut
        case cancelled
        /// An errno value.
        case system(Int32)
        /// The host name did not resolve (getaddrinfo's message).
        case unresolved(String)
        /// The peer does not speak Colony's framing (what it sent first).
        case notColony([UInt8])
        /// The peer announced a frame larger than allowed (its size, the bound).
        case frameTooLarge(Int, Int)
        /// The connection closed before the reply came.
        case connectionClosed
        /// Our own request is larger than the bound (its size, the bound).
        case requestTooLarge(Int, Int)
    }

    public let operation: String
    public let reason: Reason

    public init(_ operation: String, _ reason: Reason) {
        self.operation = operation
        self.reason = reason
    }

    static func system(_ operation: String, _ code: Int32 = errno) -> SocketError { SocketError(operation, .system(code)) }

    public var description: String {
        switch reason {
        case .timedOut: "\(operation): timed out"
        case .cancelled: "\(operation): cancelled"
        case .system(let code): "\(operation): \(String(cString: strerror(code)))"
        case .unresolved(let message): "\(operation): \(message)"
        case .notColony(let first):
            first.starts(with: [0, 0x53, 0x50, 0]) ? "\(operation): the peer speaks nng's protocol, not colony:// (use its tcp:// address)"
                : "\(operation): the peer does not speak colony:// (it sent \(first.prefix(8).map { String($0, radix: 16) }.joined(separator: " ")))"
        case .frameTooLarge(let size, let bound): "\(operation): the peer sent a frame of \(size) bytes, over the \(bound)-byte bound"
        case .connectionClosed: "\(operation): the connection closed"
        case .requestTooLarge(let size, let bound): "\(operation): a request of \(size) bytes is over the \(bound)-byte bound"
        }
    }
}
