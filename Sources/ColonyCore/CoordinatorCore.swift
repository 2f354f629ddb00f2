/// The coordinator's decisions, as a pure state machine: no sockets, no clock, no disk.
///
/// Time comes in as `now` (seconds on any monotonic scale). The shell around it
/// (`ColonyCoordinator`) turns messages into calls and parks requests that must wait.
///
/// Rules it keeps:
/// - Tasks are handed out FIFO, each dispatch an attempt leased to one node.
/// - A node never holds more leased tasks than its slots plus the prefetch it asked for
///   (pull-based balancing: the coordinator only answers pulls, with at most the node's free
///   capacity).
/// - The first result of an attempt that is leased to the reporting node is applied; any
///   other (late, duplicated, from the wrong node) is dropped and counted, never applied twice.
/// - Results are kept for their session until fetched.
public struct CoordinatorCore: Sendable {
    /// Bounds on what one call may carry.
    public struct Limits: Sendable {
        public var tasksPerSubmitMax = 100_000
        public var handlerNameBytesMax = 256
        public var sessionBytesMax = 256
        public var nodeNameBytesMax = 256
        public var threadSlotsMax = 4096
        public var prefetchMax = 4096
        public init() {}
    }

    /// Why a request was refused.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case invalidArgument(String)
        public var description: String {
            switch self {
            case .invalidArgument(let why): why
            }
        }
    }

    private enum TaskState: Sendable {
        case queued
        case leased(node: String)
        case finished
    }

    private struct TaskRecord: Sendable {
        var handler: String
        var input: [UInt8]
        var session: String
        var attempt: UInt32
        var state: TaskState
    }

    private struct NodeRecord: Sendable {
        var announcement: NodeAnnouncement
        var leased: Set<TaskID> = []
        var completed: UInt64 = 0
        var failed: UInt64 = 0
        var lastSeen: Double
        /// Slots plus the prefetch the node asked for, minus what it already holds.
        var freeSlots: Int { max(0, announcement.threadSlots + announcement.prefetch - leased.count) }
    }

    private struct SessionRecord: Sendable {
        var finished: [TaskOutcome] = []
        var unfinished = 0
    }

    public let limits: Limits
    private var nextID: TaskID = 1
    private var tasks: [TaskID: TaskRecord] = [:]
    private var ready = TaskQueue()
    private var nodes: [String: NodeRecord] = [:]
    private var sessions: [String: SessionRecord] = [:]
    private var succeededTotal: UInt64 = 0
    private var failedTotal: UInt64 = 0
    private var staleDropped: UInt64 = 0
    private var leasedTotal = 0
    private var resultsWaiting = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Tasks waiting for a node.
    public var queuedCount: Int { ready.count }

    /// Queues `submissions` for `session`; returns their ids in order.
    /// Refuses the whole batch (changing nothing) if any part is invalid.
    public mutating func submit(_ submissions: [TaskSubmission], session: String) throws(Refusal) -> [TaskID] {
        guard submissions.count <= limits.tasksPerSubmitMax else {
            throw .invalidArgument("a submit carries \(submissions.count) tasks; the limit is \(limits.tasksPerSubmitMax)")
        }
        guard !session.isEmpty, session.utf8.count <= limits.sessionBytesMax else {
            throw .invalidArgument("session id must be 1 to \(limits.sessionBytesMax) bytes")
        }
        for (index, submission) in submissions.enumerated() {
            let bytes = submission.handler.utf8.count
            guard bytes > 0, bytes <= limits.handlerNameBytesMax else {
                throw .invalidArgument("task \(index): handler name must be 1 to \(limits.handlerNameBytesMax) bytes")
            }
        }
        var ids: [TaskID] = []
        ids.reserveCapacity(submissions.count)
        for submission in submissions {
            let id = nextID
            nextID += 1
            tasks[id] = TaskRecord(handler: submission.handler, input: submission.input, session: session, attempt: 0, state: .queued)
            ready.push(id)
            ids.append(id)
        }
        sessions[session, default: SessionRecord()].unfinished += submissions.count
        return ids
    }

    /// Records that `node` pulled at `now` and applies the results it carried.
    /// Returns the sessions that gained results (their waiting fetches can be answered).
    public mutating func report(node announcement: NodeAnnouncement, results: [TaskOutcome], now: Double) throws(Refusal) -> Set<String> {
        guard !announcement.name.isEmpty, announcement.name.utf8.count <= limits.nodeNameBytesMax else {
            throw .invalidArgument("node name must be 1 to \(limits.nodeNameBytesMax) bytes")
        }
        guard announcement.threadSlots >= 0, announcement.threadSlots <= limits.threadSlotsMax else {
            throw .invalidArgument("node slots must be 0 to \(limits.threadSlotsMax)")
        }
        guard announcement.prefetch >= 0, announcement.prefetch <= limits.prefetchMax else {
            throw .invalidArgument("node prefetch must be 0 to \(limits.prefetchMax)")
        }
        var record = nodes[announcement.name] ?? NodeRecord(announcement: announcement, lastSeen: now)
        record.announcement = announcement
        record.lastSeen = now
        var touched: Set<String> = []
        for var outcome in results {
            guard record.leased.contains(outcome.id),
                  var task = tasks[outcome.id],
                  task.attempt == outcome.attempt,
                  case .leased(let holder) = task.state, holder == announcement.name
            else {
                staleDropped += 1
                continue
            }
            record.leased.remove(outcome.id)
            leasedTotal -= 1
            outcome.node = announcement.name
            if outcome.succeeded {
                succeededTotal += 1
                record.completed += 1
            } else {
                failedTotal += 1
                record.failed += 1
            }
            task.state = .finished
            task.input = []
            tasks[outcome.id] = task
            sessions[task.session, default: SessionRecord()].finished.append(outcome)
            sessions[task.session]!.unfinished -= 1
            resultsWaiting += 1
            touched.insert(task.session)
        }
        nodes[announcement.name] = record
        return touched
    }

    /// Leases up to the node's free capacity of queued tasks to it, FIFO.
    public mutating func dispatch(toNode name: String) -> [DispatchedTask] {
        guard var record = nodes[name] else { return [] }
        var handed: [DispatchedTask] = []
        var free = record.freeSlots
        while free > 0, let id = ready.pop() {
            guard var task = tasks[id], case .queued = task.state else { continue }
            task.attempt += 1
            task.state = .leased(node: name)
            tasks[id] = task
            record.leased.insert(id)
            leasedTotal += 1
            handed.append(DispatchedTask(id: id, handler: task.handler, input: task.input, attempt: task.attempt))
            free -= 1
        }
        nodes[name] = record
        return handed
    }

    /// Free capacity of a known node (0 for an unknown one).
    public func freeSlots(ofNode name: String) -> Int {
        nodes[name]?.freeSlots ?? 0
    }

    /// Hands out up to `max` finished results of `session` and forgets them.
    /// Returns them with the number of the session's tasks still unfinished.
    public mutating func takeResults(session: String, max: Int) -> (results: [TaskOutcome], unfinished: Int) {
        guard var record = sessions[session] else { return ([], 0) }
        let count = Swift.min(max, record.finished.count)
        let taken = Array(record.finished.prefix(count))
        record.finished.removeFirst(count)
        for outcome in taken { tasks[outcome.id] = nil }
        resultsWaiting -= count
        if record.finished.isEmpty && record.unfinished == 0 {
            sessions[session] = nil
        } else {
            sessions[session] = record
        }
        return (taken, record.unfinished)
    }

    /// Whether `session` has results to hand out now.
    public func hasResults(session: String) -> Bool {
        !(sessions[session]?.finished.isEmpty ?? true)
    }

    /// Number of unfinished tasks of `session`.
    public func unfinished(session: String) -> Int {
        sessions[session]?.unfinished ?? 0
    }

    public func status(now: Double) -> ClusterStatus {
        let nodeList = nodes.values
            .sorted { $0.announcement.name < $1.announcement.name }
            .map {
                ClusterStatus.Node(announcement: $0.announcement, running: $0.leased.count, completed: $0.completed,
                                   failed: $0.failed, lastSeenSecondsAgo: Swift.max(0, now - $0.lastSeen))
            }
        return ClusterStatus(nodes: nodeList, queued: ready.count, running: leasedTotal, succeeded: succeededTotal,
                             failed: failedTotal, resultsWaiting: resultsWaiting, staleResultsDropped: staleDropped)
    }
}
