/// A task's id: assigned by the coordinator, unique for its lifetime, increasing.
public typealias TaskID = UInt64

/// Which of a node's three pools runs a task.
public enum TaskPool: String, Sendable, Equatable, Hashable, CaseIterable {
    /// The handler's default pool (exec: process; fetch and sleep: io; the others: thread),
    /// or on a node that has no slots of that kind the thread pool (then the process pool).
    case automatic
    /// The node's thread pool: in its own process, cheapest; a crash takes the node down.
    case thread
    /// One of the node's long-lived child processes: a crash, leak or kill costs one child.
    case process
    /// Swift tasks on the node's cooperative pool, for handlers that mostly wait (fetches):
    /// a slot holds no thread while its handler waits, so a node has hundreds of them.
    case io
}

/// How a task is scheduled: priority, limits it uses, dependencies, retries, timeout, labels, pool.
public struct TaskOptions: Sendable, Equatable {
    /// Higher runs first; FIFO within a priority.
    public var priority: Int32 = 0
    /// Cluster limits (semaphores) the task holds while it runs.
    public var uses: [String] = []
    /// Tasks that must succeed before this one starts.
    public var after: [TaskID] = []
    /// Attempts in all when the handler fails and `retryOnError` is set (a lost node is
    /// always retried, up to the core's `lostAttemptsMax`).
    public var maxAttempts: Int = 1
    /// Whether a handler error is retried (with back-off) or final.
    public var retryOnError = false
    /// Longest an attempt may run; nil: no limit.
    public var timeoutSeconds: Double?
    /// Labels a node must have (all of them, with these values) to take the task.
    public var requiredLabels: [String: String] = [:]
    /// The pool it runs in.
    public var pool: TaskPool = .automatic
    /// What it needs of a node beyond one slot, as alternatives: the first that fits on the
    /// pulling node is used. Empty: one slot of its pool, no named resources.
    public var resources: [ResourceVariant] = []

    public init(priority: Int32 = 0, uses: [String] = [], after: [TaskID] = [], maxAttempts: Int = 1,
                retryOnError: Bool = false, timeoutSeconds: Double? = nil, requiredLabels: [String: String] = [:],
                pool: TaskPool = .automatic) {
        self.pool = pool
        self.priority = priority
        self.uses = uses
        self.after = after
        self.maxAttempts = maxAttempts
        self.retryOnError = retryOnError
        self.timeoutSeconds = timeoutSeconds
        self.requiredLabels = requiredLabels
    }
}

/// What a client asks to run.
public struct TaskSubmission: Sendable, Equatable {
    public var handler: String
    public var input: [UInt8]
    public var options: TaskOptions
    /// The handler whose default pool applies when `options.pool` is automatic (a `batch`
    /// task takes that of the handler it runs); nil: `handler`.
    public var poolHandler: String?
    /// Idempotency key: submitting a task with a key the coordinator knows returns the first
    /// task's id instead of creating another (a resent submit never runs a task twice).
    public var key: String?
    /// Submitted by a client that does not stay to fetch (`colony submit` without --wait, the
    /// HTTP API): its session is exempt from the session timeout.
    public var detached = false
    /// The job the core filed the task under (set by the core as it accepts the task, for
    /// the journal; what a submit carries here is ignored: it names its job with a `JobTarget`).
    public var job: JobID = 0
    public init(handler: String, input: [UInt8], options: TaskOptions = TaskOptions(), poolHandler: String? = nil, key: String? = nil,
                detached: Bool = false) {
        self.detached = detached
        self.poolHandler = poolHandler
        self.key = key
        self.handler = handler
        self.input = input
        self.options = options
    }
}

/// A change to a named counter made by a task; applied only with that attempt's success.
public struct CounterOp: Sendable, Equatable {
    public var name: String
    public var delta: Int64
    public init(name: String, delta: Int64) {
        self.name = name
        self.delta = delta
    }
}

/// One attempt at a task, handed to a node.
public struct DispatchedTask: Sendable, Equatable {
    public var id: TaskID
    public var handler: String
    public var input: [UInt8]
    public var attempt: UInt32
    /// Outputs of the task's dependencies, for its handler to read.
    public var dependencies: [TaskID: [UInt8]]
    /// Longest the attempt may run (nil: no limit).
    public var timeoutSeconds: Double?
    /// The pool chosen on the node (never `automatic`).
    public var pool: TaskPool
    /// Slots of `pool` it holds.
    public var cpus = 1
    /// The named resources it was given, with their ids.
    public var resources: [AssignedResource] = []
    /// The job it belongs to (tasks it submits join it).
    public var job: JobID = 0
    public init(id: TaskID, handler: String, input: [UInt8], attempt: UInt32, dependencies: [TaskID: [UInt8]] = [:], timeoutSeconds: Double? = nil,
                pool: TaskPool = .thread) {
        self.pool = pool
        self.id = id
        self.handler = handler
        self.input = input
        self.attempt = attempt
        self.dependencies = dependencies
        self.timeoutSeconds = timeoutSeconds
    }
}

