import ColonyModel

/// The coordinator's decisions, as a pure state machine: no sockets, no clock, no disk.
///
/// Time comes in as `now` (seconds on any monotonic scale), randomness (retry jitter) from a
/// seeded generator. The shell around it (`ColonyCoordinator`) turns messages into calls,
/// parks requests that must wait and calls `tick` now and then.
///
/// Rules it keeps (checked by `invariantViolations()` in the simulation tests):
/// - Every dispatch is an attempt leased to one node. A node never holds more leased tasks
///   than its slots plus the prefetch it asked for.
/// - Only the result of the attempt currently leased to the reporting node is applied; any
///   other (late, duplicated, from the wrong node, of a cancelled task) is dropped and counted.
///   A task therefore finishes exactly once.
/// - Counter changes made by a task are applied with its successful result, once.
/// - A limit is never held by more tasks than its size; it is released on success, failure,
///   cancellation (once the node stops the task) or a lost node.
/// - Higher priority first, FIFO within a priority, among the tasks a node may take.
public struct CoordinatorCore: Sendable {
    /// Bounds (most, longest) and timings. "Limit" names only the cluster limits (semaphores).
    public struct Bounds: Sendable {
        public var tasksPerSubmitMax = 100_000
        public var handlerNameBytesMax = 256
        public var sessionBytesMax = 256
        public var nodeNameBytesMax = 256
        public var counterNameBytesMax = 256
        public var threadSlotsMax = 4096
        /// An io slot costs a parked Swift task, not a thread, so a node may have many.
        public var ioSlotsMax = 65_536
        public var prefetchMax = 4096
        /// Tasks of a handler whose measured run time averages more than this are never sent
        /// beyond a node's free slots (no prefetch); neither are those of a handler not
        /// measured yet. Microseconds.
        public var prefetchRunMicrosMax = 5000.0
        public var dependenciesPerTaskMax = 10_000
        public var limitsPerTaskMax = 16
        /// Labels a task may require, labels a node may carry, and the longest label key or
        /// value (and host name).
        public var labelsPerTaskMax = 16
        public var labelsPerNodeMax = 64
        public var labelBytesMax = 256
        /// Handler names a node may announce (each at most `handlerNameBytesMax`).
        public var handlersPerNodeMax = 4096
        /// Longest error message kept with a failed attempt (longer ones are cut, not refused:
        /// the outcome must not be lost for its message).
        public var errorBytesMax = 64 << 10
        /// Keys of counter changes remembered to answer resends (the oldest are forgotten).
        public var counterKeysKept = 100_000
        /// A node not heard from for this long is dead; its attempts are requeued. Idle nodes
        /// pull every second (the long poll), so 2.5 s is two missed heartbeats and change.
        public var nodeTimeoutSeconds = 2.5
        /// Attempts lost with a dead node are retried, up to this many attempts in all.
        public var lostAttemptsMax = 10
        /// Retry back-off: base * 2^(attempt-1), capped, times a jitter in [0.5, 1.5).
        public var retryBackoffBaseSeconds = 0.1
        public var retryBackoffMaxSeconds = 30.0
        /// A node whose connection closed is given this long to pull again (reconnect) before
        /// it counts as dead and its attempts move.
        public var suspectGraceSeconds = 0.3
        /// Grace beyond a task's own timeout before the coordinator gives up on the attempt.
        public var timeoutGraceSeconds = 2.0
        /// Results nobody fetches are dropped after this long.
        public var resultTTLSeconds = 3600.0
        /// A session whose client was not heard from (submit, fetch, cancel) for this long is
        /// abandoned: its unfinished tasks are cancelled and its results dropped (a killed
        /// `colony map` leaves no work running and no results piling up). Detached
        /// submissions are exempt.
        public var sessionIdleSeconds = 600.0
        /// How long a finished task is remembered after its result was handed out, so that
        /// later tasks can still depend on it (and read its output) and a resent submit with
        /// its key still gets its id, and the most output bytes kept for that. Seconds, not
        /// minutes: a million finished tasks remembered are a few hundred MB the coordinator
        /// would hold after the work is done.
        public var finishedMemorySeconds = 30.0
        public var finishedMemoryBytesMax = 256 << 20
        /// Largest task output kept.
        public var resultBytesMax = 4 << 20
        /// Jobs the coordinator holds at once. At the bound the oldest ended job is forgotten
        /// to make room (those whose client was attached first: it got their results); with
        /// none ended, a submit that would make a job is refused.
        public var jobsMax = 100_000
        /// Bytes of results (outputs and errors, plus 64 per task) that jobs keep for
        /// `colony job results`. Past it, ended jobs are forgotten, oldest first (attached
        /// ones before detached ones); a running job keeps all of its results.
        public var jobResultBytesMax = 256 << 20
        public var jobNameBytesMax = 256
        public init() {}
    }

