import ColonyCore
import ColonyStore
import ColonyWire
import NNG
import Synchronization

/// The coordinator: a REP socket served by many contexts at once (nng's async-server
/// pattern), in front of `CoordinatorState`.
///
/// Every request gets exactly one reply. Bytes that are not a valid envelope get an error
/// reply and change nothing.
public final class Coordinator: Sendable {
    /// How the coordinator listens and what it accepts.
    public struct Configuration: Sendable {
        /// Where to listen, e.g. `tcp://0.0.0.0:7411`.
        public var listenURL: String
        /// Requests served at once; parked long polls count, so keep it above nodes + clients.
        public var contexts = 256
        /// The longest a pull or fetch may be parked.
        public var longPollSecondsMax = 5.0
        /// Largest request accepted.
        public var messageBytesMax = colonyMessageBytesMax
        /// Most results handed out by one fetch.
        public var resultsPerFetchMax = 8192
        public var limits = CoordinatorCore.Limits()
        /// The shared secret every request must carry (nil: none required). Compared in
        /// constant time; a request without it is refused and changes nothing.
        public var token: String?
        /// Certificates for a `tls+tcp://` listen URL (a CA file here makes client
        /// certificates mandatory).
        public var tls: TLSSettings?
        /// Where the coordinator reports noteworthy events (one line each).
        public var log: @Sendable (String) -> Void = { _ in }

        public init(listenURL: String) {
            self.listenURL = listenURL
        }
    }

    public let configuration: Configuration
    private let socket: Socket
    private let listener: Listener
    private let state: CoordinatorState
    private let store: Store?
    private let refusedTokens = Atomic<UInt64>(0)
    /// `configuration.token`'s bytes, once, for the per-request check.
    private let tokenBytes: [UInt8]?

    /// Opens the socket and starts listening; throws at once for a bad or busy address.
    ///
    /// With a `store`, the coordinator starts from `recovered` (what `store.recover()` read)
    /// and answers a request only once the state changes it made are committed to the store.
    public init(configuration: Configuration, store: Store? = nil, recovered: RecoveredState? = nil) throws(NNGError) {
        self.configuration = configuration
        self.store = store
        tokenBytes = configuration.token.map { Array($0.utf8) }
        socket = try Socket(.rep)
        try socket.setReceiveMaxBytes(configuration.messageBytesMax)
        listener = try socket.listen(configuration.listenURL, tls: configuration.tls)
        state = CoordinatorState(limits: configuration.limits, store: store, recovered: recovered)
        store?.start()
    }

    /// The TCP port bound (useful when listening on port 0).
    public var boundPort: Int? { listener.boundPort }