/// What kind of failure ended a task or an attempt: the `reason` label of
/// `colony_tasks_failed_total`, and what a client can branch on. Said by whoever saw it
/// happen (the node, or the coordinator), never guessed from the error's words: a failure that
/// does not say its kind is an `error`.
public enum FailureKind: String, Sendable, CaseIterable {
    /// The handler (or the shell command) failed.
    case error
    case timeout
    /// The process-pool child died mid-task.
    case crashed
    /// The process-pool child ran out of its memory limit.
    case memory
    /// The node running it was lost or left, too often.
    case lost
    case unknownHandler = "unknown_handler"
    /// A dependency failed or was cancelled.
    case dependency
    /// Refused by a limit (an output over the size limit) or by the node's setup.
    case refused
    /// Stopped by a cancellation.
    case cancelled
}

/// How one attempt ended, as reported by the node that ran it.
public struct TaskOutcome: Sendable, Equatable {
    public var id: TaskID
    public var attempt: UInt32
    public var succeeded: Bool
    public var output: [UInt8]
    public var error: String
    /// The failure's kind when not `succeeded` (nil: not said, e.g. by an older node).
    public var failure: FailureKind?
    public var node: String
    public var runMicros: UInt64
    /// Counter changes the attempt made; applied together with its success, never otherwise.
    public var counterOps: [CounterOp]
    /// Set by the coordinator when the task ended by cancellation.
    public var cancelled: Bool
    public init(id: TaskID, attempt: UInt32, succeeded: Bool, output: [UInt8] = [], error: String = "", failure: FailureKind? = nil,
                node: String, runMicros: UInt64 = 0, counterOps: [CounterOp] = [], cancelled: Bool = false) {
        self.id = id
        self.attempt = attempt
        self.succeeded = succeeded
        self.output = output
        self.error = error
        self.failure = failure
        self.node = node
        self.runMicros = runMicros
        self.counterOps = counterOps
        self.cancelled = cancelled
    }
}

/// What a node measures of itself and sends with its pulls (totals since it started).
public struct NodeFigures: Sendable, Equatable {
    public var rssBytes: UInt64 = 0
    /// Resident memory of its process-pool children, together.
    public var childrenRSSBytes: UInt64 = 0
    /// Process-pool children started (first ones and replacements).
    public var childrenStarted: UInt64 = 0
    public var succeeded: UInt64 = 0
    public var failed: UInt64 = 0
    public var failedPulls: UInt64 = 0
    public init() {}
}

/// Who a node says it is, sent with every pull.
public struct NodeAnnouncement: Sendable, Equatable {
    public var name: String
    public var host: String
    public var threadSlots: Int
    public var handlers: [String]
    public var pid: Int
    /// Tasks the node will queue beyond its slots (asked for only while its tasks are short).
    public var prefetch: Int
    /// What the node offers (`gpu=1`); tasks may require labels.
    public var labels: [String: String]
    /// Slots of the process pool, and tasks it will queue beyond them.
    public var processSlots: Int
    public var processPrefetch: Int
    /// Handlers whose default pool is the process pool on this node.
    public var processHandlers: Set<String>
    /// Slots of the io pool (it asks for no prefetch: its slots are many and its tasks wait).
    public var ioSlots: Int
    /// Handlers whose default pool is the io pool on this node.
    public var ioHandlers: Set<String>
    /// The node is draining: it gets no new tasks.
    public var draining = false
    /// Named resources it offers beyond its slots (`gpus=0,1`, `mem=64G`).
    public var resources: [String: ResourceOffer] = [:]
    /// Its latest figures, if it sends them.
    public var figures: NodeFigures?
    /// Its tasks that wait for tasks they submitted: they hold no slot while they wait.
    public var waiting: Set<TaskID> = []

    /// The same node, as far as what it describes once per connection goes (not prefetch,
    /// draining, figures or waiting tasks, which every pull carries).
    public func describesTheSame(as other: NodeAnnouncement) -> Bool {
        name == other.name && host == other.host && threadSlots == other.threadSlots && pid == other.pid
            && processSlots == other.processSlots && handlers == other.handlers && processHandlers == other.processHandlers
            && labels == other.labels && ioSlots == other.ioSlots && ioHandlers == other.ioHandlers && resources == other.resources
    }

