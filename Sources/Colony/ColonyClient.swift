import ColonyModel
import ColonyWire
import Foundation
import NNG

/// A connection to a Colony coordinator: submit tasks, await their results, map a handler
/// over many inputs, read the cluster's status.
///
/// ```swift
/// let colony = try ColonyClient(connect: "tcp://127.0.0.1:7411")
/// let counts = try await colony.map("primes", ranges, as: Int.self)
/// ```
/// Under the hood submits travel in batches over several pipelined requests, and results
/// come back in batches through one long-polling fetch per client.
public actor ColonyClient {
    /// Tuning of the client's batching.
    public struct Options: Sendable {
        /// How long the client keeps trying a coordinator that does not answer (stopped,
        /// restarting, cut off) before a request or a wait for results fails. Resends are
        /// harmless (tasks and counter changes carry keys, fetches acknowledge), so one
        /// setting covers every wait. `colony --patience S` / `COLONY_PATIENCE`.
        public var patience: Duration = .seconds(60)
        /// Called once per request that the coordinator answers UNAVAILABLE (it takes no
        /// changes for now) before the request is tried again, with the coordinator's reason.
        public var onUnavailable: (@Sendable (String) -> Void)?
        /// Requests in flight at once (each uses one nng context).
        public var concurrentRequests = 8
        /// Tasks per submit message, and their largest total input size.
        public var tasksPerSubmit = 2000
        public var submitBytesMax = 4 << 20
        /// How long one fetch may wait at the coordinator.
        public var fetchWaitMilliseconds: UInt32 = 1000
        /// The coordinator's shared token ("" when it requires none).
        public var token = ""
        /// Certificates for a `tls+tcp://` coordinator URL.
        public var tls: TLSSettings?
        public init() {}
    }

    /// The coordinator's URL.
    public let url: String
    /// This client's session: the coordinator keeps its tasks' results for it.
    public nonisolated let session: String
    public let options: Options
    /// Waits between asking again: a coordinator answering UNAVAILABLE, a result pump whose
    /// fetch failed.
    static let retryBackoff = Backoff(baseSeconds: 0.05, maxSeconds: 0.25)

    private let socket: Socket
    private var idleContexts: [Context] = []
    private var openedContexts = 0
    private var contextWaiters: [CheckedContinuation<Context, Never>] = []
    private var waiting: [TaskID: Gather] = [:]
    private var arrived: [TaskID: TaskResult] = [:]
    private var pumpRunning = false
    private var submitGeneration: UInt64 = 0
    private var runCounter: UInt64 = 0
    private var isClosed = false
    /// Tasks submitted so far: each gets the idempotency key `SESSION#N`.
    private var keyCounter: UInt64 = 0
    /// Ids of the results the last fetch brought, acknowledged by the next one.
    private var unacked: [TaskID] = []

    /// Connects to the coordinator at `url`; fails at once with a clear error when the URL
    /// is malformed or nothing listens there.
    public init(connect url: String, options: Options = Options()) throws(ColonyError) {
        try ColonyURL.validate(url)
        self.url = url
        self.options = options
        self.session = UUID().uuidString
        do {
            socket = try Socket(.req)
            try socket.setReceiveMaxBytes(colonyMessageBytesMax)
            try socket.setReconnectTimes(minimum: .milliseconds(50), maximum: .seconds(2))
            try socket.dial(url, waitForConnection: true, tls: options.tls)
        } catch {
            throw ColonyURL.describe(error, url: url)
        }
    }

    /// Fails every wait and closes the connection, once the requests in flight (at most a
    /// fetch's long poll) have ended.
    public func close() async {
        guard !isClosed else { return }
        isClosed = true
        for gather in waiting.values { gather.fail(.closed) }
        waiting = [:]
        // nng 1.5.2's nng_close can hang for good when it races a REQ context between its
        // send and its receive (seen with the pump's last acknowledgement): let requests in
        // flight finish first (bounded), then close. (A context call overlapping nng_close,
        // which panics nng 1.5.2, is prevented in NNG itself: see Socket.close.)
        let deadline = ContinuousClock.now + .seconds(3)
        while openedContexts > idleContexts.count && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
        socket.close()
    }

    // MARK: Submitting

    /// Queues one task; returns its id.
    public func submit(_ handler: String, input: some Encodable & Sendable, options: TaskOptions = TaskOptions()) async throws(ColonyError) -> TaskID {
        try await submit([TaskSubmission(handler: handler, input: try Self.encode(input), options: options)])[0]
    }

    /// Queues one task whose input is given as raw bytes (JSON for Colony's handlers).
    public func submit(_ handler: String, rawInput: [UInt8], options: TaskOptions = TaskOptions()) async throws(ColonyError) -> TaskID {
        try await submit([TaskSubmission(handler: handler, input: rawInput, options: options)])[0]
    }

    /// Queues many tasks in batched, pipelined messages; returns their ids in order.
    ///
    /// Every task carries an idempotency key (yours, or `SESSION#N`), so a submit that nng
    /// resends after a lost reply or a coordinator restart never creates a task twice.
    public func submit(_ tasks: [TaskSubmission]) async throws(ColonyError) -> [TaskID] {
        try await submit(tasks, job: .new).ids
    }

    /// Queues many tasks into the job `job` names (a new one by default: see `JobTarget`);
    /// returns the job and the tasks' ids in order. The first batch goes alone when there are
    /// several, so that the rest join the job it made.
    public func submit(_ tasks: [TaskSubmission], job: JobTarget) async throws(ColonyError) -> (job: JobID, ids: [TaskID]) {
        if tasks.isEmpty { return (0, []) }
        for (index, task) in tasks.enumerated() {
            guard let timeout = task.options.timeoutSeconds else { continue }
            do { _ = try SecondsRange.taskTimeout.check(timeout, "task \(index): timeoutSeconds") } catch { throw .badInput("\(error)") }
        }
        var keyed = tasks
        for index in keyed.indices where keyed[index].key == nil {
            keyCounter += 1
            keyed[index].key = "\(session)#\(keyCounter)"
        }
        let tasks = keyed
        var chunks: [Range<Int>] = []
        var start = 0
        var bytes = 0
        for (index, task) in tasks.enumerated() {
            let size = task.input.count + task.handler.utf8.count + 16
            if index > start && (index - start == options.tasksPerSubmit || bytes + size > options.submitBytesMax) {
                chunks.append(start..<index)
                start = index
                bytes = 0
            }
            bytes += size
        }
        chunks.append(start..<tasks.count)
        let session = self.session
        var idsByChunk: [Int: [TaskID]] = [:]
        @Sendable func send(_ range: Range<Int>, _ job: JobTarget) async throws -> (JobID, [TaskID]) {
            var request = Colony_V1_SubmitRequest()
            request.session = session
            request.tasks = tasks[range].map(\.wire)
            request.detached = tasks[range].contains { $0.detached }
            switch job {
            case .new: break
            case .existing(let id): request.jobID = id
            case .named(let name): request.jobName = name
            }
            let reply = try await self.request(.submit(request))
            guard case .submitReply(let submitted) = reply, submitted.taskIds.count == range.count else {
                throw ColonyError.protocolViolation("the coordinator answered a submit of \(range.count) tasks with something else")
            }
            return (submitted.jobID, submitted.taskIds)
        }
        let jobID: JobID
        do {
            let (first, firstIDs) = try await send(chunks[0], job)
            jobID = first
            idsByChunk[0] = firstIDs
            let rest = try await withThrowingTaskGroup(of: (Int, [TaskID]).self) { group in
                for (index, range) in chunks.enumerated().dropFirst() {
                    group.addTask { (index, try await send(range, .existing(first)).1) }
                }
                var collected: [Int: [TaskID]] = [:]
                for try await (index, ids) in group { collected[index] = ids }
                return collected
            }
            idsByChunk.merge(rest) { first, _ in first }
        } catch let error as ColonyError {
            throw error
        } catch {
            throw .transport("\(error)")
        }
        submitGeneration += 1
        return (jobID, (0..<chunks.count).flatMap { idsByChunk[$0] ?? [] })
    }

    // MARK: Results

    /// Waits for the result of `id` (successful or not).
    public func result(of id: TaskID) async throws(ColonyError) -> TaskResult {
        try await results(of: [id])[0]
    }

    /// Waits for the results of `ids`, returned in the same order.
    public func results(of ids: [TaskID]) async throws(ColonyError) -> [TaskResult] {
        if isClosed { throw .closed }
        let gather = Gather(ids: ids)
        for id in ids {
            if let result = arrived.removeValue(forKey: id) {
                gather.deliver(result)
            } else {
                waiting[id] = gather
            }
        }
        if !gather.isComplete { ensurePump() }
        return try await gather.wait()
    }

    /// Runs one task and decodes its output (submit and wait, in one round trip when the
    /// task is quick).
    public func run<Output: Decodable>(_ handler: String, input: some Encodable & Sendable, as type: Output.Type = Output.self) async throws(ColonyError) -> Output {
        try await runResult(handler, rawInput: try Self.encode(input)).value(as: Output.self)
    }

    /// Runs one task and returns its result, failed or not. The submit asks the coordinator
    /// to hold its reply until the result is in (up to a few seconds), so a quick task costs
    /// one round trip instead of two; a slower one is then fetched with long polls.
    public func runResult(_ handler: String, rawInput: [UInt8]) async throws(ColonyError) -> TaskResult {
        runCounter += 1
        // A session of its own, so that the reply carries exactly this task's result.
        let runSession = "\(session)/run-\(runCounter)"
        var submit = Colony_V1_SubmitRequest()
        submit.session = runSession
        submit.tasks = [TaskSubmission(handler: handler, input: rawInput, key: runSession).wire]
        submit.waitMs = 2000
        guard case .submitReply(let submitted) = try await request(.submit(submit)), let id = submitted.taskIds.first else {
            throw .protocolViolation("the coordinator answered a submit with something else")
        }
        if let result = submitted.results.first { return TaskResult(wire: result) }
        while true {
            var fetch = Colony_V1_FetchRequest()
            fetch.session = runSession
            fetch.maxResults = 1
            fetch.waitMs = options.fetchWaitMilliseconds
            guard case .fetchReply(let fetched) = try await request(.fetch(fetch)) else {
                throw .protocolViolation("the coordinator answered a fetch with something else")
            }
            if let result = fetched.results.first { return TaskResult(wire: result) }
            if fetched.pending == 0 { throw .unknownTask(id) }
        }
    }

    /// Runs `handler` over every input and returns the outputs in input order. Throws the
    /// first failure (in input order) after all tasks finished.
    public func map<Input: Encodable & Sendable, Output: Decodable>(_ handler: String, _ inputs: [Input], as type: Output.Type = Output.self, options: TaskOptions = TaskOptions(), chunkSize: Int = 1) async throws(ColonyError) -> [Output] {
        let results = try await mapResults(handler, inputs, options: options, chunkSize: chunkSize)
        var outputs: [Output] = []
        outputs.reserveCapacity(results.count)
        for result in results { outputs.append(try result.value(as: Output.self)) }
        return outputs
    }

    /// `map` with a handler type known to the client: `colony.map(PrimesHandler.self, ranges)`.
    public func map<H: HandlerSignature>(_ handler: H.Type, _ inputs: [H.Input]) async throws(ColonyError) -> [H.Output] {
        try await map(H.name, inputs, as: H.Output.self)
    }

    /// Runs `handler` over every input; returns every result, failed ones included, in order.
    ///
    /// With `chunkSize` K > 1, K inputs travel in one task (the node's `batch` handler runs them
    /// one after the other): far fewer messages for tiny inputs. Results are still one per
    /// input, in order, a failure reported per input; the inputs of one chunk share its task id.
    public func mapResults<Input: Encodable & Sendable>(_ handler: String, _ inputs: [Input], options: TaskOptions = TaskOptions(), chunkSize: Int = 1) async throws(ColonyError) -> [TaskResult] {
        var encoded: [[UInt8]] = []
        encoded.reserveCapacity(inputs.count)
        for input in inputs { encoded.append(try Self.encode(input)) }
        return try await mapRawResults(handler, encoded, options: options, chunkSize: chunkSize)
    }

    /// `mapResults` over inputs that are JSON already.
    public func mapRawResults(_ handler: String, _ inputs: [[UInt8]], options: TaskOptions = TaskOptions(), chunkSize: Int = 1) async throws(ColonyError) -> [TaskResult] {
        guard chunkSize > 1 else {
            let ids = try await submit(inputs.map { TaskSubmission(handler: handler, input: $0, options: options) })
            return try await results(of: ids)
        }
        var submissions: [TaskSubmission] = []
        var start = 0
        while start < inputs.count {
            let chunk = inputs[start..<min(start + chunkSize, inputs.count)]
            let body: [UInt8]
            do {
                body = try BatchFormat.input(handler: handler, inputs: chunk)
            } catch {
                throw .badInput("cannot encode the handler name '\(handler)' as JSON: \(error)")
            }
            submissions.append(TaskSubmission(handler: BatchFormat.handlerName, input: body, options: options, poolHandler: handler))
            start += chunk.count
        }
        let ids = try await submit(submissions)
        var expanded: [TaskResult] = []
        expanded.reserveCapacity(inputs.count)
        for (index, chunkResult) in try await results(of: ids).enumerated() {
            let size = min(chunkSize, inputs.count - index * chunkSize)
            guard chunkResult.succeeded else {
                expanded += Array(repeating: chunkResult, count: size)
                continue
            }
            let entries: [BatchEntry]
            do {
                entries = try BatchEntry.split(chunkResult.output)
            } catch {
                throw .badOutput(id: chunkResult.id, reason: "batch output: \(error)")
            }
            guard entries.count == size else {
                throw .badOutput(id: chunkResult.id, reason: "batch of \(size) inputs returned \(entries.count) entries")
            }
            expanded += entries.map { entry in
                TaskResult(id: chunkResult.id, succeeded: entry.ok, output: entry.output, error: entry.error ?? "",
                           failure: entry.ok ? nil : .error, node: chunkResult.node, attempt: chunkResult.attempt, runMicros: chunkResult.runMicros, cancelled: false)
            }
        }
        return expanded
    }

    // MARK: Status

    /// The cluster as the coordinator sees it now.
    public func status() async throws(ColonyError) -> ClusterStatus {
        let reply = try await request(.status(Colony_V1_StatusRequest()))
        guard case .statusReply(let status) = reply else {
            throw .protocolViolation("the coordinator answered a status request with something else")
        }
        return ClusterStatus(wire: status)
    }

    /// The cluster at a glance: the status with exact task counts, throughput, latency
    /// percentiles, recent failures and counters (what `colony top` shows).
    public func report() async throws(ColonyError) -> ClusterReport {
        var request = Colony_V1_StatusRequest()
        request.figures = true
        let reply = try await self.request(.status(request))
        guard case .statusReply(let status) = reply else {
            throw .protocolViolation("the coordinator answered a status request with something else")
        }
        return ClusterReport(wire: status)
    }

    // MARK: Counters, limits, cancellation, queries

    /// A cluster counter: `try await colony.counter("hits").add(1)`.
    public nonisolated func counter(_ name: String) -> Counter { Counter(client: self, name: name) }

    /// Every counter, by name.
    public func counters() async throws(ColonyError) -> [(name: String, value: Int64)] {
        var request = Colony_V1_CounterRequest()
        request.op = .list
        return try await counterRequest(request).counters.map { ($0.name, $0.value) }
    }

    func counterRequest(_ request: Colony_V1_CounterRequest) async throws(ColonyError) -> Colony_V1_CounterReply {
        var request = request
        if request.op != .get && request.op != .list && request.key.isEmpty {
            // A change nng resends (lost reply, coordinator restart) is applied once.
            keyCounter += 1
            request.key = "\(session)#c\(keyCounter)"
        }
        guard case .counterReply(let reply) = try await self.request(.counter(request)) else {
            throw .protocolViolation("the coordinator answered a counter request with something else")
        }
        return reply
    }

    /// Creates or resizes a cluster limit: at most `size` tasks that use it run at once.
    public func setLimit(_ name: String, size: Int) async throws(ColonyError) {
        var request = Colony_V1_LimitRequest()
        request.name = name
        request.size = UInt32(clamping: size)
        _ = try await limitRequest(request)
    }

    /// Every limit with its size, current use and the most ever used at once.
    public func limits() async throws(ColonyError) -> [LimitStatus] {
        var request = Colony_V1_LimitRequest()
        request.list = true
        return try await limitRequest(request)
    }

    private func limitRequest(_ request: Colony_V1_LimitRequest) async throws(ColonyError) -> [LimitStatus] {
        guard case .limitReply(let reply) = try await self.request(.limit(request)) else {
            throw .protocolViolation("the coordinator answered a limit request with something else")
        }
        return reply.limits.map(LimitStatus.init(wire:))
    }

    /// Asks node `name` to drain: it takes no new tasks, finishes what it runs (handing back
    /// what still runs after `deadline`), then leaves. False if the coordinator does not know it.
    @discardableResult
    public func drain(node name: String, deadline: Duration = .seconds(30)) async throws(ColonyError) -> Bool {
        var request = Colony_V1_DrainRequest()
        request.node = name
        do {
            request.deadlineMs = UInt32(try SecondsRange.drainDeadline.milliseconds(deadline / .seconds(1), "drain deadline"))
        } catch {
            throw .badInput("\(error)")
        }
        guard case .drainReply(let reply) = try await self.request(.drain(request)) else {
            throw .protocolViolation("the coordinator answered a drain request with something else")
        }
        return reply.found
    }

    /// Cancels tasks (queued ones are removed, running ones stopped, dependents cancelled in
    /// cascade); returns how many were cancelled. Their results say `cancelled`.
    @discardableResult
    public func cancel(_ ids: [TaskID]) async throws(ColonyError) -> Int {
        var request = Colony_V1_CancelRequest()
        request.taskIds = ids
        return try await cancelRequest(request)
    }

    /// Cancels every unfinished task this client submitted (e.g. a whole map), waiting for
    /// the coordinator at most `patience` (default: the client's).
    @discardableResult
    public func cancelAll(patience: Duration? = nil) async throws(ColonyError) -> Int {
        try await cancel(session: session, patience: patience)
    }

    /// Cancels every unfinished task of a session (another client's, e.g. one that was
    /// killed: `colony cancel --session ID`).
    @discardableResult
    public func cancel(session: String, patience: Duration? = nil) async throws(ColonyError) -> Int {
        var request = Colony_V1_CancelRequest()
        request.session = session
        return try await cancelRequest(request, patience: patience)
    }

    private func cancelRequest(_ request: Colony_V1_CancelRequest, patience: Duration? = nil) async throws(ColonyError) -> Int {
        guard case .cancelReply(let reply) = try await self.request(.cancel(request), patience: patience) else {
            throw .protocolViolation("the coordinator answered a cancel request with something else")
        }
        return Int(reply.cancelled)
    }

    /// Tasks the coordinator knows, optionally only those in one phase.
    public func tasks(in phase: TaskPhase? = nil, limit: Int = 1000) async throws(ColonyError) -> [TaskInfo] {
        var request = Colony_V1_TasksRequest()
        request.state = phase?.rawValue ?? ""
        request.limit = UInt32(clamping: limit)
        guard case .tasksReply(let reply) = try await self.request(.tasks(request)) else {
            throw .protocolViolation("the coordinator answered a tasks request with something else")
        }
        return reply.tasks.map(TaskInfo.init(wire:))
    }

    /// The result of any task by id (whoever submitted it), waiting up to `wait` for it to
    /// finish; nil if it has not finished by then. The result is handed out once.
    public func fetchResult(of id: TaskID, wait: Duration = .seconds(0)) async throws(ColonyError) -> TaskResult? {
        var request = Colony_V1_ResultRequest()
        request.taskID = id
        do {
            request.waitMs = UInt32(clamping: try SecondsRange.wait.milliseconds(wait / .seconds(1), "result wait"))
        } catch {
            throw .badInput("\(error)")
        }
        guard case .fetchReply(let reply) = try await self.request(.result(request)) else {
            throw .protocolViolation("the coordinator answered a result request with something else")
        }
        return reply.results.first.map(TaskResult.init(wire:))
    }

    // MARK: Internals

    static func encode(_ input: some Encodable) throws(ColonyError) -> [UInt8] {
        do {
            return Array(try JSONEncoder().encode(input))
        } catch {
            throw .badInput("cannot encode \(type(of: input)) as JSON: \(error)")
        }
    }

    /// One request and its reply. A coordinator that answers UNAVAILABLE (its journal cannot
    /// be written: nothing was applied) is asked again until the patience runs out; resends are
    /// harmless (keys), and a map then rides through a full disk instead of failing while its
    /// work runs on.
    func request(_ body: Colony_V1_Envelope.OneOf_Body, patience: Duration? = nil) async throws(ColonyError) -> Colony_V1_Envelope.OneOf_Body {
        let patience = patience ?? options.patience
        let deadline = ContinuousClock.now + patience
        var refusals = 0
        while true {
            do {
                return try await exchange(body, patience: patience)
            } catch .unavailable(let reason) {
                refusals += 1
                let wait = Self.retryBackoff.delay(afterFailures: refusals)
                guard ContinuousClock.now + wait < deadline, !isClosed else { throw .unavailable(reason) }
                if refusals == 1 { options.onUnavailable?(reason) }
                try? await Task.sleep(for: wait)
            }
        }
    }

    /// One request/reply exchange on a free context.
    private func exchange(_ body: Colony_V1_Envelope.OneOf_Body, patience: Duration) async throws(ColonyError) -> Colony_V1_Envelope.OneOf_Body {
        if isClosed { throw .closed }
        let bytes = Wire.encode(body, token: options.token)
        // nng drops an oversized message without a word (and the request would only time
        // out), so refuse it here with the reason.
        if bytes.count > colonyMessageBytesMax {
            throw .badInput("a request of \(bytes.count) bytes exceeds the \(colonyMessageBytesMax >> 20) MiB message limit; make the input smaller (pass a path or a URL instead of the data)")
        }
        let context = try await acquireContext()
        defer { releaseContext(context) }
        let replyBytes: [UInt8]
        do {
            replyBytes = try await context.request(bytes, timeout: patience)
        } catch {
            if isClosed || error.isClosed { throw .closed }
            if error.isTimeout {
                throw .timedOut("no reply from the coordinator at \(url) within \(Self.format(patience)) (the client's patience: --patience or COLONY_PATIENCE)")
            }
            throw ColonyURL.describe(error, url: url)
        }
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Wire.decode(replyBytes)
        } catch {
            throw .protocolViolation("reply from \(url): \(error)")
        }
        if case .error(let refusal) = envelope.body {
            switch refusal.code {
            case .unavailable: throw .unavailable(refusal.message)
            case .notFound: throw .notFound(refusal.message)
            default: throw .refused(refusal.message)
            }
        }
        guard let reply = envelope.body else { throw .protocolViolation("empty reply from \(url)") }
        return reply
    }

    private func acquireContext() async throws(ColonyError) -> Context {
        if let context = idleContexts.popLast() { return context }
        if openedContexts < options.concurrentRequests {
            do {
                let context = try socket.openContext()
                openedContexts += 1
                return context
            } catch {
                throw .transport("cannot open a request context: \(error)")
            }
        }
        return await withCheckedContinuation { contextWaiters.append($0) }
    }

    private func releaseContext(_ context: Context) {
        if contextWaiters.isEmpty {
            idleContexts.append(context)
        } else {
            contextWaiters.removeFirst().resume(returning: context)
        }
    }

    private func ensurePump() {
        guard !pumpRunning else { return }
        pumpRunning = true
        // The pump lives only while someone waits; it ends by itself when nobody does.
        Task { await self.pump() }
    }

    /// Fetches this session's results in batches (long poll) and hands them to waiters.
    private func pump() async {
        var failures = Failures()
        while !isClosed {
            await pumpWhileWaited(&failures)
            guard !unacked.isEmpty && !isClosed else { break }
            // Nobody waits any more: let the coordinator forget what arrived. (A wait that
            // began meanwhile keeps this pump going: `ensurePump` saw it running.)
            var ack = Colony_V1_FetchRequest()
            ack.session = session
            ack.acked = unacked
            ack.maxResults = 0
            if (try? await request(.fetch(ack))) != nil { unacked = [] }
            if waiting.isEmpty { break }
        }
        pumpRunning = false
    }

    /// Fetches that failed in a row, and since when.
    private struct Failures {
        var count = 0
        var since: ContinuousClock.Instant?
    }

    /// `12 s`, `1.5 s` (for messages).
    public static func format(_ duration: Duration) -> String {
        formatSeconds(duration.inSeconds) + " s"
    }

    private func pumpWhileWaited(_ failures: inout Failures) async {
        while !waiting.isEmpty && !isClosed {
            let generation = submitGeneration
            var fetch = Colony_V1_FetchRequest()
            fetch.session = session
            fetch.maxResults = 8192
            fetch.waitMs = options.fetchWaitMilliseconds
            fetch.acked = unacked
            let attemptStarted = ContinuousClock.now
            do throws(ColonyError) {
                let reply = try await request(.fetch(fetch))
                guard case .fetchReply(let fetched) = reply else {
                    throw ColonyError.protocolViolation("the coordinator answered a fetch with something else")
                }
                failures = Failures()
                // The coordinator keeps these until the next fetch says they arrived.
                unacked = fetched.results.map(\.id)
                for wire in fetched.results { deliver(TaskResult(wire: wire)) }
                if !fetched.results.isEmpty && fetched.results.count < 64 && fetched.pending > 0 {
                    // More results are on their way: let a few gather, so that a long map
                    // costs a fetch per batch rather than one per result.
                    try? await Task.sleep(for: .milliseconds(1))
                }
                if fetched.pending == 0 && fetched.results.isEmpty && generation == submitGeneration {
                    // Nothing of ours is unfinished at the coordinator: whoever still waits
                    // waits for a task it will never report to this session.
                    for (id, gather) in waiting { gather.fail(.unknownTask(id)) }
                    waiting = [:]
                }
            } catch {
                failures.count += 1
                if case .closed = error { break }
                let now = ContinuousClock.now
                let since = failures.since ?? attemptStarted
                failures.since = since
                // A coordinator that is restarting, stopped or cut off is waited for, up to the
                // patience (it keeps the session's tasks in its journal); one that answers with
                // nonsense is not.
                let transient: Bool = switch error {
                case .unreachable, .timedOut, .transport, .unavailable: true
                default: false
                }
                if transient ? now - since >= options.patience : failures.count >= 3 {
                    for gather in waiting.values { gather.fail(error) }
                    waiting = [:]
                    break
                }
                try? await Task.sleep(for: Self.retryBackoff.delay(afterFailures: failures.count))
            }
        }
    }

    private func deliver(_ result: TaskResult) {
        if let gather = waiting.removeValue(forKey: result.id) {
            gather.deliver(result)
        } else {
            arrived[result.id] = result
        }
    }
}

