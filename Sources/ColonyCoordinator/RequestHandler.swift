import ColonyCore
import ColonyModel
import ColonyStore
import ColonyWire
import Logging
import Synchronization

/// The coordinator's request handling without a socket: bytes of one request in, bytes of
/// its reply out, against one `CoordinatorState`.
///
/// `Coordinator` serves it over nng; the fuzzer (`Fuzz/`) and tests drive it directly,
/// which is why it knows nothing of sockets or pipes beyond an id.
public final class RequestHandler: Sendable {
    /// The bounds one request is held to.
    public struct Bounds: Sendable {
        /// Largest request accepted.
        public var messageBytesMax = colonyMessageBytesMax
        /// The longest a pull or fetch may be parked (0: never park).
        public var longPollSecondsMax = 5.0
        /// Most results handed out by one fetch.
        public var resultsPerFetchMax = 8192
        /// What the coordinator keeps of tasks' live output.
        public var logs = TaskLogs.Bounds()

        public init() {}
    }

    let state: CoordinatorState
    let bounds: Bounds
    private let logger: Logger?
    private let refusedTokens = Atomic<UInt64>(0)
    private let refusals = Mutex<[String: UInt64]>([:])
    let store: Store?
    private let metrics = MetricsRecorder()
    /// The token's bytes, once, for the per-request check (nil: none required).
    private let tokenBytes: [UInt8]?

    /// A handler over a fresh state (or a core `restored` from `store`), journaling to `store`.
    public init(bounds: Bounds = Bounds(), coreBounds: CoordinatorCore.Bounds = CoordinatorCore.Bounds(),
                token: String? = nil, store: Store? = nil, restored: CoordinatorCore? = nil, logger: Logger? = nil) {
        self.bounds = bounds
        tokenBytes = token.map { Array($0.utf8) }
        self.logger = logger
        self.store = store
        state = CoordinatorState(bounds: coreBounds, store: store, restored: restored, logger: logger, logBounds: bounds.logs)
    }

    /// Whether `token` is the coordinator's (always, when it has none). Constant time: other
    /// ways in (the HTTP API's bearer header) check with this very comparison.
    public func accepts(token: String) -> Bool {
        guard let tokenBytes else { return true }
        return constantTimeEqual(token.utf8, tokenBytes)
    }

    /// A connection closed: a node that pulled on it becomes suspect (its work moves soon
    /// unless it reconnects).
    public func connectionClosed(pipeID: UInt32) async {
        await state.pipeRemoved(pipeID)
    }

    /// Ends expired long polls and leases, and moves the work of nodes gone silent; the
    /// coordinator runs it every 20 ms.
    public func expire() async {
        await state.expire()
    }

    /// Moves the latest latency samples into the last minute's figures and the metrics; the
    /// coordinator calls it once a second.
    public func sampleFigures() async {
        await drainSamples(closingSecond: true)
    }

    private func drainSamples(closingSecond: Bool) async {
        let samples = await state.sampleFigures(closingSecond: closingSecond)
        metrics.samples(queueWaits: samples.queueWaits, runTimes: samples.runTimes)
    }

    /// Exact task counts and the last minute's figures, with the status they go with; also
    /// brings the swift-metrics figures up to date (a scrape right after this is exact).
    public func figures() async -> (figures: ClusterFigures, status: ClusterStatus) {
        // The samples so far go to the metrics now (exact scrape); the window's seconds are
        // closed by the clock alone, so reading often does not shorten its minute.
        await drainSamples(closingSecond: false)
        let (figures, status) = await state.figures(refused: refusedRequests)
        metrics.record(figures, status: status)
        if let store { metrics.journal(store.statistics) }
        return (figures, status)
    }

    /// The cluster at a glance (status with figures), as the HTTP API serves it.
    public func report() async -> ClusterReport {
        let (figures, status) = await figures()
        return ClusterReport(wire: figures.wire(status: status))
    }

    /// What the coordinator's allocator last counted of its node jobs, for the status.
    public func noteAllocation(_ status: AllocationStatus) async {
        await state.noteAllocation(status)
    }

    /// What is wrong in the state's books (empty when sound). Slow: for tests and the fuzzer.
    public func invariantViolations() async -> [String] {
        await state.invariantViolations()
    }

