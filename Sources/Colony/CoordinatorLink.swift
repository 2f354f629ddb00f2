import ColonyModel
import ColonyWire
import NNG
import Sockets

/// The way to a coordinator, whichever transport its URL names: nng's REQ socket
/// (`tcp://`, `tls+tcp://`, `ipc://`, ...) or Colony's own framing on TCP (`colony://`,
/// about a tenth of nng's round trip here: docs/BENCHMARKS.md). The client and the node speak
/// through `Requester`s and do not care which.
public final class CoordinatorLink: Sendable {
    private enum Way: Sendable {
        case nng(Socket)
        case framed(FramedChannel)
    }

    public let url: String
    private let way: Way

    /// What a link does when its connection is lost with requests in flight.
    public enum LossPolicy: Sendable {
        /// Send them again on the next connection (as nng's REQ socket does): a client's
        /// requests are idempotent (keys, acknowledgements).
        case resend
        /// Fail them at once (`RequestFailure.lost`): the node puts a pull's results back
        /// itself.
        case fail
    }

    /// Dials `url`. With `waitForConnection` the first connection is made now and its failure
    /// thrown (nothing listening, a bad address); otherwise it is made in the background and
    /// re-made after every loss.
    public init(url: String, tls: TLSSettings?, waitForConnection: Bool, onLoss: LossPolicy) throws(ColonyError) {
        self.url = url
        if let address = FramedAddress(url: url) {
            if tls != nil { throw .invalidURL(url, reason: "colony:// has no TLS; use tls+tcp:// for an encrypted connection") }
            // Replies: a pull's tasks are cut at 8 MiB of inputs, but one task with its
            // dependencies' outputs may carry more; the coordinator is not an adversary here.
            let frameBytesMax = 4 * colonyMessageBytesMax
            guard waitForConnection else {
                way = .framed(FramedChannel(connectingLaterTo: address.host, port: address.port, frameBytesMax: frameBytesMax,
                                            resendsAfterLoss: onLoss == .resend))
                return
            }
            do throws(SocketError) {
                way = .framed(try FramedChannel(host: address.host, port: address.port, frameBytesMax: frameBytesMax,
                                                timeout: .seconds(10), resendsAfterLoss: onLoss == .resend))
            } catch {
                throw ColonyURL.describe(error, url: url)
            }
            return
        }
        do {
            let socket = try Socket(.req)
            try socket.setReceiveMaxBytes(colonyMessageBytesMax)
            try socket.setReconnectTimes(minimum: .milliseconds(50), maximum: .seconds(2))
            if onLoss == .fail { try socket.setRequestResendTime(nil) }
            try socket.dial(url, waitForConnection: waitForConnection, tls: tls)
            way = .nng(socket)
        } catch {
            throw ColonyURL.describe(error, url: url)
        }
    }

    /// A link dropped without `close` closes (an nng socket would by itself; a `colony://`
    /// channel is kept alive by its own connection keeper until closed).
    deinit {
        close()
    }

    /// A requester: one exchange at a time on nng (a context), any number on `colony://`.
    public func openRequester() throws(ColonyError) -> Requester {
        switch way {
        case .nng(let socket):
            do {
                return Requester(.context(try socket.openContext()))
            } catch {
                throw .transport("cannot open a request context: \(error)")
            }
        case .framed(let channel):
            return Requester(.channel(channel))
        }
    }

    /// The connection coming (`true`) and going (`false`), until the link is closed.
    public func connectionEvents() -> AsyncStream<Bool> {
        switch way {
        case .nng(let socket):
            guard let events = try? socket.pipeEvents() else { return AsyncStream { $0.finish() } }
            // One connection at a time for a dialer: each pipe added is the connection.
            return AsyncStream { continuation in
                let task = Task {
                    for await event in events { continuation.yield(event.kind == .added) }
                    continuation.finish()
                }
                continuation.onTermination = { _ in task.cancel() }
            }
        case .framed(let channel):
            return AsyncStream { continuation in
                let task = Task {
                    for await event in channel.events { continuation.yield(event == .connected) }
                    continuation.finish()
                }
                continuation.onTermination = { _ in task.cancel() }
            }
        }
    }

    /// Closes the link: requests in flight fail (`closed`). False when nng's close did not
    /// end within its bound (see `Socket.close`).
    @discardableResult
    public func close() -> Bool {
        switch way {
        case .nng(let socket): return socket.close()
        case .framed(let channel):
            channel.close()
            return true
        }
    }
}

/// Why a request got no reply.
public enum RequestFailure: Error, Sendable {
    case timedOut
    /// The calling task was cancelled.
    case cancelled
    /// The link was closed.
    case closed
    /// The connection was lost with the request in flight (a link that fails on loss).
    case lost
    /// Anything else, as the user should read it.
    case failed(ColonyError)
}

/// Sends a request and waits for its reply, on its link's transport.
public final class Requester: Sendable {
    fileprivate enum Kind: Sendable {
        case context(Context)
        case channel(FramedChannel)
    }

    private let kind: Kind

    fileprivate init(_ kind: Kind) {
        self.kind = kind
    }

    /// One exchange; each step may take up to `timeout`. On nng, cancellation is honoured
    /// only before the exchange starts (see `Context.request`); on `colony://` at any time.
    public func request(_ bytes: [UInt8], timeout: Duration, url: String) async throws(RequestFailure) -> [UInt8] {
        switch kind {
        case .context(let context):
            do {
                return try await context.request(bytes, timeout: timeout)
            } catch {
                if error.isClosed { throw .closed }
                if error.isCancelled { throw .cancelled }
                if error.isTimeout { throw .timedOut }
                throw .failed(ColonyURL.describe(error, url: url))
            }
        case .channel(let channel):
            do {
                return try await channel.request(bytes, until: .now + timeout)
            } catch {
                switch error.reason {
                case .timedOut: throw .timedOut
                case .cancelled: throw .cancelled
                case .connectionClosed where channel.isClosed: throw .closed
                case .connectionClosed: throw .lost
                default: throw .failed(ColonyURL.describe(error, url: url))
                }
            }
        }
    }
}