/// Collects the results of a set of tasks and resumes one waiter when all are in.
final class Gather: @unchecked Sendable {
    private let lock = NSLock()
    private let ids: [TaskID]
    private let distinctCount: Int
    private var results: [TaskID: TaskResult] = [:]
    private var failure: ColonyError?
    private var continuation: CheckedContinuation<[TaskResult], any Error>?
    private var done = false

    init(ids: [TaskID]) {
        self.ids = ids
        distinctCount = Set(ids).count
        results.reserveCapacity(ids.count)
    }

    var isComplete: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done || results.count == distinctCount
    }

    func deliver(_ result: TaskResult) {
        lock.lock()
        results[result.id] = result
        let finished = !done && results.count == distinctCount
        resumeIfNeeded(finished: finished)
    }

    func fail(_ error: ColonyError) {
        lock.lock()
        if !done && failure == nil { failure = error }
        resumeIfNeeded(finished: !done)
    }

    // Called with the lock held; releases it.
    private func resumeIfNeeded(finished: Bool) {
        guard finished, let continuation else {
            lock.unlock()
            return
        }
        done = true
        self.continuation = nil
        let outcome = outcomeLocked()
        lock.unlock()
        continuation.resume(with: outcome)
    }

    private func outcomeLocked() -> Result<[TaskResult], any Error> {
        if let failure { return .failure(failure) }
        return .success(ids.map { results[$0]! })
    }

    func wait() async throws(ColonyError) -> [TaskResult] {
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[TaskResult], any Error>) in
                lock.lock()
                if done || failure != nil || results.count == distinctCount {
                    done = true
                    let outcome = outcomeLocked()
                    lock.unlock()
                    continuation.resume(with: outcome)
                } else {
                    self.continuation = continuation
                    lock.unlock()
                }
            }
        } catch let error as ColonyError {
            throw error
        } catch {
            throw .transport("\(error)")
        }
    }
}

/// A cluster counter seen from a client. Every operation is one request, applied atomically
/// by the coordinator.
public struct Counter: Sendable {
    let client: ColonyClient
    public let name: String

    /// The value now (0 for a counter never set).
    public func get() async throws(ColonyError) -> Int64 {
        try await send(.get).value
    }

    /// Adds `delta`; returns the new value.
    @discardableResult
    public func add(_ delta: Int64) async throws(ColonyError) -> Int64 {
        try await send(.add, value: delta).value
    }

    /// Sets the value; returns the previous one.
    @discardableResult
    public func set(_ value: Int64) async throws(ColonyError) -> Int64 {
        try await send(.set, value: value).value
    }

    /// Sets `new` only if the value is `expected`; returns whether it did.
    public func compareAndSet(expected: Int64, new: Int64) async throws(ColonyError) -> Bool {
        try await send(.compareAndSet, value: new, expected: expected).swapped
    }

    private func send(_ op: Colony_V1_CounterRequest.Op, value: Int64 = 0, expected: Int64 = 0) async throws(ColonyError) -> Colony_V1_CounterReply {
        var request = Colony_V1_CounterRequest()
        request.op = op
        request.name = name
        request.value = value
        request.expected = expected
        return try await client.counterRequest(request)
    }
}