    private func handleCounter(_ request: Colony_V1_CounterRequest) async throws(CoordinatorCore.Refusal) -> Colony_V1_Envelope.OneOf_Body {
        var reply = Colony_V1_CounterReply()
        // A keyed change is applied once; its resend gets the first reply.
        let key = request.key.isEmpty ? nil : request.key
        switch request.op {
        case .get:
            reply.value = await state.counter(request.name)
        case .add:
            reply.value = try await state.counterAdd(request.name, request.value, key: key)
        case .set:
            reply.value = try await state.counterSet(request.name, request.value, key: key)
        case .compareAndSet:
            let (swapped, value) = try await state.counterCompareAndSet(request.name, expected: request.expected, new: request.value, key: key)
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
        return .counterReply(reply)
    }

    /// Turns one request into one reply: an encoded envelope, an error reply for anything
    /// that is not a valid request. Never throws and never traps on what it is given.
    public func handle(_ bytes: [UInt8], pipeID: UInt32 = 0) async -> [UInt8] {
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Wire.decode(bytes, limit: bounds.messageBytesMax)
        } catch {
            noteRefused(error.replyCode)
            return Wire.errorReply(error.replyCode, error.description)
        }
        if !accepts(token: envelope.token) {
            let refused = refusedTokens.add(1, ordering: .relaxed).newValue
            noteRefused(.unauthorized)
            // One line for the first refusal and then every 100th, so a flood cannot fill the log.
            if refused == 1 || refused % 100 == 0 {
                logger?.warning("refused request(s) with a wrong or missing token",
                                metadata: ["refused_so_far": "\(refused)", "pipe": "\(pipeID)"])
            }
            return Wire.errorReply(.unauthorized, "wrong or missing token (give the coordinator's token with --token-file or COLONY_TOKEN)")
        }
        return Wire.encode(await answer(envelope.body, pipeID: pipeID))
    }

    /// Answers one request already decoded and authorized (the HTTP API's way in), once the
    /// state changes it made are durable.
    public func answer(_ body: Colony_V1_Envelope.OneOf_Body?, pipeID: UInt32 = 0) async -> Colony_V1_Envelope.OneOf_Body {
        // A reload after a failed commit undoes changes: a request that straddles one is not
        // acknowledged (its change may be gone). A read is asked again instead (it changed
        // nothing; it may have shown a change the journal then refused).
        var rereads = Self.isRead(body) ? 3 : 0
        var epoch = store?.epoch
        var reply = await respond(to: body, pipeID: pipeID)
        // Acknowledge nothing the journal does not hold yet. Every change made before this
        // point is covered by the latest ticket (group commit: one wait, many replies).
        while let store {
            do {
                try await store.waitDurable(store.lastTicket, since: epoch)
                break
            } catch {
                guard rereads > 0 else {
                    reply = Wire.errorBody(.unavailable, "the coordinator cannot write its journal, nothing was applied: \(error)")
                    break
                }
                rereads -= 1
                epoch = store.epoch
                reply = await respond(to: body, pipeID: pipeID)
            }
        }
        if case .error(let error) = reply { noteRefused(error.code) }
        return reply
    }

