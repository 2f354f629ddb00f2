#if canImport(Glibc)
import Glibc
#endif
import ColonyModel
import NNG
import Sockets

/// Everything the Colony client can fail with. `description` is one line for users.
public enum ColonyError: Error, Sendable, CustomStringConvertible {
    /// The URL is not one nng can use.
    case invalidURL(String, reason: String)
    /// No coordinator answered at the URL.
    case unreachable(url: String, reason: String)
    /// The coordinator refused the request.
    case refused(String)
    /// The coordinator takes no changes for now (its journal cannot be written); nothing was
    /// applied, and the same request may succeed later.
    case unavailable(String)
    /// No reply in time.
    case timedOut(String)
    /// The task ran and failed; `reason` is the error (the handler's, or why it stopped), `failure` its kind.
    case taskFailed(id: TaskID, reason: String, node: String, failure: FailureKind)
    /// The task succeeded but its output is not what the caller expected.
    case badOutput(id: TaskID, reason: String)
    /// An input could not be encoded.
    case badInput(String)
    /// The coordinator no longer knows the task (its result was fetched elsewhere or expired).
    case unknownTask(TaskID)
    /// The coordinator does not know what the request names (a task id, by the coordinator's words).
    case notFound(String)
    /// The client was closed.
    case closed
    /// The calling task was cancelled: a wait for results ended (the tasks it waited for go
    /// on), or a request was not sent.
    case cancelled
    /// The peer spoke something other than Colony's protocol.
    case protocolViolation(String)
    /// A transport error not covered above.
    case transport(String)

    public var description: String {
        switch self {
        case .invalidURL(let url, let reason): "invalid URL '\(url)': \(reason)"
        case .unreachable(let url, let reason): "nothing listening at \(url) (\(reason))"
        case .refused(let message): "coordinator refused the request: \(message)"
        case .unavailable(let message): "coordinator refused the request for now: \(message)"
        case .timedOut(let what): what
        case .taskFailed(let id, let reason, let node, _): "task \(id) failed on \(node.isEmpty ? "a node" : node): \(reason)"
        case .badOutput(let id, let reason): "task \(id) returned an unexpected output: \(reason)"
        case .badInput(let reason): "bad input: \(reason)"
        case .notFound(let message): message
        case .unknownTask(let id): "task \(id) is not known to this client's session (result already fetched?)"
        case .closed: "the client is closed"
        case .cancelled: "cancelled: the calling task was stopped"
        case .protocolViolation(let what): "protocol error: \(what)"
        case .transport(let what): what
        }
    }
}

/// Checks Colony URLs before nng sees them, so that users get a sentence instead of
/// "Invalid argument".
public enum ColonyURL {
    public static let supportedSchemes = ["tcp", "tcp4", "tcp6", "ipc", "inproc", "tls+tcp", "ws", "wss", "colony"]

    /// The default coordinator address.
    public static let defaultCoordinator = "tcp://127.0.0.1:7411"

    public static func validate(_ url: String) throws(ColonyError) {
        guard let separator = url.range(of: "://") else {
            throw .invalidURL(url, reason: "expected SCHEME://ADDRESS, e.g. tcp://127.0.0.1:7411, ipc:///tmp/colony.sock or inproc://name")
        }
        let scheme = String(url[..<separator.lowerBound])
        let rest = String(url[separator.upperBound...])
        guard supportedSchemes.contains(scheme) else {
            throw .invalidURL(url, reason: "unknown scheme '\(scheme)' (use one of \(supportedSchemes.joined(separator: ", ")))")
        }
        guard !rest.isEmpty else { throw .invalidURL(url, reason: "no address after '\(scheme)://'") }
        if scheme.hasPrefix("tcp") || scheme == "tls+tcp" || scheme.hasPrefix("ws") || scheme == "colony" {
            let hostPort = rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? rest
            guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]),
                  (0...65535).contains(port)
            else {
                throw .invalidURL(url, reason: "expected HOST:PORT with a port from 0 to 65535, e.g. tcp://127.0.0.1:7411")
            }
        }
    }

    /// Whether listening on `url` stays on this machine: ipc, inproc, or tcp/ws on a loopback
    /// address (127.x.x.x, ::1, localhost). Anything else is reachable from the network.
    public static func isLocal(_ url: String) -> Bool {
        guard let separator = url.range(of: "://") else { return false }
        let scheme = String(url[..<separator.lowerBound])
        if scheme == "ipc" || scheme == "inproc" { return true }
        let rest = String(url[separator.upperBound...])
        let hostPort = rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? rest
        guard let colon = hostPort.lastIndex(of: ":") else { return false }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Maps an error of Colony's own transport (`colony://`) on `url` to a user-facing error.
    public static func describe(_ error: SocketError, url: String) -> ColonyError {
        switch error.reason {
        case .system(ECONNREFUSED): .unreachable(url: url, reason: "connection refused")
        case .system(EADDRINUSE): .transport("cannot listen on \(url): address already in use")
        case .unresolved(let reason): .invalidURL(url, reason: reason)
        case .timedOut: .unreachable(url: url, reason: "no connection within the time allowed")
        case .cancelled: .cancelled
        case .notColony: .protocolViolation("\(url): \(error)")
        default: .transport("\(url): \(error)")
        }
    }

    /// Maps an nng error from dialling or listening on `url` to a user-facing error.
    public static func describe(_ error: NNGError, url: String) -> ColonyError {
        if error.isConnectionRefused { return .unreachable(url: url, reason: "connection refused") }
        if error.isInvalidAddress { return .invalidURL(url, reason: error.reason) }
        if error.isAddressInUse { return .transport("cannot listen on \(url): address already in use") }
        if error.isTLSFailure {
            return .unreachable(url: url, reason: "TLS handshake failed: the coordinator's certificate is not signed by --tls-ca, or does not carry the host's name (mbedTLS matches DNS names only: dialling an IP address, give --tls-server-name NAME), or the coordinator wants a client certificate (--tls-cert)")
        }
        return .transport("\(error.operation) failed: \(error.reason)")
    }
}
