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
        /// Most bytes of inputs (and their dependencies' outputs) one pull reply carries: a
        /// node reads at most 16 MiB per message, so a reply is cut before that (a single task
        /// always goes, whatever its size).
        public var dispatchBytesMax = 8 << 20
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
        /// The slots its waiting tasks gave up when dispatch last looked at it: a task that
        /// stops waiting takes its slot back without a dispatch adding to the node.
        var waitingAtDispatch = PoolCounts()
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
            let waiting = announcement.waiting.isEmpty ? 0 : waitingSlots[pool]
            switch pool {
            case .process:
                return max(0, announcement.processSlots + (prefetching ? announcement.processPrefetch : 0) - holdingProcess - resourceUse.extraCpus.process + waiting)
            case .io: return max(0, announcement.ioSlots - holdingIO - resourceUse.extraCpus.io + waiting)
            case .thread, .automatic:
                return max(0, announcement.threadSlots + (prefetching ? announcement.prefetch : 0) - holdingThread - resourceUse.extraCpus.thread + waiting)
            }
        }

        /// Slots per pool given up by its leased tasks that wait for tasks they submitted
        /// (derived from the latest pull, so a lease that ends stops counting at once).
        var waitingSlots: PoolCounts {
            var slots = PoolCounts()
            for id in announcement.waiting {
                guard let pool = leasePool[id] else { continue }
                slots[pool] += grants[id]?.cpus ?? 1
            }
            return slots
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
        /// The session of a node's handlers (named by the node's pulls): its tasks are
        /// subtasks. Gone idle (the node is gone, and with it the attempts that would read
        /// the results), its tasks go on as their jobs' work and their results are dropped.
        var ofNodeHandlers = false
        /// Set when such a session went idle: results arriving are dropped.
        var resultsUnwanted = false
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
}