    /// Why a request was refused; nothing changed.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case invalidArgument(String)
        /// The coordinator takes no changes now (its journal cannot be written); the same
        /// request may succeed later.
        case unavailable(String)
        /// The request names a task or a job the coordinator does not know.
        case notFound(String)
        public var description: String {
            switch self {
            case .invalidArgument(let why), .unavailable(let why), .notFound(let why): why
            }
        }
    }

    enum State: Sendable, Equatable {
        /// Waiting for `remaining` dependencies.
        case waiting(remaining: Int)
        case backoff(until: Double)
        case queued
        case leased(node: String, since: Double)
        case finished(TaskPhase)
    }

    struct TaskRecord: Sendable {
        var handler: String
        var input: [UInt8]
        var session: String
        var poolHandler: String? = nil
        var key: String? = nil
        /// Restored from the journal and not leased since: a node that reports it running
        /// (it ran it before the restart) may keep it.
        var restored = false
        var options: TaskOptions
        var attempt: UInt32 = 0
        /// Attempts that ended without running: handed back unstarted by a node, or lost in
        /// transit. They number leases like any attempt but do not count against a task's
        /// `maxAttempts` or `lostAttemptsMax` (not journaled: a restart counts them again).
        var unrun: UInt32 = 0
        /// Attempts that count against the budgets.
        var runs: Int { Int(attempt) - Int(unrun) }
        var state: State
        var dependents: [TaskID] = []
        /// Kept after success while dependents may still need it.
        var output: [UInt8]?
        /// Dependents not finished yet (the output is dropped when it reaches 0).
        var readers = 0
        var lastError = ""
        /// The kind of `lastError`, when it ended the task as failed.
        var lastFailure: FailureKind = .error
        var node = ""
        var finishedAt = 0.0
        /// When it was submitted (or restored), for the queue-wait figure.
        var submittedAt = 0.0
        /// Its job (0: none, e.g. its job was forgotten) and its place in the job's input order.
        var job: JobID = 0
        var jobIndex = 0
        var classKey: ReadyQueue.ClassKey {
            ReadyQueue.ClassKey(uses: options.uses, labels: options.requiredLabels, pool: options.pool, handler: poolHandler ?? handler,
                                resources: options.resources)
        }
    }

    /// An attempt the coordinator gave up on (cancelled, timed out) that the node may still
    /// be running: it keeps its slot and limits until the node reports it or dies.
    struct AbandonedLease: Hashable, Sendable {
        var id: TaskID
        var attempt: UInt32
        var uses: [String]
        var pool: TaskPool
        var grant: ResourceGrant? = nil
    }

    /// A number per pool (slots free, leases held).
    struct PoolCounts: Sendable, Equatable {
        var thread = 0
        var process = 0
        var io = 0
        var any: Bool { thread > 0 || process > 0 || io > 0 }
        subscript(pool: TaskPool) -> Int {
            get {
                switch pool {
                case .process: process
                case .io: io
                case .thread, .automatic: thread
                }
            }
            set {
                switch pool {
                case .process: process = newValue
                case .io: io = newValue
                case .thread, .automatic: thread = newValue
                }
            }
        }
    }

    struct NodeRecord: Sendable {
        var announcement: NodeAnnouncement
        /// Live attempts: task id -> attempt number.
        var leased: [TaskID: UInt32] = [:]
        /// The reply sequence number each live attempt travelled in.
        var leaseSeq: [TaskID: UInt64] = [:]

        var abandoned: Set<AbandonedLease> = []
        var completed: UInt64 = 0
        var failed: UInt64 = 0
        var lastSeen: Double
        /// The pool each live attempt runs in.
        var leasePool: [TaskID: TaskPool] = [:]
        /// Leases (live and abandoned) held in the process pool and in the io pool; the rest
        /// are in the thread pool.
        var holdingProcess = 0
        var holdingIO = 0
        /// Tasks the node must stop (cancelled or timed out), told on its next pull.
        var toCancel: Set<TaskID> = []
        /// `colony drain` asked for it (with this deadline, seconds), until the node drains.
        var drainRequested: Double?
        /// Leases taken over after a restart (their attempt numbers predate it).
        var adopted: Set<TaskID> = []
        /// What it held when dispatch last looked at it (for the invariant: a node that
        /// announces fewer slots, or reports restored tasks running, may hold more than its
        /// slots, but dispatch never adds to that).
        /// Its connection closed and it has not pulled since: a pause of the coordinator is
        /// not excused for it (see `excuseSilence`).
        var suspect = false
        var heldBeforeDispatch = PoolCounts()
        /// Resources held by live attempts that asked for more than one plain slot, and their sum.
        var grants: [TaskID: ResourceGrant] = [:]
        var resourceUse = ResourceUse()
        var holding: Int { leased.count + abandoned.count }
        var holdingThread: Int { holding - holdingProcess - holdingIO }
        var holdingByPool: PoolCounts { PoolCounts(thread: holdingThread, process: holdingProcess, io: holdingIO) }
        /// Free capacity of `pool`: its slots (plus the prefetch it asked for, when
        /// `prefetching`) minus what it holds.
        func freeSlots(_ pool: TaskPool, prefetching: Bool = true) -> Int {
            if announcement.draining { return 0 }
            switch pool {
            case .process:
                return max(0, announcement.processSlots + (prefetching ? announcement.processPrefetch : 0) - holdingProcess - resourceUse.extraCpus.process)
            case .io: return max(0, announcement.ioSlots - holdingIO - resourceUse.extraCpus.io)
            case .thread, .automatic:
                return max(0, announcement.threadSlots + (prefetching ? announcement.prefetch : 0) - holdingThread - resourceUse.extraCpus.thread)
            }
        }

        /// Counts a lease taken (`delta` 1) or let go (-1) in `pool`.
        mutating func countHolding(in pool: TaskPool, _ delta: Int) {
            switch pool {
            case .process: holdingProcess += delta
            case .io: holdingIO += delta
            case .thread, .automatic: break
            }
        }

        /// The pool a task of class `key` would run in here, or nil if this node cannot take
        /// it: it lacks the handler (a node that announces no handlers at all is taken to run
        /// any) or slots of the pool. `automatic` takes the handler's default, or on a node
        /// with no slots of that kind the thread pool, then the process pool (an io handler
        /// runs on threads where there are no io slots; other handlers never take io slots).
        func pool(for key: ReadyQueue.ClassKey) -> TaskPool? {
            if !announcement.handlers.isEmpty && !announcement.handlers.contains(key.handler) { return nil }
            let threads = announcement.threadSlots > 0
            let processes = announcement.processSlots > 0
            switch key.pool {
            case .thread: return threads ? .thread : nil
            case .process: return processes ? .process : nil
            case .io: return announcement.ioSlots > 0 ? .io : nil
            case .automatic:
                if announcement.processHandlers.contains(key.handler) { return processes ? .process : (threads ? .thread : nil) }
                if announcement.ioSlots > 0 && announcement.ioHandlers.contains(key.handler) { return .io }
                return threads ? .thread : (processes ? .process : nil)
            }
        }
    }

    struct FinishedResult: Sendable {
        var outcome: TaskOutcome
        var finishedAt: Double
    }

    struct SessionRecord: Sendable {
        var finished: [FinishedResult] = []
        var unfinished = 0
        /// When the session's client was last heard from; nil until the first tick sees a
        /// new (or restored) session, which starts its clock.
        var lastHeard: Double?
        /// Exempt from the session timeout (see `TaskSubmission.detached`).
        var detached = false
    }

    public let bounds: Bounds
    /// Whether transitions are recorded for the journal (`takeJournal`).
    public var journaling = false
    var journal: [JournalRecord] = []
    var nextID: TaskID = 1
    var tasks: [TaskID: TaskRecord] = [:]
    var ready = ReadyQueue()
    var nodes: [String: NodeRecord] = [:]
    var sessions: [String: SessionRecord] = [:]
    var counters: [String: Int64] = [:]
    var limitSizes: [String: Int] = [:]
    var limitInUse: [String: Int] = [:]
    var limitHighWater: [String: Int] = [:]
    var backoffCount = 0
    /// Tasks `tick` must look at: backing off, or leased with a timeout. Kept apart so that a
    /// tick costs in proportion to them, not to every task known.
    var timedTasks: Set<TaskID> = []
    var waitingCount = 0
    /// Replies to keyed counter changes, and the keys oldest first (`counterKeyHead` is the
    /// first still remembered).
    var counterKeys: [String: CounterReply] = [:]
    var counterKeyOrder: [String] = []
    var counterKeyHead = 0
    /// Events for the log, when `recordingEvents` (see `takeEvents`).
    public var recordingEvents = false
    var events: [Event] = []
    /// What the metrics read (see CoordinatorCore+Metrics.swift).
    var figures = Figures()
    var submittedTotal: UInt64 = 0
    var succeededTotal: UInt64 = 0
    var failedTotal: UInt64 = 0
    var cancelledTotal: UInt64 = 0
    var retriedTotal: UInt64 = 0
    var lostDispatches: UInt64 = 0
    /// Recent run time per handler (microseconds, a moving average): what decides whether
    /// its tasks may be prefetched. Bounded: forgotten all at once past 10,000 handlers.
    var handlerRunMicros: [String: Double] = [:]
    var replySeq: UInt64 = 0
    var staleDropped: UInt64 = 0
    /// Attempts a node was told to stop because they were no longer its own.
    public internal(set) var staleTold: UInt64 = 0
    /// Restored tasks left with the node that was running them (see `adopt`).
    public internal(set) var adoptedTotal: UInt64 = 0
    var leasedTotal = 0
    var resultsWaiting = 0
    var random: SplitMix64
    /// Finished tasks whose results were handed out: phase and output, for dependencies.
    struct Remembered: Sendable {
        var phase: TaskPhase
        var output: [UInt8]
        var at: Double
        var key: String?
    }
    /// Idempotency keys of the tasks the core knows or remembers.
    var keys: [String: TaskID] = [:]
    var remembered: [TaskID: Remembered] = [:]
    /// Jobs (see CoordinatorCore+Jobs.swift), their names, and the bytes of results they keep.
    var jobs: [JobID: JobRecord] = [:]
    var jobNames: [String: JobID] = [:]
    var nextJobID: JobID = 1
    var jobResultBytes = 0
    var rememberedOrder: [TaskID] = []
    var rememberedHead = 0
    var rememberedBytes = 0

    public init(bounds: Bounds = Bounds(), seed: UInt64 = 0x5EED) {
        self.bounds = bounds
        random = SplitMix64(seed: seed)
    }

    /// Tasks waiting for a node.
    public var queuedCount: Int { ready.count }

    // MARK: Submitting

    /// Queues `submissions` for `session` in a new job; returns their ids in order.
    /// Refuses the whole batch (changing nothing) if any part is invalid.
    public mutating func submit(_ submissions: [TaskSubmission], session: String, now: Double = 0) throws(Refusal) -> [TaskID] {
        try submit(submissions, session: session, now: now, into: .new).ids
    }

    /// Refuses a submit (before anything changes) if any part of it is invalid.
    func validateSubmit(_ submissions: [TaskSubmission], session: String) throws(Refusal) {
        guard submissions.count <= bounds.tasksPerSubmitMax else {
            throw .invalidArgument("a submit carries \(submissions.count) tasks; the limit is \(bounds.tasksPerSubmitMax)")
        }
        guard !session.isEmpty, session.utf8.count <= bounds.sessionBytesMax else {
            throw .invalidArgument("session id must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: session, "session id")
        for (index, submission) in submissions.enumerated() {
            try validate(submission, index: index)
            try refuseImpossibleResources(submission, index: index)
        }
    }

    /// Queues submissions `validateSubmit` accepted (each carrying its job) for `session`.
    mutating func submitValidated(_ submissions: [TaskSubmission], session: String, now: Double) -> [TaskID] {
        var ids: [TaskID] = []
        ids.reserveCapacity(submissions.count)
        for submission in submissions {
            if let key = submission.key, let existing = keys[key] {
                ids.append(existing)
                continue
            }
            let id = nextID
            nextID += 1
            if let key = submission.key { keys[key] = id }
            var record = TaskRecord(handler: submission.handler, input: submission.input, session: session,
                                    options: submission.options, state: .queued)
            record.options.resources = Self.normalized(submission.options.resources)
            record.poolHandler = submission.poolHandler
            record.key = submission.key
            record.submittedAt = now
            record.job = submission.job
            if submission.job != 0 { record.jobIndex = addToJob(submission.job, task: id) }
            submittedTotal += 1
            if journaling { journal.append(.submitted(id: id, submission: submission, session: session)) }
            var remaining = 0
            var failedDependency: (TaskID, TaskPhase)?
            for dependency in Set(submission.options.after) {
                guard var parent = tasks[dependency] else {
                    if let old = remembered[dependency], old.phase != .succeeded {
                        failedDependency = failedDependency ?? (dependency, old.phase)
                    }
                    continue
                }
                switch parent.state {
                case .finished(.succeeded):
                    parent.readers += 1
                case .finished(let phase):
                    failedDependency = failedDependency ?? (dependency, phase)
                default:
                    parent.dependents.append(id)
                    parent.readers += 1
                    remaining += 1
                }
                tasks[dependency] = parent
            }
            sessions[session, default: SessionRecord()].unfinished += 1
            sessions[session]!.lastHeard = now
            if submission.detached { sessions[session]!.detached = true }
            if let (dependency, phase) = failedDependency {
                record.state = .waiting(remaining: remaining)
                waitingCount += 1
                countJob(record.job, waiting: 1)
                tasks[id] = record
                finish(id, phase: phase == .cancelled ? .cancelled : .failed,
                       error: "dependency \(dependency) \(phase == .cancelled ? "was cancelled" : "failed")", failure: .dependency, now: now)
            } else if remaining > 0 {
                record.state = .waiting(remaining: remaining)
                waitingCount += 1
                countJob(record.job, waiting: 1)
                tasks[id] = record
            } else {
                tasks[id] = record
                ready.push(id, priority: submission.options.priority, key: record.classKey)
            }
            ids.append(id)
        }
        return ids
    }

    /// What a node says of itself ends up in every status reply: bounded like everything else.
    private func validateNodeDescription(_ announcement: NodeAnnouncement) throws(Refusal) {
        guard announcement.host.utf8.count <= bounds.labelBytesMax else {
            throw .invalidArgument("node host name must be at most \(bounds.labelBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: announcement.host, "node host name")
        let handlerCount = announcement.handlers.count + announcement.processHandlers.count + announcement.ioHandlers.count
        guard handlerCount <= bounds.handlersPerNodeMax else {
            throw .invalidArgument("a node may announce at most \(bounds.handlersPerNodeMax) handlers (\(handlerCount) given)")
        }
        let named = announcement.handlers + announcement.processHandlers + announcement.ioHandlers
        for name in named where name.isEmpty || name.utf8.count > bounds.handlerNameBytesMax {
            throw .invalidArgument("node handler names must be 1 to \(bounds.handlerNameBytesMax) bytes")
        }
        for name in named {
            try NameCheck.refuseControlCharacters(in: name, "node handler name")
        }
        try validateLabels(announcement.labels, max: bounds.labelsPerNodeMax, owner: "a node")
        try validateOffer(announcement.resources)
    }

    /// At most `max` labels, each key 1 to `labelBytesMax` bytes and each value at most that.
    private func validateLabels(_ labels: [String: String], max: Int, owner: String) throws(Refusal) {
        guard labels.count <= max else { throw .invalidArgument("\(owner): at most \(max) labels") }
        for (key, value) in labels
        where key.isEmpty || key.utf8.count > bounds.labelBytesMax || value.utf8.count > bounds.labelBytesMax {
            throw .invalidArgument("\(owner): a label's key must be 1 to \(bounds.labelBytesMax) bytes and its value at most \(bounds.labelBytesMax)")
        }
        for (key, value) in labels {
            try NameCheck.refuseControlCharacters(in: key, "\(owner): label key")
            try NameCheck.refuseControlCharacters(in: value, "\(owner): label value")
        }
    }

    private func validate(_ submission: TaskSubmission, index: Int) throws(Refusal) {
        let bytes = submission.handler.utf8.count
        guard bytes > 0, bytes <= bounds.handlerNameBytesMax else {
            throw .invalidArgument("task \(index): handler name must be 1 to \(bounds.handlerNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: submission.handler, "task \(index): handler name")
        if let key = submission.key, key.isEmpty || key.utf8.count > bounds.sessionBytesMax {
            throw .invalidArgument("task \(index): a key must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        if let poolHandler = submission.poolHandler, poolHandler.utf8.count > bounds.handlerNameBytesMax {
            throw .invalidArgument("task \(index): pool handler name must be at most \(bounds.handlerNameBytesMax) bytes")
        }
        if let key = submission.key { try NameCheck.refuseControlCharacters(in: key, "task \(index): key") }
        if let poolHandler = submission.poolHandler { try NameCheck.refuseControlCharacters(in: poolHandler, "task \(index): pool handler name") }
        let options = submission.options
        guard options.after.count <= bounds.dependenciesPerTaskMax else {
            throw .invalidArgument("task \(index): at most \(bounds.dependenciesPerTaskMax) dependencies")
        }
        for dependency in options.after where tasks[dependency] == nil && remembered[dependency] == nil {
            // Ids only name tasks that exist already, so a cycle cannot be written down; an id
            // that is not (or no longer) known is refused rather than waited for forever.
            throw .invalidArgument("task \(index): unknown dependency \(dependency) (not submitted, or finished and fetched)")
        }
        guard options.uses.count <= bounds.limitsPerTaskMax else {
            throw .invalidArgument("task \(index): at most \(bounds.limitsPerTaskMax) limits")
        }
        for name in options.uses {
            try NameCheck.refuseControlCharacters(in: name, "task \(index): limit name")
        }
        for name in options.uses where limitSizes[name] == nil {
            throw .invalidArgument("task \(index): unknown limit '\(name)' (create it first: colony limit set \(name) N)")
        }
        try validateLabels(options.requiredLabels, max: bounds.labelsPerTaskMax, owner: "task \(index)")
        try validateResources(options.resources, owner: "task \(index)")
        guard options.maxAttempts >= 1, options.maxAttempts <= 1000 else {
            throw .invalidArgument("task \(index): maxAttempts must be 1 to 1000")
        }
        if let timeout = options.timeoutSeconds, !(timeout > 0 && timeout.isFinite) {
            throw .invalidArgument("task \(index): timeout must be a positive number of seconds")
        }
    }

    // MARK: Nodes

    /// Records that `node` pulled at `now` and applies the results it carried.
    /// Returns the sessions that gained results (their waiting fetches can be answered).
    ///
    /// `returned`: tasks the node hands back unfinished (draining); they are queued again
    /// without counting as a failure. `leaving`: the node's last pull; what it still holds is
    /// queued again and the node is forgotten at once.
    public mutating func report(node announcement: NodeAnnouncement, results: [TaskOutcome], now: Double,
                                running: Set<TaskID>? = nil, ackedReplySeq: UInt64 = 0,
                                returned: [TaskID] = [], leaving: Bool = false) throws(Refusal) -> Set<String> {
        guard !announcement.name.isEmpty, announcement.name.utf8.count <= bounds.nodeNameBytesMax else {
            throw .invalidArgument("node name must be 1 to \(bounds.nodeNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: announcement.name, "node name")
        guard announcement.threadSlots >= 0, announcement.threadSlots <= bounds.threadSlotsMax else {
            throw .invalidArgument("node slots must be 0 to \(bounds.threadSlotsMax)")
        }
        guard announcement.processSlots >= 0, announcement.processSlots <= bounds.threadSlotsMax else {
            throw .invalidArgument("node process slots must be 0 to \(bounds.threadSlotsMax)")
        }
        guard announcement.ioSlots >= 0, announcement.ioSlots <= bounds.ioSlotsMax else {
            throw .invalidArgument("node io slots must be 0 to \(bounds.ioSlotsMax)")
        }
        guard announcement.prefetch >= 0, announcement.prefetch <= bounds.prefetchMax,
              announcement.processPrefetch >= 0, announcement.processPrefetch <= bounds.prefetchMax else {
            throw .invalidArgument("node prefetch must be 0 to \(bounds.prefetchMax)")
        }
        // A node describes itself once per connection; re-checked only when that changes.
        if nodes[announcement.name].map({ !$0.announcement.describesTheSame(as: announcement) }) ?? true {
            try validateNodeDescription(announcement)
        }
        if nodes[announcement.name] == nil {
            note(.nodeJoined(name: announcement.name, host: announcement.host, threads: announcement.threadSlots,
                             processes: announcement.processSlots))
        }
        var record = nodes[announcement.name] ?? NodeRecord(announcement: announcement, lastSeen: now)
        record.announcement = announcement
        record.lastSeen = now
        record.suspect = false
        nodes[announcement.name] = record
        var touched: Set<String> = []
        for outcome in results {
            if let session = apply(outcome, from: announcement.name, now: now) { touched.insert(session) }
        }
        if let running, ackedReplySeq > 0 {
            adopt(running, node: announcement.name, now: now)
            tellStale(running, node: announcement.name)
            reconcile(node: announcement.name, running: running, ackedReplySeq: ackedReplySeq)
        }
        for id in returned {
            if let abandoned = nodes[announcement.name]?.abandoned.first(where: { $0.id == id }) {
                release(abandoned, node: announcement.name)
                continue
            }
            guard nodes[announcement.name]?.leased[id] != nil else { continue }
            releaseLease(id, node: announcement.name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            task.lastError = "handed back by node \(announcement.name) (\(announcement.draining ? "draining" : "not started in time"))"
            task.state = .queued
            task.unrun += 1
            tasks[id] = task
            ready.push(id, priority: task.options.priority, key: task.classKey)
            if !announcement.draining {
                // Queued behind longer work than the node expected: its handler is not one to prefetch.
                noteRunTime(handler: task.classKey.handler, micros: bounds.prefetchRunMicrosMax * 10, replacing: true)
            }
        }
        if announcement.draining { nodes[announcement.name]?.drainRequested = nil }
        if leaving {
            note(.nodeLeft(name: announcement.name, handedBack: nodes[announcement.name]?.holding ?? 0))
            touched.formUnion(requeueLeases(ofNode: announcement.name, reason: "node \(announcement.name) left", now: now))
            nodes[announcement.name] = nil
        }
        return touched
    }

    /// After a restart: tasks restored as queued that `node` reports running (it got them
    /// before the coordinator died) stay with it instead of running a second time elsewhere.
    private mutating func adopt(_ running: Set<TaskID>, node name: String, now: Double) {
        // The node's leases are looked up once: `nodes[name]?.leased[id]` in the loop copied
        // the whole node record per running task (2.5% of the coordinator's CPU under W1,
        // with a node's prefetched tasks all "running"). The copy ends before the loop
        // mutates the leases, so they are not copied on write either.
        let unleased: [TaskID] = {
            guard let leased = nodes[name]?.leased else { return [] }
            return running.filter { leased[$0] == nil }
        }()
        for id in unleased {
            guard var task = tasks[id], task.restored, task.state == .queued else { continue }
            task.restored = false
            task.attempt += 1
            task.state = .leased(node: name, since: now)
            task.node = name
            tasks[id] = task
            ready.forget()
            for limit in task.options.uses { takeLimit(limit) }
            nodes[name]!.leased[id] = task.attempt
            // Sequence 0: from now on it is reconciled like any lease the node acknowledged.
            nodes[name]!.leaseSeq[id] = 0
            nodes[name]!.leasePool[id] = .thread
            nodes[name]!.adopted.insert(id)
            grantIfFits(id, options: task.options, node: name)
            leasedTotal += 1
            countJob(task.job, running: 1)
            adoptedTotal += 1
            if task.options.timeoutSeconds != nil { timedTasks.insert(id) }
        }
    }

    /// Attempts the node runs that are no longer its own (requeued while it was cut off, or
    /// run again elsewhere): it is told to stop them; their late results would be dropped.
    private mutating func tellStale(_ running: Set<TaskID>, node name: String) {
        guard let node = nodes[name] else { return }
        for id in running where node.leased[id] == nil && !node.abandoned.contains(where: { $0.id == id }) {
            if nodes[name]!.toCancel.insert(id).inserted { staleTold += 1 }
        }
    }

    /// The node's connection closed (its process died, or the network reset it): unless it
    /// pulls again within `suspectGraceSeconds`, `tick` declares it dead, well before the
    /// node timeout. A partition closes nothing, so there the node timeout still applies.
    public mutating func markSuspect(node name: String, now: Double) {
        guard let node = nodes[name] else { return }
        nodes[name]!.suspect = true
        nodes[name]!.lastSeen = min(node.lastSeen, now - bounds.nodeTimeoutSeconds + bounds.suspectGraceSeconds)
    }

    /// Asks `node` to drain (told on its next pull); false if no such node is known.
    public mutating func requestDrain(node name: String, deadlineSeconds: Double) -> Bool {
        guard nodes[name] != nil else { return false }
        nodes[name]!.drainRequested = deadlineSeconds
        return true
    }

    /// The drain deadline to tell `node`, if `colony drain` asked for one and it has not started draining.
    public func drainRequest(forNode name: String) -> Double? {
        nodes[name]?.drainRequested
    }

    /// Queues again (or fails, past `lostAttemptsMax`) every attempt `name` holds; returns
    /// the sessions that gained results.
    private mutating func requeueLeases(ofNode name: String, reason: String, now: Double) -> Set<String> {
        guard let node = nodes[name] else { return [] }
        var touched: Set<String> = []
        for abandoned in node.abandoned { release(abandoned, node: name) }
        for id in node.leased.keys.sorted() {
            releaseLease(id, node: name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            if task.runs < bounds.lostAttemptsMax {
                retriedTotal += 1
                task.lastError = reason
                task.state = .queued
                tasks[id] = task
                ready.push(id, priority: task.options.priority, key: task.classKey)
            } else if let session = finish(id, phase: .failed, error: "\(reason), \(task.attempt) attempts", failure: .lost, now: now) {
                touched.insert(session)
            }
        }
        return touched
    }

    /// Requeues attempts the node should have received (their reply is at or below the one it
    /// acknowledged) but does not run: their dispatch reply was lost in transit.
    private mutating func reconcile(node name: String, running: Set<TaskID>, ackedReplySeq: UInt64) {
        guard let node = nodes[name] else { return }
        for (id, seq) in node.leaseSeq where seq <= ackedReplySeq && !running.contains(id) {
            releaseLease(id, node: name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            lostDispatches += 1
            task.lastError = "dispatch to \(name) lost in transit"
            task.state = .queued
            task.unrun += 1
            tasks[id] = task
            ready.push(id, priority: task.options.priority, key: task.classKey)
        }
    }

    /// Numbers the next reply to a pull (every reply, with tasks or not). Call it once per
    /// reply, after `dispatch`: the tasks just dispatched travel under this number. One
    /// sequence for all nodes, so a node that rejoins never acknowledges numbers it was not given.
    public mutating func nextReplySeq() -> UInt64 {
        replySeq += 1
        return replySeq
    }

    /// Applies one reported outcome if it belongs to the attempt leased to `node`.
    private mutating func apply(_ reported: TaskOutcome, from node: String, now: Double) -> String? {
        let (abandoned, leasedAttempt, adopted) = Self.inPlace(&nodes[node]) { record -> (AbandonedLease?, UInt32?, Bool) in
            let abandoned = record?.abandoned.isEmpty == false
                ? record?.abandoned.first(where: { $0.id == reported.id && $0.attempt == reported.attempt }) : nil
            return (abandoned, record?.leased[reported.id], record?.adopted.contains(reported.id) == true)
        }
        if let abandoned {
            release(abandoned, node: node)
            staleDropped += 1
            return nil
        }
        // An adopted attempt (see `adopt`) was numbered before the restart: any number goes.
        guard (adopted && leasedAttempt != nil) || leasedAttempt == reported.attempt,
              let (retryable, handler) = Self.inPlace(&tasks[reported.id], { record in
                  record.map { ($0.options.retryOnError, $0.poolHandler ?? $0.handler) }
              }) else {
            staleDropped += 1
            return nil
        }
        releaseLease(reported.id, node: node)
        noteRunTime(handler: handler, micros: Double(reported.runMicros))
        figures.sample(runTime: Double(reported.runMicros) / 1e6)
        if reported.succeeded {
            if reported.output.count > bounds.resultBytesMax {
                return attemptFailed(reported.id, error: "output of \(reported.output.count) bytes exceeds the limit of \(bounds.resultBytesMax) bytes",
                                     failure: .refused, retryable: false, now: now)
            }
            for op in reported.counterOps where !op.name.isEmpty && op.name.utf8.count <= bounds.counterNameBytesMax {
                // The task has succeeded and cannot be refused: a change past the 64-bit range
                // leaves the counter at the bound rather than wrapping to the other sign.
                let (sum, overflow) = counters[op.name, default: 0].addingReportingOverflow(op.delta)
                counters[op.name] = overflow ? (op.delta > 0 ? .max : .min) : sum
                if journaling { journal.append(.counter(name: op.name, value: counters[op.name]!)) }
            }
            nodes[node]?.completed += 1
            return finish(reported.id, phase: .succeeded, output: reported.output, runMicros: reported.runMicros, now: now)
        }
        nodes[node]?.failed += 1
        var error = reported.error
        if error.utf8.count > bounds.errorBytesMax {
            // Cut on a character boundary, and say so.
            var cut = Substring(error)
            while cut.utf8.count > bounds.errorBytesMax - 32 { cut = cut.dropLast(max(1, (cut.utf8.count - bounds.errorBytesMax) / 4)) }
            error = cut + " ... (\(reported.error.utf8.count) bytes, cut)"
        }
        // Nodes before `TaskResult.failure` do not say the kind: read it from their words.
        let failure = reported.failure ?? .error
        return attemptFailed(reported.id, error: error, failure: failure, retryable: retryable, now: now)
    }

    /// Leases queued tasks to `name`, up to the free capacity of each of its pools, best first.
    public mutating func dispatch(toNode name: String, now: Double = 0) -> [DispatchedTask] {
        guard let node = nodes[name] else { return [] }
        nodes[name]!.heldBeforeDispatch = node.holdingWithCpus
        var free = PoolCounts(thread: node.freeSlots(.thread), process: node.freeSlots(.process), io: node.freeSlots(.io))
        // Capacity without the prefetch: all that tasks of long or unmeasured handlers may take.
        var slotsFree = PoolCounts(thread: node.freeSlots(.thread, prefetching: false), process: node.freeSlots(.process, prefetching: false),
                                   io: node.freeSlots(.io, prefetching: false))
        var handed: [DispatchedTask] = []
        // Only while tasks that ask for resources are queued: their fit, and the reservation
        // that keeps the oldest of them from starving.
        var fitting: FreeResources?
        var head: TaskID?
        if ready.resourceClasses > 0 && free.any {
            fitting = FreeResources(offer: node.announcement.resources, use: node.resourceUse)
            head = reserveForBlockedHead(node: node, free: &free, slotsFree: &slotsFree, fitting: &fitting!)
        }
        while free.any {
            guard let (id, pool, variant) = popReady(for: node, free: free, slotsFree: slotsFree, fitting: fitting) else { break }
            var handing = Self.inPlace(&self.tasks[id]) { record -> (DispatchedTask, submittedAt: Double, uses: [String], after: [TaskID], job: JobID) in
                record!.attempt += 1
                record!.restored = false
                record!.state = .leased(node: name, since: now)
                record!.node = name
                return (DispatchedTask(id: id, handler: record!.handler, input: record!.input, attempt: record!.attempt,
                                       timeoutSeconds: record!.options.timeoutSeconds, pool: pool),
                        record!.submittedAt, record!.options.uses, record!.options.after, record!.job)
            }
            countJob(handing.job, running: 1)
            if handing.0.attempt == 1 { figures.sample(queueWait: now - handing.submittedAt) }
            figures.dispatched += 1
            for parent in handing.after {
                handing.0.dependencies[parent] = Self.inPlace(&self.tasks[parent]) { $0?.output } ?? remembered[parent]?.output ?? []
            }
            for limit in handing.uses { takeLimit(limit) }
            Self.inPlace(&nodes[name]) { record in
                record!.leased[id] = handing.0.attempt
                record!.leaseSeq[id] = replySeq + 1
                record!.leasePool[id] = pool
                record!.countHolding(in: pool, 1)
            }
            leasedTotal += 1
            if handing.0.timeoutSeconds != nil { timedTasks.insert(id) }
            var cpus = 1
            if let variant {
                let grant = ResourceGrant(pool: pool, cpus: variant.cpus, resources: fitting!.take(variant))
                Self.inPlace(&nodes[name]) { record in
                    record!.grants[id] = grant
                    record!.resourceUse.add(grant)
                }
                handing.0.cpus = variant.cpus
                handing.0.resources = grant.resources
                cpus = variant.cpus
            }
            handed.append(handing.0)
            free[pool] = max(0, free[pool] - cpus)
            slotsFree[pool] = max(0, slotsFree[pool] - cpus)
            if id == head, free.any {
                head = reserveForBlockedHead(node: nodes[name]!, free: &free, slotsFree: &slotsFree, fitting: &fitting!)
            }
        }
        return handed
    }

    /// The best queued task `node` may take now (with the pool it would run in), taken off the queue.
    ///
    /// A function of its own so that the copies its closures capture (the task table among
    /// them) are gone before the caller mutates the table: a copy still alive there would make
    /// every dispatched task copy the whole table (copy-on-write), O(tasks) each.
    private mutating func popReady(for node: NodeRecord, free: PoolCounts, slotsFree: PoolCounts,
                                   fitting: FreeResources?) -> (TaskID, TaskPool, ResourceVariant?)? {
        let sizes = limitSizes
        let inUse = limitInUse
        let tasks = self.tasks
        let runMicros = handlerRunMicros
        let shortMax = bounds.prefetchRunMicrosMax
        let labels = node.announcement.labels
        let popped = ready.pop(
            eligible: { key in
                guard key.uses.allSatisfy({ (inUse[$0] ?? 0) < (sizes[$0] ?? 0) }),
                      key.labels.allSatisfy({ labels[$0.key] == $0.value }),
                      let pool = node.pool(for: key) else { return false }
                if !key.resources.isEmpty {
                    // Never prefetched: it must fit in free slots, beside its named resources.
                    return fitting.map { Self.firstFitting(key.resources, slotsFree: slotsFree[pool], in: $0) != nil } ?? false
                }
                return free[pool] > 0 && (slotsFree[pool] > 0 || (runMicros[key.handler] ?? .infinity) <= shortMax)
            },
            isLive: { tasks[$0]?.state == .queued })
        // The popped class was eligible, so it resolves to a pool with room on this node.
        guard let popped, let pool = node.pool(for: popped.key) else { return nil }
        if popped.key.resources.isEmpty { return (popped.id, pool, nil) }
        return (popped.id, pool, fitting.flatMap { Self.firstFitting(popped.key.resources, slotsFree: slotsFree[pool], in: $0) })
    }

    /// Ids the node must stop (cancelled or timed out since its last pull); forgets them.
    public mutating func takeCancellations(forNode name: String) -> [TaskID] {
        guard let cancels = nodes[name]?.toCancel, !cancels.isEmpty else { return [] }
        nodes[name]!.toCancel = []
        return cancels.sorted()
    }

    /// Time-driven rules: dead nodes lose their leases, back-offs end, attempts past their
    /// timeout fail, unfetched results expire. Returns the sessions that gained results.
    public mutating func tick(now: Double) -> Set<String> {
        var touched: Set<String> = []
        for (name, node) in nodes where now - node.lastSeen > bounds.nodeTimeoutSeconds {
            let reason = "node \(name) lost (not heard from for \(formatSeconds(bounds.nodeTimeoutSeconds)) s)"
            note(.nodeLost(name: name, reason: reason, tasksMoved: node.holding))
            touched.formUnion(requeueLeases(ofNode: name, reason: reason, now: now))
            nodes[name] = nil
        }
        for id in timedTasks {
            guard let task = tasks[id] else {
                timedTasks.remove(id)
                continue
            }
            switch task.state {
            case .backoff(let until) where until <= now:
                timedTasks.remove(id)
                var queued = task
                queued.state = .queued
                tasks[id] = queued
                backoffCount -= 1
                countJob(task.job, waiting: -1)
                ready.push(id, priority: task.options.priority, key: task.classKey)
            case .leased(let node, let since):
                if let timeout = task.options.timeoutSeconds, now - since > timeout + bounds.timeoutGraceSeconds {
                    // The node did not stop it in time: give up on the attempt and tell the node.
                    abandonLease(id, node: node)
                    let error = "timed out after \(formatSeconds(timeout)) s"
                    if let session = attemptFailed(id, error: error, failure: .timeout, retryable: task.options.retryOnError, now: now) {
                        touched.insert(session)
                    }
                }
            case .backoff:
                break
            default:
                timedTasks.remove(id)
            }
        }
        trimRemembered(now: now)
        touched.formUnion(abandonIdleSessions(now: now))
        for (session, record) in sessions {
            // Results are filed in time order: only a session whose oldest one expired needs work.
            guard let oldest = record.finished.first, now - oldest.finishedAt > bounds.resultTTLSeconds else { continue }
            let kept = record.finished.filter { now - $0.finishedAt <= bounds.resultTTLSeconds }
            if kept.count != record.finished.count {
                for expired in record.finished where now - expired.finishedAt > bounds.resultTTLSeconds { forget(expired.outcome.id) }
                resultsWaiting -= record.finished.count - kept.count
                sessions[session]!.finished = kept
                if kept.isEmpty && record.unfinished == 0 { sessions[session] = nil }
            }
        }
        return touched
    }

    // MARK: Results

    /// Hands out up to `max` finished results of `session` and forgets them.
    /// Returns them with the number of the session's tasks still unfinished.
    public mutating func takeResults(session: String, max: Int) -> (results: [TaskOutcome], unfinished: Int) {
        guard var record = sessions[session] else { return ([], 0) }
        let count = Swift.min(max, record.finished.count)
        let taken = record.finished.prefix(count).map(\.outcome)
        record.finished.removeFirst(count)
        for outcome in taken { forget(outcome.id) }
        resultsWaiting -= count
        if record.finished.isEmpty && record.unfinished == 0 {
            sessions[session] = nil
        } else {
            sessions[session] = record
        }
        return (taken, record.unfinished)
    }

    /// Hands out up to `max` finished results of `session` *without* forgetting them, after
    /// forgetting the `acked` ones (those the client confirmed from the previous fetch). A
    /// reply lost on the way is thus sent again by the next fetch; a client dedupes by id.
    public mutating func peekResults(session: String, max: Int, acked: [TaskID]) -> (results: [TaskOutcome], unfinished: Int) {
        guard var record = sessions[session] else { return ([], 0) }
        if !acked.isEmpty {
            let ackedSet = Set(acked)
            // Acknowledged results are the oldest ones as a rule: drop that prefix cheaply.
            var prefix = 0
            while prefix < record.finished.count && ackedSet.contains(record.finished[prefix].outcome.id) { prefix += 1 }
            var dropped = Array(record.finished.prefix(prefix))
            record.finished.removeFirst(prefix)
            if prefix < ackedSet.count {
                dropped += record.finished.filter { ackedSet.contains($0.outcome.id) }
                record.finished.removeAll { ackedSet.contains($0.outcome.id) }
            }
            sessions[session] = record
            for entry in dropped { forget(entry.outcome.id) }
            resultsWaiting -= dropped.count
        }
        let shown = record.finished.prefix(Swift.max(0, max)).map(\.outcome)
        if record.finished.isEmpty && record.unfinished == 0 { sessions[session] = nil }
        return (shown, record.unfinished)
    }

    /// Takes the result of one task, whichever session it belongs to; nil if it has not
    /// finished (or was fetched already).
    public mutating func takeResult(of id: TaskID) -> TaskOutcome? {
        guard let task = tasks[id], case .finished = task.state,
              let index = sessions[task.session]?.finished.firstIndex(where: { $0.outcome.id == id })
        else { return nil }
        let outcome = sessions[task.session]!.finished.remove(at: index).outcome
        resultsWaiting -= 1
        if sessions[task.session]!.finished.isEmpty && sessions[task.session]!.unfinished == 0 { sessions[task.session] = nil }
        forget(id)
        return outcome
    }

    /// Whether the coordinator still knows the task (unfinished, or its result unfetched).
    public func knows(_ id: TaskID) -> Bool { tasks[id] != nil }

    /// Whether `session` has results to hand out now.
    public func hasResults(session: String) -> Bool {
        !(sessions[session]?.finished.isEmpty ?? true)
    }

    /// Number of unfinished tasks of `session`.
    public func unfinished(session: String) -> Int {
        sessions[session]?.unfinished ?? 0
    }

    // MARK: Cancellation

    /// Cancels the tasks (and, in cascade, their dependents) that have not finished.
    /// A queued task is removed; a running one finishes as cancelled at once and its node is
    /// told on its next pull. Returns the sessions that gained results and how many tasks
    /// were cancelled.
    public mutating func cancel(_ ids: [TaskID], now: Double) -> (sessions: Set<String>, cancelled: Int) {
        var touched: Set<String> = []
        let before = cancelledTotal
        for id in ids {
            guard let task = tasks[id] else { continue }
            switch task.state {
            case .finished: continue
            case .leased(let node, _):
                abandonLease(id, node: node)
            case .queued:
                ready.forget()
            default:
                break
            }
            if let session = finish(id, phase: .cancelled, error: "cancelled", now: now) { touched.insert(session) }
        }
        return (touched, Int(cancelledTotal - before))
    }

    /// Cancels every unfinished task of `session`.
    public mutating func cancel(session: String, now: Double) -> (sessions: Set<String>, cancelled: Int) {
        let ids = tasks.filter { $0.value.session == session }.map(\.key).sorted()
        return cancel(ids, now: now)
    }

    // MARK: Counters

    /// The value of a counter (0 if it was never set).
    public func counter(_ name: String) -> Int64 { counters[name] ?? 0 }

    /// Adds `delta`; returns the new value.
    public mutating func addToCounter(_ name: String, _ delta: Int64, key: String? = nil) throws(Refusal) -> Int64 {
        try validateCounterName(name)
        if let done = try answered(key) { return done.value }
        let current = counters[name, default: 0]
        let (sum, overflow) = current.addingReportingOverflow(delta)
        if overflow {
            throw .invalidArgument("counter '\(name)' would overflow: \(current) + \(delta) is outside the 64-bit range (it keeps \(current))")
        }
        counters[name] = sum
        if journaling { journal.append(.counter(name: name, value: sum)) }
        if let key { rememberCounterKey(key, CounterReply(value: sum)) }
        return sum
    }

    /// Sets a counter; returns the previous value.
    public mutating func setCounter(_ name: String, _ value: Int64, key: String? = nil) throws(Refusal) -> Int64 {
        try validateCounterName(name)
        if let done = try answered(key) { return done.value }
        let previous = counters[name] ?? 0
        counters[name] = value
        if journaling { journal.append(.counter(name: name, value: value)) }
        if let key { rememberCounterKey(key, CounterReply(value: previous)) }
        return previous
    }

    /// Sets `new` if the counter is `expected`; returns whether it did and the value now.
    public mutating func compareAndSetCounter(_ name: String, expected: Int64, new: Int64, key: String? = nil) throws(Refusal) -> (swapped: Bool, value: Int64) {
        try validateCounterName(name)
        if let done = try answered(key) { return (done.swapped, done.value) }
        let current = counters[name] ?? 0
        let reply = current == expected ? CounterReply(value: new, swapped: true) : CounterReply(value: current, swapped: false)
        if reply.swapped {
            counters[name] = new
            if journaling { journal.append(.counter(name: name, value: new)) }
        }
        if let key { rememberCounterKey(key, reply) }
        return (reply.swapped, reply.value)
    }

    /// The reply a keyed change already got (a resend), or nil to apply it now.
    private func answered(_ key: String?) throws(Refusal) -> CounterReply? {
        guard let key else { return nil }
        guard !key.isEmpty, key.utf8.count <= bounds.sessionBytesMax else {
            throw .invalidArgument("a counter change's key must be 1 to \(bounds.sessionBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: key, "counter change key")
        return counterKeys[key]
    }

    /// Remembers a keyed change's reply (journaled with the change itself), forgetting the
    /// oldest beyond `counterKeysKept`.
    mutating func rememberCounterKey(_ key: String, _ reply: CounterReply, journaled: Bool = true) {
        if counterKeys.updateValue(reply, forKey: key) == nil { counterKeyOrder.append(key) }
        if journaled && journaling { journal.append(.counterKey(key: key, reply: reply)) }
        while counterKeys.count > bounds.counterKeysKept, counterKeyHead < counterKeyOrder.count {
            let oldest = counterKeyOrder[counterKeyHead]
            counterKeyHead += 1
            counterKeys[oldest] = nil
            if journaled && journaling { journal.append(.counterKeyForgotten(oldest)) }
        }
        if counterKeyHead > 4096 && counterKeyHead * 2 > counterKeyOrder.count {
            counterKeyOrder.removeFirst(counterKeyHead)
            counterKeyHead = 0
        }
    }

    /// All counters, by name.
    public var allCounters: [(name: String, value: Int64)] {
        counters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    private func validateCounterName(_ name: String) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.counterNameBytesMax else {
            throw .invalidArgument("counter name must be 1 to \(bounds.counterNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: name, "counter name")
    }

    // MARK: Cluster limits

    /// One more holder of `limit`; a new most-at-once is journaled (it survives a restart).
    private mutating func takeLimit(_ limit: String) {
        let inUse = limitInUse[limit, default: 0] + 1
        limitInUse[limit] = inUse
        if inUse > limitHighWater[limit] ?? 0 {
            limitHighWater[limit] = inUse
            if journaling { journal.append(.limitHighWater(name: limit, value: inUse)) }
        }
    }

    /// Creates or resizes a limit. Shrinking below the tasks holding it lets them finish;
    /// no new ones start until usage is under the new size.
    public mutating func setLimit(_ name: String, size: Int) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.counterNameBytesMax else {
            throw .invalidArgument("limit name must be 1 to \(bounds.counterNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: name, "limit name")
        // Size 0 would let no task that uses the limit ever run, silently: refused.
        guard size >= 1, size <= 1_000_000 else { throw .invalidArgument("limit size must be 1 to 1000000, not \(size)") }
        limitSizes[name] = size
        if journaling { journal.append(.limit(name: name, size: size)) }
    }

    public var allLimits: [LimitStatus] {
        limitSizes.keys.sorted().map {
            LimitStatus(name: $0, size: limitSizes[$0]!, inUse: limitInUse[$0] ?? 0, highWater: limitHighWater[$0] ?? 0)
        }
    }

    // MARK: Queries

    public func taskInfo(_ id: TaskID) -> TaskInfo? {
        guard let task = tasks[id] else { return nil }
        return TaskInfo(id: id, handler: task.handler, phase: phase(of: task), attempt: task.attempt, node: task.node,
                        error: task.lastError, priority: task.options.priority)
    }

    /// Tasks the coordinator still knows (unfinished, or finished and not yet fetched).
    public func taskInfos(phase wanted: TaskPhase? = nil, limit: Int = 1000) -> [TaskInfo] {
        var infos: [TaskInfo] = []
        for id in tasks.keys.sorted() {
            guard let info = taskInfo(id), wanted == nil || info.phase == wanted else { continue }
            infos.append(info)
            if infos.count == limit { break }
        }
        return infos
    }

    func phase(of task: TaskRecord) -> TaskPhase {
        switch task.state {
        case .waiting, .backoff: .waiting
        case .queued: .queued
        case .leased: .running
        case .finished(let phase): phase
        }
    }

    public func status(now: Double) -> ClusterStatus {
        let nodeList = nodes.values
            .sorted { $0.announcement.name < $1.announcement.name }
            .map {
                ClusterStatus.Node(announcement: $0.announcement, running: $0.leased.count, completed: $0.completed,
                                   failed: $0.failed, lastSeenSecondsAgo: Swift.max(0, now - $0.lastSeen))
                    .holding($0.resourceUse)
            }
        var status = ClusterStatus(nodes: nodeList, queued: ready.count, running: leasedTotal, succeeded: succeededTotal,
                                   failed: failedTotal, resultsWaiting: resultsWaiting, staleResultsDropped: staleDropped)
        status.cancelled = cancelledTotal
        status.retried = retriedTotal
        status.waiting = waitingCount + backoffCount
        status.limits = allLimits
        status.sessions = sessionStatuses(now: now)
        status.jobs = jobInfos(now: now, max: 50)
        status.jobsByState = jobsByState
        // Classes that ask for something (a handler, labels, a pool) that no live node offers
        // (with no node at all, nothing is counted: that is said apart).
        var reasons: [String: Int] = [:]
        if !nodes.isEmpty {
            for entry in ready.classes {
                if let reason = whyUnplaceable(entry.key) { reasons[reason, default: 0] += entry.count }
            }
        }
        status.unplaceable = reasons.values.reduce(0, +)
        status.unplaceableReasons = reasons.map { Unplaceable(reason: $0.key, count: $0.value) }
            .sorted { ($0.count, $1.reason) > ($1.count, $0.reason) }
        return status
    }

    /// What node `name` last described itself as (nil: not a live node).
    public func announcement(ofNode name: String) -> NodeAnnouncement? { nodes[name]?.announcement }

    /// Why no live node can run tasks of this class: the first of handler, labels and pool
    /// that none of them offers, or nil when one can.
    private func whyUnplaceable(_ key: ReadyQueue.ClassKey) -> String? {
        // A draining node takes no new task.
        let taking = nodes.values.filter { !$0.announcement.draining }
        if taking.contains(where: { node in
            guard key.labels.allSatisfy({ node.announcement.labels[$0.key] == $0.value }), let pool = node.pool(for: key) else { return false }
            return key.resources.isEmpty || node.firstPossible(key.resources, pool: pool) != nil
        }) { return nil }
        if taking.isEmpty { return "every node is draining" }
        let withHandler = taking.filter { $0.announcement.handlers.isEmpty || $0.announcement.handlers.contains(key.handler) }
        if withHandler.isEmpty { return "no node has the handler '\(key.handler)'" }
        let labelled = withHandler.filter { node in key.labels.allSatisfy { node.announcement.labels[$0.key] == $0.value } }
        if labelled.isEmpty {
            let wanted = key.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return "no node with the handler '\(key.handler)' has the label(s) \(wanted)"
        }
        let pool = switch key.pool {
        case .process: "the process pool"
        case .thread: "the thread pool"
        case .io: "the io pool"
        case .automatic: "any pool"
        }
        if !labelled.contains(where: { $0.pool(for: key) != nil }) {
            return "no node with the handler '\(key.handler)'\(key.labels.isEmpty ? "" : " and its labels") has slots in \(pool)"
        }
        return Self.resourcesReason(key.resources)
    }

    /// Adds a run time of `handler` to its average (or `replacing` it by at least `micros`).
    mutating func noteRunTime(handler: String, micros: Double, replacing: Bool = false) {
        if handlerRunMicros.count >= 10_000 && handlerRunMicros[handler] == nil { handlerRunMicros.removeAll() }
        if replacing {
            handlerRunMicros[handler] = Swift.max(handlerRunMicros[handler] ?? 0, micros)
        } else {
            handlerRunMicros[handler] = handlerRunMicros[handler].map { $0 * 0.8 + micros * 0.2 } ?? micros
        }
    }

    // MARK: Transitions

    /// Runs `body` on a record in place. A read through a dictionary's getter copies the
    /// whole record (a dozen retains and releases for a task or node record), which was most
    /// of the core's time per task; an `inout` access through `_modify` copies nothing.
    @inline(__always)
    static func inPlace<Record, Result>(_ record: inout Record?, _ body: (inout Record?) -> Result) -> Result {
        body(&record)
    }

    private mutating func releaseLease(_ id: TaskID, node: String) {
        // One lookup of the node, not one per table: this runs once per finished task.
        let released = Self.inPlace(&nodes[node]) { record -> Bool in
            guard record?.leased.removeValue(forKey: id) != nil else { return false }
            record!.adopted.remove(id)
            record!.leaseSeq[id] = nil
            if let pool = record!.leasePool.removeValue(forKey: id) { record!.countHolding(in: pool, -1) }
            if !record!.grants.isEmpty, let grant = record!.grants.removeValue(forKey: id) { record!.resourceUse.remove(grant) }
            return true
        }
        guard released else { return }
        leasedTotal -= 1
        let (uses, job) = Self.inPlace(&tasks[id]) { ($0?.options.uses ?? [], $0?.job ?? 0) }
        countJob(job, running: -1)
        for limit in uses { limitInUse[limit, default: 0] -= 1 }
    }

    private mutating func release(_ abandoned: AbandonedLease, node: String) {
        guard nodes[node]?.abandoned.remove(abandoned) != nil else { return }
        nodes[node]!.countHolding(in: abandoned.pool, -1)
        if let grant = abandoned.grant { nodes[node]!.resourceUse.remove(grant) }
        leasedTotal -= 1
        for limit in abandoned.uses { limitInUse[limit, default: 0] -= 1 }
    }

    /// The attempt stays on the node's books (slot and limits) until the node lets go of it;
    /// the node is told to stop it on its next pull.
    private mutating func abandonLease(_ id: TaskID, node: String) {
        guard let attempt = nodes[node]?.leased.removeValue(forKey: id), let task = tasks[id] else { return }
        nodes[node]!.leaseSeq[id] = nil
        nodes[node]!.adopted.remove(id)
        // Still holding its slot in the same pool, now as abandoned.
        let pool = nodes[node]!.leasePool.removeValue(forKey: id) ?? .thread
        // The grant moves with it: the node may still be using those ids.
        let grant = nodes[node]!.grants.removeValue(forKey: id)
        nodes[node]!.abandoned.insert(AbandonedLease(id: id, attempt: attempt, uses: task.options.uses, pool: pool, grant: grant))
        nodes[node]!.toCancel.insert(id)
        countJob(task.job, running: -1)
        // The task leaves the running state; the lease itself is counted on as abandoned.
        var updated = task
        updated.state = .queued  // replaced at once by the caller's transition (finish or back-off)
        tasks[id] = updated
    }

    /// A failed attempt: back off and retry if allowed and attempts remain, else fail for good.
    @discardableResult
    private mutating func attemptFailed(_ id: TaskID, error: String, failure: FailureKind, retryable: Bool, now: Double) -> String? {
        guard var task = tasks[id] else { return nil }
        task.lastError = error
        task.lastFailure = failure
        if retryable && task.runs < task.options.maxAttempts {
            retriedTotal += 1
            let backoff = Backoff(baseSeconds: bounds.retryBackoffBaseSeconds, maxSeconds: bounds.retryBackoffMaxSeconds, jitter: 0.5)
            let unit = Double(random.next() % 1_000_000) / 1_000_000
            task.state = .backoff(until: now + backoff.seconds(afterFailures: Int(task.attempt), unit: unit))
            backoffCount += 1
            countJob(task.job, waiting: 1)
            timedTasks.insert(id)
            tasks[id] = task
            return nil
        }
        tasks[id] = task
        return finish(id, phase: .failed, error: error, failure: failure, now: now)
    }

    /// Ends a task for good and files its result under its session. Returns the session.
    @discardableResult
    private mutating func finish(_ id: TaskID, phase: TaskPhase, output: [UInt8] = [], error: String = "", failure: FailureKind = .error,
                                 runMicros: UInt64 = 0, now: Double) -> String? {
        typealias Finished = (previous: State, session: String, handler: String, node: String, attempt: UInt32, lastError: String,
                              lastFailure: FailureKind, after: [TaskID], dependents: [TaskID], job: JobID, jobIndex: Int)
        let finished = Self.inPlace(&tasks[id]) { record -> Finished? in
            guard let previous = record?.state else { return nil }
            if case .finished = previous { return nil }
            record!.state = .finished(phase)
            record!.input = []
            record!.finishedAt = now
            if !error.isEmpty { record!.lastError = error }
            if phase == .failed { record!.lastFailure = failure }
            if phase == .succeeded { record!.output = output }
            return (previous, record!.session, record!.handler, record!.node, record!.attempt, record!.lastError, record!.lastFailure,
                    record!.options.after, record!.dependents, record!.job, record!.jobIndex)
        }
        guard let task = finished else { return nil }
        switch task.previous {
        case .waiting:
            waitingCount -= 1
            countJob(task.job, waiting: -1)
        case .backoff:
            backoffCount -= 1
            countJob(task.job, waiting: -1)
        default: break
        }
        switch phase {
        case .succeeded:
            succeededTotal += 1
        case .cancelled: cancelledTotal += 1
        default:
            failedTotal += 1
            figures.noteFailure(id: id, handler: task.handler, error: task.lastError, reason: task.lastFailure, node: task.node, at: now)
            note(.taskFailed(id: id, handler: task.handler, node: task.node, attempts: task.attempt, error: task.lastError, reason: task.lastFailure))
        }
        let outcome = TaskOutcome(id: id, attempt: task.attempt, succeeded: phase == .succeeded, output: output,
                                  error: phase == .succeeded ? "" : task.lastError, failure: phase == .failed ? task.lastFailure : nil,
                                  node: task.node, runMicros: runMicros,
                                  cancelled: phase == .cancelled)
        if journaling { journal.append(.finished(outcome)) }
        if task.job != 0 { jobTaskFinished(task.job, index: task.jobIndex, outcome: outcome, phase: phase, now: now) }
        sessions[task.session, default: SessionRecord()].finished.append(FinishedResult(outcome: outcome, finishedAt: now))
        sessions[task.session]!.unfinished -= 1
        resultsWaiting += 1
        // Parents: this task no longer needs their outputs.
        for parent in Set(task.after) { releaseReader(parent) }
        // Children: ready, or failed in cascade.
        for child in task.dependents {
            guard var dependent = tasks[child], case .waiting(let remaining) = dependent.state else { continue }
            if phase == .succeeded {
                if remaining <= 1 {
                    dependent.state = .queued
                    waitingCount -= 1
                    countJob(dependent.job, waiting: -1)
                    tasks[child] = dependent
                    ready.push(child, priority: dependent.options.priority, key: dependent.classKey)
                } else {
                    dependent.state = .waiting(remaining: remaining - 1)
                    tasks[child] = dependent
                }
            } else {
                let cascade: TaskPhase = phase == .cancelled ? .cancelled : .failed
                finish(child, phase: cascade, error: "dependency \(id) \(phase == .cancelled ? "was cancelled" : "failed")", failure: .dependency, now: now)
            }
        }
        return task.session
    }

    private mutating func releaseReader(_ parent: TaskID) {
        guard var record = tasks[parent] else { return }
        record.readers -= 1
        if record.readers <= 0 {
            tasks[parent] = record
            if case .finished = record.state, !(sessions[record.session]?.finished.contains { $0.outcome.id == parent } ?? false) {
                tasks[parent] = nil
                if let key = record.key { keys[key] = nil }
            }
        } else {
            tasks[parent] = record
        }
    }

    /// Drops a task whose result was handed out, unless dependents still read its output or
    /// its node still holds it.
    mutating func forget(_ id: TaskID) {
        guard let (readers, job) = Self.inPlace(&tasks[id], { record in record.map { ($0.readers, $0.job) } }) else { return }
        // Durably gone once handed out, even if dependents still read it in memory; a job
        // still held keeps its result (its row stays, marked delivered to the session).
        if journaling { journal.append(job != 0 && jobs[job] != nil ? .delivered(id) : .removed(id)) }
        if readers > 0 { return }
        guard let task = tasks.removeValue(forKey: id) else { return }
        if case .finished(let phase) = task.state {
            let output = task.output ?? []
            remembered[id] = Remembered(phase: phase, output: output, at: task.finishedAt, key: task.key)
            rememberedOrder.append(id)
            rememberedBytes += output.count
            trimRemembered(now: task.finishedAt)
        }
    }

    /// Forgets the oldest remembered tasks past their time or over the byte budget.
    mutating func trimRemembered(now: Double) {
        while rememberedHead < rememberedOrder.count {
            let id = rememberedOrder[rememberedHead]
            guard let entry = remembered[id] else {
                rememberedHead += 1
                continue
            }
            guard now - entry.at > bounds.finishedMemorySeconds || rememberedBytes > bounds.finishedMemoryBytesMax else { break }
            remembered[id] = nil
            if let key = entry.key { keys[key] = nil }
            rememberedBytes -= entry.output.count
            rememberedHead += 1
        }
        if rememberedHead > 4096 && rememberedHead * 2 > rememberedOrder.count {
            rememberedOrder.removeFirst(rememberedHead)
            rememberedHead = 0
        }
    }
}

/// SplitMix64: a small, fast, seedable generator, so that runs replay exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
