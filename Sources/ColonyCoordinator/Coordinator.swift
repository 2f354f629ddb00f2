import ColonyCore
import ColonyModel
import ColonyStore
import ColonyWire
import Logging
import NNG
import Sockets
import Synchronization

/// The coordinator: a REP socket served by many contexts at once (nng's async-server
/// pattern) and/or a `colony://` listener (Colony's own framing, many requests in flight per
/// connection), in front of `CoordinatorState`.
///
/// Every request gets exactly one reply. Bytes that are not a valid envelope get an error
/// reply and change nothing.
public final class Coordinator: Sendable {
    /// How the coordinator listens and what it accepts.
    public struct Configuration: Sendable {
        /// Where to listen: nng's `tcp://0.0.0.0:7411` (or `tls+tcp://`, `ipc://`, ...), or
        /// Colony's own framing on TCP, `colony://0.0.0.0:7412` (the hot path's transport:
        /// no TLS; a token still applies).
        public var listenURL: String
        /// A second address, of the other kind (nng or `colony://`): both are served at once.
        public var alsoListenURL: String?
        /// Contexts opened at start. Parked long polls (node pulls, client waits) each hold
        /// one, so whenever fewer than `contextsSpare` wait for requests, more are opened, up
        /// to `contextsMax`: a crowd of long polls never keeps a node's pull waiting in nng's
        /// queue (where the coordinator cannot see it, and would declare the node lost).
        public var contexts = 256
        /// Most contexts ever open (each costs about a kilobyte).
        public var contextsMax = 65_536
        /// The longest a pull or fetch may be parked.
        public var longPollSecondsMax = 5.0
        /// Largest request accepted.
        public var messageBytesMax = colonyMessageBytesMax
        /// Most results handed out by one fetch.
        public var resultsPerFetchMax = 8192
        /// What is kept of tasks' live output (`colony logs`).
        public var logs = TaskLogs.Bounds()
        public var coreBounds = CoordinatorCore.Bounds()
        /// The shared secret every request must carry (nil: none required). Compared in
        /// constant time; a request without it is refused and changes nothing.
        public var token: String?
        /// Certificates for a `tls+tcp://` listen URL (a CA file here makes client
        /// certificates mandatory).
        public var tls: TLSSettings?
        /// Where the coordinator logs noteworthy events, one line each: nodes joining, leaving
        /// and lost, tasks failing for good, refused tokens (nil: no log).
        public var logger: Logger?

        public init(listenURL: String) {
            self.listenURL = listenURL
        }
    }

    /// Why the coordinator could not listen.
    public enum ListenFailure: Error, Sendable {
        case nng(NNGError, url: String)
        case framed(SocketError, url: String)
        /// Two addresses of one kind, or a `colony://` URL without HOST:PORT.
        case badAddresses(String)
    }

    public let configuration: Configuration
    private let socket: Socket?
    private let listener: Listener?
    private let framedListener: TCPListener?
    private let handler: RequestHandler
    private var state: CoordinatorState { handler.state }
    /// The request handling behind the socket, for other ways in (the HTTP API).
    public var requests: RequestHandler { handler }
    private let store: Store?