    /// This node's description with the parts every pull carries taken from `brief`.
    public func updated(by brief: NodeAnnouncement) -> NodeAnnouncement {
        var node = self
        node.prefetch = brief.prefetch
        node.processPrefetch = brief.processPrefetch
        node.draining = brief.draining
        node.figures = brief.figures
        node.waiting = brief.waiting
        return node
    }
    public init(name: String, host: String, threadSlots: Int, handlers: [String] = [], pid: Int = 0, prefetch: Int = 0,
                labels: [String: String] = [:], processSlots: Int = 0, processPrefetch: Int = 0, processHandlers: Set<String> = [],
                ioSlots: Int = 0, ioHandlers: Set<String> = [], draining: Bool = false) {
        self.draining = draining
        self.ioSlots = ioSlots
        self.ioHandlers = ioHandlers
        self.processSlots = processSlots
        self.processPrefetch = processPrefetch
        self.processHandlers = processHandlers
        self.name = name
        self.host = host
        self.threadSlots = threadSlots
        self.handlers = handlers
        self.pid = pid
        self.prefetch = prefetch
        self.labels = labels
    }
}

/// A snapshot of the cluster for `colony status`.
public struct ClusterStatus: Sendable, Equatable {
    /// One node as the coordinator sees it.
    public struct Node: Sendable, Equatable {
        public var announcement: NodeAnnouncement
        public var running: Int
        public var completed: UInt64
        public var failed: UInt64
        public var lastSeenSecondsAgo: Double
        /// Named resources its attempts hold now (fixed point), by name.
        public var resourcesHeld: [String: UInt64] = [:]
        public init(announcement: NodeAnnouncement, running: Int, completed: UInt64, failed: UInt64, lastSeenSecondsAgo: Double) {
            self.announcement = announcement
            self.running = running
            self.completed = completed
            self.failed = failed
            self.lastSeenSecondsAgo = lastSeenSecondsAgo
        }
    }
    public var nodes: [Node]
    public var queued: Int
    public var running: Int
    public var succeeded: UInt64
    public var failed: UInt64
    public var resultsWaiting: Int
    public var staleResultsDropped: UInt64
    public var cancelled: UInt64 = 0
    public var retried: UInt64 = 0
    /// Tasks waiting for dependencies or a retry back-off.
    public var waiting: Int = 0
    /// Queued tasks that no live node can take (their handler, labels or pool match none).
    public var unplaceable: Int = 0
    /// Why, one entry per reason, most tasks first.
    public var unplaceableReasons: [Unplaceable] = []
    /// Each limit: size, tasks holding it now, and the most that ever held it at once.
    public var limits: [LimitStatus] = []
    /// Sessions with unfinished tasks or results waiting, most results waiting first.
    public var sessions: [SessionStatus] = []
    /// Why the coordinator cannot write its journal, while it refuses changes (nil: it takes them).
    public var journalFailure: String?
    /// Node jobs the coordinator allocated itself (nil: it does not allocate).
    public var allocation: AllocationStatus?
    /// The newest jobs (at most 50), without their failures.
    public var jobs: [JobInfo] = []
    /// Every job held, counted by state.
    public var jobsByState: [JobState: Int] = [:]
    public init(nodes: [Node], queued: Int, running: Int, succeeded: UInt64, failed: UInt64, resultsWaiting: Int, staleResultsDropped: UInt64) {
        self.nodes = nodes
        self.queued = queued
        self.running = running
        self.succeeded = succeeded
        self.failed = failed
        self.resultsWaiting = resultsWaiting
        self.staleResultsDropped = staleResultsDropped
    }
}

/// Node jobs a coordinator submitted to a batch system (`--allocate slurm`).
public struct AllocationStatus: Sendable, Equatable {
    public var system: String
    /// Submitted, their node not joined yet.
    public var requested: Int
    /// Their node joined.
    public var running: Int
    public var max: Int
    public var submitted: UInt64
    public init(system: String, requested: Int, running: Int, max: Int, submitted: UInt64) {
        self.system = system
        self.requested = requested
        self.running = running
        self.max = max
        self.submitted = submitted
    }
}

/// Queued tasks that no live node can run, and why.
public struct Unplaceable: Sendable, Equatable {
    public var reason: String
    public var count: Int
    public init(reason: String, count: Int) {
        self.reason = reason
        self.count = count
    }
}

/// A cluster limit as the coordinator sees it.
public struct LimitStatus: Sendable, Equatable {
    public var name: String
    public var size: Int
    public var inUse: Int
    public var highWater: Int
    public init(name: String, size: Int, inUse: Int, highWater: Int) {
        self.name = name
        self.size = size
        self.inUse = inUse
        self.highWater = highWater
    }
}

/// One client session as the coordinator sees it.
public struct SessionStatus: Sendable, Equatable {
    public var session: String
    public var unfinished: Int
    public var resultsWaiting: Int
    /// Seconds since the session's client was last heard from (submit, fetch, cancel).
    public var idleSeconds: Double
    /// Exempt from the session timeout.
    public var detached: Bool
    public init(session: String, unfinished: Int, resultsWaiting: Int, idleSeconds: Double, detached: Bool) {
        self.session = session
        self.unfinished = unfinished
        self.resultsWaiting = resultsWaiting
        self.idleSeconds = idleSeconds
        self.detached = detached
    }
}
