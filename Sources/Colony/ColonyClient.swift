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

    let link: CoordinatorLink
    var idleContexts: [Requester] = []
    var openedContexts = 0
    var contextWaiters: [CheckedContinuation<Requester, Never>] = []
    var waiting: [TaskID: Gather] = [:]
    var arrived: [TaskID: TaskResult] = [:]
    /// Tasks whose results nobody will ask for (see `forget`): dropped when they arrive.
    var unwanted: Set<TaskID> = []
    var pumpRunning = false
    var submitGeneration: UInt64 = 0
    var runCounter: UInt64 = 0
    var isClosed = false
    /// Tasks submitted so far: each gets the idempotency key `SESSION#N`.
    var keyCounter: UInt64 = 0
    /// Ids of the results the last fetch brought, acknowledged by the next one.
    var unacked: [TaskID] = []

    /// Connects to the coordinator at `url`; fails at once with a clear error when the URL
    /// is malformed or nothing listens there.
    public init(connect url: String, options: Options = Options()) throws(ColonyError) {
        try ColonyURL.validate(url)
        self.url = url
        self.options = options
        self.session = UUID().uuidString
        link = try CoordinatorLink(url: url, tls: options.tls, waitForConnection: true, onLoss: .resend)
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
        link.close()
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

    /// Waits for the results of `ids`, returned in the same order; throws `.cancelled` when
    /// the waiting task is cancelled.
    public func results(of ids: [TaskID]) async throws(ColonyError) -> [TaskResult] {
        if isClosed { throw .closed }
        let gather = Gather(ids: ids)
        for id in ids {
            unwanted.remove(id)
            if let result = arrived.removeValue(forKey: id) {
                gather.deliver(result)
            } else {
                waiting[id] = gather
            }
        }
        if !gather.isComplete { ensurePump() }
        // A cancelled waiter (a handler stopped while it waits for its subtasks) stops waiting.
        do {
            return try await withTaskCancellationHandler {
                try await gather.wait()
            } onCancel: {
                gather.fail(.cancelled)
            }
        } catch let error as ColonyError {
            throw error
        } catch {
            throw .transport("\(error)")
        }
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

}

