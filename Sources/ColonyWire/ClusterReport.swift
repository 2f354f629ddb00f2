import ColonyModel
import Foundation

/// The cluster at a glance, as JSON: what `colony status --json` prints, the HTTP API's
/// `/api/v1/status` returns and the dashboard draws. One model, so the three always agree.
///
/// Task counts are exact: `submitted = succeeded + failed + cancelled + waiting + queued + running`.
public struct ClusterReport: Codable, Sendable, Equatable {
    /// A node: its slots, what it runs, and what it reports of itself.
    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var host: String
        public var threads: Int
        public var processes: Int
        public var ioSlots: Int
        /// Tasks leased to the node (in all pools), and those of them in the process pool and
        /// in the io pool: running, or queued on the node behind its busy slots (prefetched).
        public var running: Int
        public var runningProcess: Int
        public var runningIO: Int
        /// Slots busy, per pool, and the leased tasks beyond them (queued on the node).
        public var busyThreads: Int
        public var busyProcesses: Int
        public var busyIO: Int
        public var prefetched: Int
        public var completed: UInt64
        public var failed: UInt64
        public var lastSeenS: Double
        public var draining: Bool
        public var handlers: [String]
        /// What the node reports of itself (absent for nodes that do not).
        public var rssBytes: UInt64?
        public var childrenRssBytes: UInt64?
        public var childrenStarted: UInt64?
        /// Named resources held of offered (`gpus 1/2 mem 6G/16G`); absent for a node that offers none.
        public var resources: String? = nil
    }

    /// Node jobs the coordinator submitted to a batch system.
    public struct Allocation: Codable, Sendable, Equatable {
        public var system: String
        public var requested: Int
        public var running: Int
        public var max: Int
        public var submitted: UInt64
    }

    /// Queued tasks that no live node can run, and why.
    public struct UnplaceableTasks: Codable, Sendable, Equatable {
        public var reason: String
        public var count: Int
    }

    /// A cluster limit (semaphore): size, holders now, most holders at once.
    public struct Limit: Codable, Sendable, Equatable {
        public var name: String
        public var size: Int
        public var inUse: Int
        public var highWater: Int
    }

    /// A task that failed for good, with its reason's class.
    public struct Failure: Codable, Sendable, Equatable {
        public var id: UInt64
        public var handler: String
        public var error: String
        public var node: String
        public var secondsAgo: Double
        public var reason: String
    }

    /// One point of the throughput chart.
    public struct Point: Codable, Sendable, Equatable {
        public var secondsAgo: Double
        public var perSecond: Double
    }

    /// A job, compactly (the newest 50).
    public struct Job: Codable, Sendable, Equatable {
        public var id: UInt64
        public var name: String?
        public var state: String
        public var finished: Int
        public var total: Int
        public var failed: Int
        public var ageS: Double
    }

    public var uptimeS: Double
    public var submitted: UInt64
    public var succeeded: UInt64
    public var failed: UInt64
    public var cancelled: UInt64
    public var retried: UInt64
    public var waiting: Int
    public var queued: Int
    public var running: Int
    public var unplaceable: Int
    public var unplaceableReasons: [UnplaceableTasks]
    /// Node jobs of `--allocate` (absent when the coordinator does not allocate).
    public var allocation: Allocation?
    public var resultsWaiting: Int
    public var staleResultsDropped: UInt64
    /// Tasks finished per second over the last few seconds and over the last minute.
    public var throughputNow: Double
    public var throughputMinute: Double
    /// Last minute, milliseconds; nil when no task started or finished in it.
    public var queueWaitP50Ms: Double?
    public var queueWaitP99Ms: Double?
    public var runTimeP50Ms: Double?
    public var runTimeP99Ms: Double?
    public var nodes: [Node]
    public var limits: [Limit]
    public var counters: [String: Int64]
    public var failedByReason: [String: UInt64]
    /// Newest first.
    public var recentFailures: [Failure]
    public var refusedRequests: [String: UInt64]
    /// The last minute, oldest first.
    public var throughput: [Point]
    /// The newest jobs first (absent in reports of coordinators without jobs).
    public var jobs: [Job]?

    /// A node's tasks that wait for their subtasks: leased to it, but holding no slot.
    static func waiting(_ node: Colony_V1_NodeStatus) -> Int {
        Int(node.waitingThread) + Int(node.waitingProcess) + Int(node.waitingIo)
    }

    /// Reads a status reply (one that asked for figures: without them the figures are zero).
    public init(wire: Colony_V1_StatusReply) {
        let figures = wire.figures
        uptimeS = wire.uptimeSeconds
        submitted = figures.submitted
        succeeded = wire.succeeded
        failed = wire.failed
        cancelled = wire.cancelled
        retried = wire.retried
        waiting = Int(wire.hasFigures ? figures.waiting : wire.waiting)
        queued = Int(wire.hasFigures ? figures.queued : wire.queued)
        running = Int(wire.hasFigures ? figures.running : wire.running)
        unplaceable = Int(wire.unplaceable)
        unplaceableReasons = wire.unplaceableReasons.map { UnplaceableTasks(reason: $0.reason, count: Int($0.count)) }
        allocation = wire.hasAllocation
            ? Allocation(system: wire.allocation.system, requested: Int(wire.allocation.requested), running: Int(wire.allocation.running),
                         max: Int(wire.allocation.max), submitted: wire.allocation.submitted)
            : nil
        resultsWaiting = Int(wire.resultsWaiting)
        staleResultsDropped = wire.staleResultsDropped
        throughputNow = figures.finishedPerSecondNow
        throughputMinute = figures.finishedPerSecondMinute
        queueWaitP50Ms = figures.hasQueueWaitP50Ms ? figures.queueWaitP50Ms : nil
        queueWaitP99Ms = figures.hasQueueWaitP99Ms ? figures.queueWaitP99Ms : nil
        runTimeP50Ms = figures.hasRunTimeP50Ms ? figures.runTimeP50Ms : nil
        runTimeP99Ms = figures.hasRunTimeP99Ms ? figures.runTimeP99Ms : nil
        nodes = wire.nodes.map { node in
            Node(name: node.info.name, host: node.info.host, threads: Int(node.info.threadSlots),
                 processes: Int(node.info.processSlots), ioSlots: Int(node.info.ioSlots), running: Int(node.running),
                 runningProcess: Int(node.runningProcess), runningIO: Int(node.runningIo),
                 busyThreads: min(max(0, Int(node.running) - Int(node.runningProcess) - Int(node.runningIo) - Self.waiting(node)),
                                  Int(node.info.threadSlots)),
                 busyProcesses: min(Int(node.runningProcess), Int(node.info.processSlots)),
                 busyIO: min(Int(node.runningIo), Int(node.info.ioSlots)),
                 prefetched: max(0, Int(node.running) - Int(node.runningProcess) - Int(node.runningIo) - Self.waiting(node) - Int(node.info.threadSlots))
                    + max(0, Int(node.runningProcess) - Int(node.info.processSlots)),
                 completed: node.completed, failed: node.failed, lastSeenS: Double(node.lastSeenMsAgo) / 1000,
                 draining: node.info.draining, handlers: node.info.handlers,
                 rssBytes: node.hasFigures ? node.figures.rssBytes : nil,
                 childrenRssBytes: node.hasFigures ? node.figures.childrenRssBytes : nil,
                 childrenStarted: node.hasFigures ? node.figures.childrenStarted : nil,
                 resources: node.info.resources.isEmpty ? nil
                    : ResourceAmount.column(offered: NodeAnnouncement.resources(wire: node.info.resources), held: node.resourcesHeld))
        }
        limits = wire.limits.map { Limit(name: $0.name, size: Int($0.size), inUse: Int($0.inUse), highWater: Int($0.highWater)) }
        counters = Dictionary(figures.counters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        failedByReason = figures.failedByReason
        recentFailures = figures.recentFailures.map {
            Failure(id: $0.id, handler: $0.handler, error: $0.error, node: $0.node, secondsAgo: $0.secondsAgo, reason: $0.reason)
        }
        refusedRequests = figures.refusedRequests
        throughput = figures.throughput.map { Point(secondsAgo: $0.secondsAgo, perSecond: $0.finishedPerSecond) }
        jobs = wire.jobs.map {
            Job(id: $0.id, name: $0.name.isEmpty ? nil : $0.name, state: JobState(wire: $0.state)?.rawValue ?? "unknown",
                finished: Int(clamping: $0.succeeded + $0.failed + $0.cancelled),
                total: Int(clamping: $0.waiting + $0.queued + $0.running + $0.succeeded + $0.failed + $0.cancelled),
                failed: Int(clamping: $0.failed), ageS: $0.ageSeconds)
        }
    }

    /// One line of JSON, keys in snake_case and sorted.
    public func json(pretty: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads what `json()` wrote.
    public static func decode(json: [UInt8]) throws -> ClusterReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(ClusterReport.self, from: Data(json))
    }
}