    /// Opens the socket and starts listening; throws at once for a bad or busy address.
    ///
    /// With a `store`, the coordinator starts from `restored` (a core rebuilt from the store
    /// with `CoordinatorCore.Restoration`, made with `configuration.coreBounds`) and answers a
    /// request only once the state changes it made are committed to the store.
    public init(configuration: Configuration, store: Store? = nil, restored: CoordinatorCore? = nil) throws(ListenFailure) {
        self.configuration = configuration
        self.store = store
        let urls = [configuration.listenURL] + (configuration.alsoListenURL.map { [$0] } ?? [])
        let framedURLs = urls.filter { $0.hasPrefix(FramedAddress.scheme) }
        let nngURLs = urls.filter { !$0.hasPrefix(FramedAddress.scheme) }
        guard framedURLs.count <= 1, nngURLs.count <= 1 else {
            throw .badAddresses("give one nng address (tcp://, tls+tcp://, ipc://) and at most one colony:// address, not \(urls.joined(separator: " and "))")
        }
        if let url = nngURLs.first {
            do {
                let socket = try Socket(.rep)
                try socket.setReceiveMaxBytes(configuration.messageBytesMax)
                listener = try socket.listen(url, tls: configuration.tls)
                self.socket = socket
            } catch {
                throw .nng(error, url: url)
            }
        } else {
            socket = nil
            listener = nil
        }
        if let url = framedURLs.first {
            guard let address = FramedAddress(url: url) else { throw .badAddresses("\(url): expected colony://HOST:PORT") }
            do {
                framedListener = try TCPListener(host: address.host, port: address.port)
            } catch {
                socket?.close()
                throw .framed(error, url: url)
            }
        } else {
            framedListener = nil
        }
        var bounds = RequestHandler.Bounds()
        bounds.messageBytesMax = configuration.messageBytesMax
        bounds.longPollSecondsMax = configuration.longPollSecondsMax
        bounds.resultsPerFetchMax = configuration.resultsPerFetchMax
        bounds.logs = configuration.logs
        handler = RequestHandler(bounds: bounds, coreBounds: configuration.coreBounds, token: configuration.token,
                                 store: store, restored: restored, logger: configuration.logger)
        store?.start()
    }

    /// The TCP port bound for `listenURL` (useful when listening on port 0).
    public var boundPort: Int? {
        configuration.listenURL.hasPrefix(FramedAddress.scheme) ? framedListener?.port : listener?.boundPort
    }

    /// The TCP port bound for the `colony://` address, if there is one.
    public var framedBoundPort: Int? { framedListener?.port }