    private func respond(to body: Colony_V1_Envelope.OneOf_Body?, pipeID: UInt32) async -> Colony_V1_Envelope.OneOf_Body {
        do {
            switch body {
            case .submit(let submit):
                var submissions = submit.tasks.map(TaskSubmission.init(wire:))
                if submit.detached { for index in submissions.indices { submissions[index].detached = true } }
                let target: JobTarget = submit.jobID != 0 ? .existing(submit.jobID) : submit.jobName.isEmpty ? .new : .named(submit.jobName)
                let (job, ids) = try await state.submit(submissions, session: submit.session, into: target)
                var reply = Colony_V1_SubmitReply()
                reply.taskIds = ids
                reply.jobID = job
                if submit.waitMs > 0 {
                    let wait = min(Double(submit.waitMs) / 1000, bounds.longPollSecondsMax)
                    let (results, _) = try await state.fetch(session: submit.session, maxResults: bounds.resultsPerFetchMax, waitSeconds: wait)
                    reply.results = results.map(\.wire)
                }
                return .submitReply(reply)
            case .pull(let pull):
                let wait = min(Double(pull.waitMs) / 1000, bounds.longPollSecondsMax)
                var announcement = NodeAnnouncement(wire: pull.node, prefetch: pull.prefetch, processPrefetch: pull.processPrefetch)
                if pull.hasFigures { announcement.figures = NodeFigures(wire: pull.figures) }
                announcement.waiting = Set(pull.waiting)
                // Before the results: a task's output is in its log once it is seen finished.
                if !pull.output.isEmpty { await state.appendOutput(Self.outputChunks(pull.output)) }
                let answer = try await state.pull(node: announcement, brief: pull.node.brief,
                                                  results: pull.results.map(TaskOutcome.init(wire:)),
                                                  running: pull.ackedDispatchSeq > 0 ? Set(pull.running) : nil,
                                                  ackedReplySeq: pull.ackedDispatchSeq, returned: pull.returned, leaving: pull.leaving,
                                                  pipeID: pipeID, subtaskSession: pull.subtaskSession, waitSeconds: wait)
                var reply = Colony_V1_PullReply()
                if answer.describe {
                    reply.describe = true
                    return .pullReply(reply)
                }
                reply.tasks = answer.tasks.map(\.wire)
                reply.cancel = answer.cancel
                reply.dispatchSeq = answer.seq
                if let deadline = answer.drainDeadline {
                    reply.drain = true
                    reply.drainDeadlineMs = UInt32(clamping: Int(deadline * 1000))
                }
                return .pullReply(reply)
            case .fetch(let fetch):
                guard !fetch.session.isEmpty else {
                    return Wire.errorBody(.invalidArgument, "fetch needs a session id")
                }
                let wait = min(Double(fetch.waitMs) / 1000, bounds.longPollSecondsMax)
                // Acknowledgements with max_results 0: only acknowledge.
                let ackOnly = !fetch.acked.isEmpty && fetch.maxResults == 0
                let limit = ackOnly ? 0 : max(1, min(Int(fetch.maxResults == 0 ? 1024 : fetch.maxResults), bounds.resultsPerFetchMax))
                let (results, unfinished) = try await state.fetch(session: fetch.session, maxResults: limit, waitSeconds: wait,
                                                              acked: fetch.acked)
                var reply = Colony_V1_FetchReply()
                reply.results = results.map(\.wire)
                reply.pending = UInt64(unfinished)
                return .fetchReply(reply)
            case .status(let request):
                guard request.figures else { return .statusReply(await state.status().wire) }
                let (figures, status) = await figures()
                return .statusReply(figures.wire(status: status))
            case .counter(let request):
                return try await handleCounter(request)
            case .limit(let request):
                if !request.list { try await state.setLimit(request.name, size: Int(request.size)) }
                var reply = Colony_V1_LimitReply()
                reply.limits = await state.limits().map(\.wire)
                return .limitReply(reply)
            case .cancel(let request):
                var reply = Colony_V1_CancelReply()
                reply.cancelled = UInt64(try await state.cancel(ids: request.taskIds, session: request.session))
                return .cancelReply(reply)
            case .drain(let request):
                let deadline = request.deadlineMs == 0 ? 30 : Double(request.deadlineMs) / 1000
                var reply = Colony_V1_DrainReply()
                reply.found = await state.drain(node: request.node, deadlineSeconds: deadline)
                return .drainReply(reply)
            case .tasks(let request):
                var phase: TaskPhase?
                if !request.state.isEmpty {
                    guard let known = TaskPhase(rawValue: request.state) else {
                        let names = TaskPhase.allCases.map(\.rawValue).joined(separator: ", ")
                        return Wire.errorBody(.invalidArgument, "unknown task state '\(request.state)' (one of \(names))")
                    }
                    phase = known
                }
                let limit = request.limit == 0 ? 1000 : min(Int(request.limit), 100_000)
                var reply = Colony_V1_TasksReply()
                reply.tasks = await state.tasks(phase: phase, limit: limit).map(\.wire)
                return .tasksReply(reply)
            case .result(let request):
                let wait = min(Double(request.waitMs) / 1000, bounds.longPollSecondsMax)
                var reply = Colony_V1_FetchReply()
                if let outcome = try await state.result(of: request.taskID, waitSeconds: wait) {
                    reply.results = [outcome.wire]
                } else {
                    reply.pending = 1
                }
                return .fetchReply(reply)
            case .logs(let request):
                return try await answerLogs(request, waitSecondsMax: bounds.longPollSecondsMax)
            case .job(let request):
                return try await handleJob(request)
            case .submitReply, .pullReply, .fetchReply, .statusReply, .error, .counterReply, .limitReply, .cancelReply,
                 .tasksReply, .drainReply, .logsReply, .jobReply, nil:
                return Wire.errorBody(.malformed, "the coordinator takes requests (submit, pull, fetch, status), not replies")
            }
        } catch {
            switch error {
            case .unavailable(let why): return Wire.errorBody(.unavailable, why)
            case .notFound(let why): return Wire.errorBody(.notFound, why)
            case .invalidArgument(let why): return Wire.errorBody(.invalidArgument, why)
            }
        }
    }

    /// Requests that change nothing (a fetch may forget results, a pull applies them: not these).
    static func isRead(_ body: Colony_V1_Envelope.OneOf_Body?) -> Bool {
        switch body {
        case .status, .tasks, .logs: true
        case .job(let request): request.op == .list || request.op == .status || request.op == .results || request.op == .wait
        case .counter(let request): request.op == .get || request.op == .list
        case .limit(let request): request.list
        default: false
        }
    }

    private func noteRefused(_ code: Colony_V1_ErrorReply.Code) {
        refusals.withLock { $0[Self.refusalName(code), default: 0] += 1 }
    }

    static func refusalName(_ code: Colony_V1_ErrorReply.Code) -> String {
        switch code {
        case .malformed: "malformed"
        case .unsupportedVersion: "unsupported_version"
        case .tooLarge: "too_large"
        case .invalidArgument: "invalid_argument"
        case .unauthorized: "unauthorized"
        case .unavailable: "unavailable"
        case .notFound: "not_found"
        case .unspecified, .UNRECOGNIZED: "other"
        }
    }

    /// Requests answered with an error, by kind (`malformed`, `unauthorized`, ...).
    public var refusedRequests: [String: UInt64] { refusals.withLock { $0 } }
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