    /// Serves requests until the surrounding task is cancelled; then answers parked requests
    /// and closes the socket.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for _ in 0..<configuration.contexts {
                guard let context = try? socket.openContext() else { break }
                group.addTask { await self.serve(context) }
            }
            group.addTask { await self.expireLoop() }
            // A node's connection that closes (its process died: the kernel closed the socket)
            // makes it suspect at once; it has a moment to reconnect before its work moves.
            if let events = try? socket.pipeEvents() {
                group.addTask {
                    for await event in events where event.kind == .removed {
                        await self.state.pipeRemoved(event.pipeID)
                    }
                }
            }
            // Wait here until cancelled (the sleep throws then), then shut down in order.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            await state.close()
            socket.close()
            // Commits what is queued, so a clean stop loses nothing either.
            store?.close()
        }
    }

    /// The current cluster status (for embedded use).
    public func status() async -> ClusterStatus { await state.status() }

    private func expireLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
            await state.expire()
        }
    }

    private func serve(_ context: Context) async {
        var request: ReceivedMessage
        do {
            request = try await context.receiveMessage()
        } catch {
            return
        }
        while !Task.isCancelled {
            var reply = await handle(request.bytes, pipeID: request.pipeID)
            if let store {
                // Acknowledge nothing the journal does not hold yet. Every change made before
                // this point is covered by the latest ticket (group commit: one wait, many replies).
                do {
                    try await store.waitDurable(store.lastTicket)
                } catch {
                    reply = Wire.errorReply(.unavailable, "the coordinator cannot write its state: \(error)")
                }
            }
            // One step: the reply goes out and the context waits for its next request. A
            // requester that has gone only costs its reply.
            do {
                request = try await context.replyThenReceiveMessage(reply)
            } catch {
                if error.isClosed || error.isCancelled || Task.isCancelled { return }
                do { request = try await context.receiveMessage() } catch { return }
            }
        }
    }

    private func handleCounter(_ request: Colony_V1_CounterRequest) async throws(CoordinatorCore.Refusal) -> [UInt8] {
        var reply = Colony_V1_CounterReply()
        switch request.op {
        case .get:
            reply.value = await state.counter(request.name)
        case .add:
            reply.value = try await state.counterAdd(request.name, request.value)
        case .set:
            reply.value = try await state.counterSet(request.name, request.value)
        case .compareAndSet:
            let (swapped, value) = try await state.counterCompareAndSet(request.name, expected: request.expected, new: request.value)
            reply.swapped = swapped
            reply.value = value
        case .list:
            reply.counters = await state.counters().map { entry in
                var value = Colony_V1_CounterValue()
                value.name = entry.name
                value.value = entry.value
                return value
            }
        case .UNRECOGNIZED(let raw):
            throw .invalidArgument("unknown counter operation \(raw)")
        }
        return Wire.encode(.counterReply(reply))
    }

    /// Turns one request into one reply.
    func handle(_ bytes: [UInt8], pipeID: UInt32 = 0) async -> [UInt8] {
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Wire.decode(bytes, limit: configuration.messageBytesMax)
        } catch {
            return Wire.errorReply(error.replyCode, error.description)
        }
        if let tokenBytes, !constantTimeEqual(envelope.token.utf8, tokenBytes) {
            let refused = refusedTokens.add(1, ordering: .relaxed).newValue
            // One line for the first refusal and then every 100th, so a flood cannot fill the log.
            if refused == 1 || refused % 100 == 0 {
                configuration.log("colony coordinator: refused \(refused) request(s) with a wrong or missing token (latest from pipe \(pipeID))")
            }
            return Wire.errorReply(.unauthorized, "wrong or missing token (give the coordinator's token with --token-file or COLONY_TOKEN)")
        }
        do {
            switch envelope.body {
            case .submit(let submit):
                let submissions = submit.tasks.map(TaskSubmission.init(wire:))
                let ids = try await state.submit(submissions, session: submit.session)
                var reply = Colony_V1_SubmitReply()
                reply.taskIds = ids
                if submit.waitMs > 0 {
                    let wait = min(Double(submit.waitMs) / 1000, configuration.longPollSecondsMax)
                    let (results, _) = await state.fetch(session: submit.session, maxResults: configuration.resultsPerFetchMax, waitSeconds: wait)
                    reply.results = results.map(\.wire)
                }
                return Wire.encode(.submitReply(reply))
            case .pull(let pull):
                let wait = min(Double(pull.waitMs) / 1000, configuration.longPollSecondsMax)
                let answer = try await state.pull(node: NodeAnnouncement(wire: pull.node, prefetch: pull.prefetch, processPrefetch: pull.processPrefetch),
                                                  results: pull.results.map(TaskOutcome.init(wire:)),
                                                  running: pull.ackedDispatchSeq > 0 ? Set(pull.running) : nil,
                                                  ackedReplySeq: pull.ackedDispatchSeq, returned: pull.returned, leaving: pull.leaving,
                                                  pipeID: pipeID, waitSeconds: wait)
                var reply = Colony_V1_PullReply()
                reply.tasks = answer.tasks.map(\.wire)
                reply.cancel = answer.cancel
                reply.dispatchSeq = answer.seq
                if let deadline = answer.drainDeadline {
                    reply.drain = true
                    reply.drainDeadlineMs = UInt32(clamping: Int(deadline * 1000))
                }
                return Wire.encode(.pullReply(reply))
            case .fetch(let fetch):
                guard !fetch.session.isEmpty else {
                    return Wire.errorReply(.invalidArgument, "fetch needs a session id")
                }
                let wait = min(Double(fetch.waitMs) / 1000, configuration.longPollSecondsMax)
                // Acknowledgements with max_results 0: only acknowledge.
                let ackOnly = !fetch.acked.isEmpty && fetch.maxResults == 0
                let limit = ackOnly ? 0 : max(1, min(Int(fetch.maxResults == 0 ? 1024 : fetch.maxResults), configuration.resultsPerFetchMax))
                let (results, unfinished) = await state.fetch(session: fetch.session, maxResults: limit, waitSeconds: wait,
                                                              acked: fetch.acked)
                var reply = Colony_V1_FetchReply()
                reply.results = results.map(\.wire)
                reply.pending = UInt64(unfinished)
                return Wire.encode(.fetchReply(reply))
            case .status:
                return Wire.encode(.statusReply(await state.status().wire))
            case .counter(let request):
                return try await handleCounter(request)
            case .limit(let request):
                if !request.list { try await state.setLimit(request.name, size: Int(request.size)) }
                var reply = Colony_V1_LimitReply()
                reply.limits = await state.limits().map(\.wire)
                return Wire.encode(.limitReply(reply))
            case .cancel(let request):
                var reply = Colony_V1_CancelReply()
                reply.cancelled = UInt64(await state.cancel(ids: request.taskIds, session: request.session))
                return Wire.encode(.cancelReply(reply))
            case .drain(let request):
                let deadline = request.deadlineMs == 0 ? 30 : Double(request.deadlineMs) / 1000
                var reply = Colony_V1_DrainReply()
                reply.found = await state.drain(node: request.node, deadlineSeconds: deadline)
                return Wire.encode(.drainReply(reply))
            case .tasks(let request):
                var phase: CoordinatorCore.TaskPhase?
                if !request.state.isEmpty {
                    guard let known = CoordinatorCore.TaskPhase(rawValue: request.state) else {
                        let names = CoordinatorCore.TaskPhase.allCases.map(\.rawValue).joined(separator: ", ")
                        return Wire.errorReply(.invalidArgument, "unknown task state '\(request.state)' (one of \(names))")
                    }
                    phase = known
                }
                let limit = request.limit == 0 ? 1000 : min(Int(request.limit), 100_000)
                var reply = Colony_V1_TasksReply()
                reply.tasks = await state.tasks(phase: phase, limit: limit).map(\.wire)
                return Wire.encode(.tasksReply(reply))
            case .result(let request):
                let wait = min(Double(request.waitMs) / 1000, configuration.longPollSecondsMax)
                var reply = Colony_V1_FetchReply()
                if let outcome = try await state.result(of: request.taskID, waitSeconds: wait) {
                    reply.results = [outcome.wire]
                } else {
                    reply.pending = 1
                }
                return Wire.encode(.fetchReply(reply))
            case .submitReply, .pullReply, .fetchReply, .statusReply, .error, .counterReply, .limitReply, .cancelReply,
                 .tasksReply, .drainReply, nil:
                return Wire.errorReply(.malformed, "the coordinator takes requests (submit, pull, fetch, status), not replies")
            }
        } catch {
            return Wire.errorReply(.invalidArgument, error.description)
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths, so that a wrong
/// token's timing says nothing about how much of it was right.
func constantTimeEqual(_ given: String.UTF8View, _ expected: [UInt8]) -> Bool {
    var difference = UInt8(given.count == expected.count ? 0 : 1)
    var index = 0
    for byte in given {
        difference |= byte ^ (index < expected.count ? expected[index] : 0)
        index += 1
    }
    return difference == 0
}
