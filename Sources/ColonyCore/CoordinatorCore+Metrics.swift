import ColonyModel

/// What the coordinator's metrics, `colony top` and the dashboard read from the core: exact
/// task counts, failures by reason, the latest failures, and latency samples.
extension CoordinatorCore {
    /// Something worth one log line: nodes coming and going, tasks failing for good. Nothing
    /// for a task that succeeds.
    public enum Event: Sendable, Equatable {
        case nodeJoined(name: String, host: String, threads: Int, processes: Int)
        case nodeLeft(name: String, handedBack: Int)
        case nodeLost(name: String, reason: String, tasksMoved: Int)
        case taskFailed(id: TaskID, handler: String, node: String, attempts: UInt32, error: String, reason: FailureKind)
        /// A session's client was not heard from for the session timeout.
        case sessionAbandoned(session: String, idleSeconds: Double, tasksCancelled: Int, resultsDropped: Int)
        /// A job was forgotten (`colony job forget`, or by the jobs' bounds).
        case jobForgotten(id: JobID, tasks: Int)
    }

    mutating func note(_ event: Event) {
        if recordingEvents { events.append(event) }
    }

    /// The events since the last call, oldest first.
    public mutating func takeEvents() -> [Event] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    /// A failed task, for "recent failures".
    public struct FailureNote: Sendable, Equatable {
        public var id: TaskID
        public var handler: String
        public var error: String
        public var node: String
        /// Seconds since the coordinator started.
        public var at: Double
        /// The failure's kind, as said by the node or the coordinator.
        public var reason: FailureKind
    }

    /// The running tallies behind the metrics.
    struct Figures: Sendable {
        static let samplesMax = 100_000
        static let recentFailuresMax = 20
        var failedByReason: [FailureKind: UInt64] = [:]
        var recentFailures: [FailureNote] = []
        var queueWaits: [Double] = []
        var runTimes: [Double] = []
        /// Samples not kept because nobody drained them in time (no scrape for a long while).
        var samplesDropped: UInt64 = 0
        /// Attempts handed to nodes (a retried task counts once per attempt).
        var dispatched: UInt64 = 0

        mutating func sample(queueWait seconds: Double) {
            if queueWaits.count < Self.samplesMax { queueWaits.append(max(0, seconds)) } else { samplesDropped += 1 }
        }

        mutating func sample(runTime seconds: Double) {
            if runTimes.count < Self.samplesMax { runTimes.append(max(0, seconds)) } else { samplesDropped += 1 }
        }

        mutating func noteFailure(id: TaskID, handler: String, error: String, reason: FailureKind, node: String, at: Double) {
            failedByReason[reason, default: 0] += 1
            recentFailures.append(FailureNote(id: id, handler: handler, error: String(error.prefix(500)), node: node, at: at, reason: reason))
            if recentFailures.count > Self.recentFailuresMax { recentFailures.removeFirst(recentFailures.count - Self.recentFailuresMax) }
        }
    }

    /// Tasks by where they are now, counted one by one (exact; costs a pass over the tasks
    /// the coordinator holds, so it is for scrapes, not for every request).
    public struct TaskCounts: Sendable, Equatable {
        /// Accepted by this run of the coordinator (restored unfinished tasks included).
        public var submitted: UInt64 = 0
        public var succeeded: UInt64 = 0
        public var failed: UInt64 = 0
        public var cancelled: UInt64 = 0
        public var retried: UInt64 = 0
        /// Attempts handed to nodes.
        public var dispatched: UInt64 = 0
        /// Queued tasks by priority.
        public var queuedByPriority: [Int32: Int] = [:]
        /// Waiting for dependencies or a retry's back-off.
        public var waiting = 0
        public var queued = 0
        public var running = 0
        public var failedByReason: [FailureKind: UInt64] = [:]
        public var staleResultsDropped: UInt64 = 0
        public var resultsWaiting = 0
    }

    public func taskCounts() -> TaskCounts {
        var counts = TaskCounts(submitted: submittedTotal, succeeded: succeededTotal, failed: failedTotal,
                                cancelled: cancelledTotal, retried: retriedTotal, dispatched: figures.dispatched)
        for task in tasks.values {
            switch task.state {
            case .waiting, .backoff: counts.waiting += 1
            case .queued:
                counts.queued += 1
                counts.queuedByPriority[task.options.priority, default: 0] += 1
            case .leased: counts.running += 1
            case .finished: break
            }
        }
        counts.failedByReason = figures.failedByReason
        counts.staleResultsDropped = staleDropped
        counts.resultsWaiting = resultsWaiting
        return counts
    }

    /// Tasks finished for good (succeeded, failed or cancelled) since the coordinator started.
    public var finishedTotal: UInt64 { succeededTotal + failedTotal + cancelledTotal }

    /// The latest failures, oldest first.
    public var recentFailures: [FailureNote] { figures.recentFailures }

    /// Hands out the latency samples gathered since the last call (seconds): time from submit
    /// to first start, and run time as nodes report it.
    public mutating func takeLatencySamples() -> (queueWaits: [Double], runTimes: [Double]) {
        defer {
            figures.queueWaits.removeAll(keepingCapacity: true)
            figures.runTimes.removeAll(keepingCapacity: true)
        }
        return (figures.queueWaits, figures.runTimes)
    }

    /// Busy and total slots of each node, by pool.
    public struct NodeSlots: Sendable, Equatable {
        public var name: String
        public var threadSlots: Int
        public var threadBusy: Int
        public var processSlots: Int
        public var processBusy: Int
        public var ioSlots: Int
        public var ioBusy: Int
        /// Slots lent by tasks waiting for their subtasks, by pool (not busy).
        public var threadWaiting = 0
        public var processWaiting = 0
        public var ioWaiting = 0
    }

    public var nodeSlots: [NodeSlots] {
        nodes.values.sorted { $0.announcement.name < $1.announcement.name }.map { node in
            let waiting = node.announcement.waiting.isEmpty ? PoolCounts() : node.waitingSlots
            var slots = NodeSlots(name: node.announcement.name, threadSlots: node.announcement.threadSlots,
                                  threadBusy: min(max(0, node.holdingThread - waiting.thread), node.announcement.threadSlots),
                                  processSlots: node.announcement.processSlots,
                                  processBusy: min(max(0, node.holdingProcess - waiting.process), node.announcement.processSlots),
                                  ioSlots: node.announcement.ioSlots, ioBusy: min(max(0, node.holdingIO - waiting.io), node.announcement.ioSlots))
            (slots.threadWaiting, slots.processWaiting, slots.ioWaiting) = (waiting.thread, waiting.process, waiting.io)
            return slots
        }
    }
}
