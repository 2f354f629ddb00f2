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
        }
    }
}