    /// Serves requests until the surrounding task is cancelled; then answers parked requests
    /// and closes the socket.
    public func run() async {
        let (growth, grow) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            openContexts(configuration.contexts, in: &group, grow: grow)
            group.addTask { await self.expireLoop() }
            if let framedListener { group.addTask { await self.serveFramed(framedListener) } }
            // A node's connection that closes (its process died: the kernel closed the socket)
            // makes it suspect at once; it has a moment to reconnect before its work moves.
            if let events = try? socket?.pipeEvents() {
                group.addTask {
                    for await event in events where event.kind == .removed {
                        await self.handler.connectionClosed(pipeID: event.pipeID)
                    }
                }
            }
            // Until cancelled (the stream then ends): more contexts when few wait for requests.
            for await _ in growth {
                let step = max(Self.contextsSpare * 4, openCount.load(ordering: .relaxed) / 4)
                openContexts(step, in: &group, grow: grow)
            }
            await state.close()
            framedListener?.close()
            closeFramedConnections()
            if let socket, !socket.close() {
                configuration.logger?.warning("closing the coordinator's socket did not end within \(Socket.closeWaitMax) (an nng 1.5.2 hang); stopping anyway")
            }
            // Commits what is queued, so a clean stop loses nothing either.
            store?.close()
        }
    }

    /// Fewer contexts than this waiting for requests opens more.
    static let contextsSpare = 4
    /// Contexts open, and how many of them wait for a request (not handling or parking one).
    private let openCount = Atomic<Int>(0)
    private let waitingCount = Atomic<Int>(0)

    private func openContexts(_ count: Int, in group: inout DiscardingTaskGroup, grow: AsyncStream<Void>.Continuation) {
        for _ in 0..<count {
            guard openCount.load(ordering: .relaxed) < configuration.contextsMax, let context = try? socket?.openContext() else { return }
            openCount.add(1, ordering: .relaxed)
            // On the sockets thread, as the state is: nng's callback wakes it, and the request
            // is answered there without one more hop.
            group.addTask(executorPreference: SocketReactor.shared) { await self.serve(context, grow: grow) }
        }
    }

    /// The number of contexts open now (they only grow).
    public var contextsOpen: Int { openCount.load(ordering: .relaxed) }

    /// The current cluster status (for embedded use).
    public func status() async -> ClusterStatus { await state.status() }

    private func expireLoop() async {
        var ticks = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
            await handler.expire()
            ticks += 1
            if ticks % 50 == 0 { await handler.sampleFigures() }
        }
    }

    private func serve(_ context: Context, grow: AsyncStream<Void>.Continuation) async {
        var request: ReceivedMessage
        waitingCount.add(1, ordering: .relaxed)
        do {
            request = try await context.receiveMessage()
        } catch {
            return
        }
        while !Task.isCancelled {
            if waitingCount.subtract(1, ordering: .relaxed).newValue < Self.contextsSpare {
                grow.yield()
            }
            // The handler answers once the request's state changes are durable.
            let reply = await handler.handle(request.bytes, pipeID: request.pipeID)
            // One step: the reply goes out and the context waits for its next request. A
            // requester that has gone only costs its reply.
            waitingCount.add(1, ordering: .relaxed)
            do {
                request = try await context.replyThenReceiveMessage(reply)
            } catch {
                if error.isClosed || error.isCancelled || Task.isCancelled { return }
                do { request = try await context.receiveMessage() } catch { return }
            }
        }
    }

    // MARK: colony://

    /// Connections of `colony://` get pipe ids of their own, above nng's (which stay below 2^31).
    private let framedConnections = Atomic<UInt32>(0)
    /// The open `colony://` connections, by pipe id, and whether the coordinator is stopping
    /// (a connection accepted after that is ended at once).
    private let framedOpen = Mutex<(connections: [UInt32: FrameConnection], stopping: Bool)>(([:], false))
    /// Most requests one `colony://` connection may have in flight; past it the coordinator
    /// reads no more of it until some are answered (TCP then holds the sender back).
    static let framedRequestsInFlightMax = 16_384

    private func serveFramed(_ listener: TCPListener) async {
        await withDiscardingTaskGroup { connections in
            while !Task.isCancelled {
                do throws(SocketError) {
                    let connection = try await listener.accept(frameBytesMax: configuration.messageBytesMax)
                    let pipeID = 0x8000_0000 | (framedConnections.add(1, ordering: .relaxed).newValue & 0x7fff_ffff)
                    connections.addTask { await self.serve(connection, pipeID: pipeID) }
                } catch {
                    if error.reason == .cancelled || error.reason == .connectionClosed { return }
                    configuration.logger?.warning("colony:// stopped accepting connections: \(error)")
                    return
                }
            }
        }
    }

    /// Answers one connection's requests, each on a task of its own as soon as it is
    /// handled (long polls park without holding up the others), until the peer closes it or
    /// the coordinator stops. Frames are taken on the reactor's thread (see `FrameConnection`).
    private func serve(_ connection: FrameConnection, pipeID: UInt32) async {
        let stopping = framedOpen.withLock { open in
            open.connections[pipeID] = connection
            return open.stopping
        }
        if stopping { connection.shutDown() }
        let inFlight = InFlightCount()
        let handler = self.handler
        // Cancelled (the coordinator stops): the connection ends once parked requests are
        // answered (`closeFramedConnections`), not before.
        await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
            connection.startReading(onFrames: { frames in
                for frame in frames {
                    guard inFlight.value.add(1, ordering: .relaxed).newValue <= Self.framedRequestsInFlightMax else {
                        inFlight.value.subtract(1, ordering: .relaxed)
                        try? connection.send(id: frame.id, Wire.errorReply(.unavailable, "more than \(Self.framedRequestsInFlightMax) requests in flight on one connection; nothing was applied"))
                        continue
                    }
                    // On the sockets thread, as the state is: no thread wakes to answer.
                    Task(executorPreference: SocketReactor.shared) {
                        let reply = await handler.handle(frame.payload, pipeID: pipeID)
                        // A peer that has gone only costs its reply.
                        try? connection.send(id: frame.id, reply)
                        inFlight.value.subtract(1, ordering: .relaxed)
                    }
                }
            }, onEnd: { _ in ended.resume() })
        }
        framedOpen.withLock { _ = $0.connections.removeValue(forKey: pipeID) }
        connection.close()
        await handler.connectionClosed(pipeID: pipeID)
    }

    /// Ends every `colony://` connection (the coordinator is stopping; parked requests have
    /// been answered).
    private func closeFramedConnections() {
        let open = framedOpen.withLock { open in
            open.stopping = true
            return Array(open.connections.values)
        }
        for connection in open { connection.shutDown() }
    }
}

/// Requests of one `colony://` connection being handled.
private final class InFlightCount: Sendable {
    let value = Atomic<Int>(0)
}
