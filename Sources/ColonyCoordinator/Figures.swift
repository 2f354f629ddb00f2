import ColonyCore
import ColonyStore
import CoreMetrics
import Foundation
import Synchronization

/// What `colony top`, the dashboard and the metrics show beyond the status.
public struct ClusterFigures: Sendable {
    public var counts: CoordinatorCore.TaskCounts
    public var nodeSlots: [CoordinatorCore.NodeSlots]
    public var recentFailures: [CoordinatorCore.FailureNote]
    public var counters: [(name: String, value: Int64)]
    /// Tasks finished per second over the last few seconds, and over the last minute.
    public var finishedPerSecondNow: Double
    public var finishedPerSecondMinute: Double
    /// Over the last minute, seconds (nil: no task in that minute).
    public var queueWait: (p50: Double, p99: Double)?
    public var runTime: (p50: Double, p99: Double)?
    /// Seconds ago and tasks finished per second then, oldest first.
    public var throughput: [(secondsAgo: Double, perSecond: Double)]
    public var refusedRequests: [String: UInt64]
    /// Seconds since the coordinator started.
    public var now: Double
}

/// A latency histogram with logarithmic buckets 10% apart, from 1 µs up: percentiles within
/// 10%, in constant memory however many samples it holds.
struct LatencyHistogram: Sendable {
    private static let ratio = 1.1
    private static let smallest = 1e-6
    private static let bucketCount = 260  // up to ~1.2 days
    private(set) var counts = [UInt32](repeating: 0, count: LatencyHistogram.bucketCount)
    private(set) var total = 0

    private static func bucket(_ seconds: Double) -> Int {
        guard seconds > smallest else { return 0 }
        return min(bucketCount - 1, Int((log(seconds / smallest) / log(ratio)).rounded(.up)))
    }

    private static func upperBound(_ bucket: Int) -> Double { smallest * pow(ratio, Double(bucket)) }

    mutating func add(_ seconds: Double) {
        counts[Self.bucket(seconds)] &+= 1
        total += 1
    }

    mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] &+= other.counts[index] }
        total += other.total
    }

    /// The `quantile` (0...1) as the upper bound of its bucket; nil when empty.
    func percentile(_ quantile: Double) -> Double? {
        guard total > 0 else { return nil }
        let rank = max(1, Int((quantile * Double(total)).rounded(.up)))
        var seen = 0
        for (index, count) in counts.enumerated() {
            seen += Int(count)
            if seen >= rank { return Self.upperBound(index) }
        }
        return Self.upperBound(Self.bucketCount - 1)
    }
}

/// The last minute, one slot per second: tasks finished by then, and latency histograms.
struct FigureWindow: Sendable {
    struct Second: Sendable {
        var at: Double
        var finishedTotal: UInt64
        var queueWaits = LatencyHistogram()
        var runTimes = LatencyHistogram()
    }
    static let seconds = 60
    private(set) var slots: [Second] = []
    /// Samples of the second in progress (a scrape may take them in before it closes).
    private var current = Second(at: 0, finishedTotal: 0)

    /// Takes in latency samples (seconds) as they are drained from the core.
    mutating func absorb(queueWaits: [Double], runTimes: [Double]) {
        for value in queueWaits { current.queueWaits.add(value) }
        for value in runTimes { current.runTimes.add(value) }
    }

    /// Ends the second in progress (called once a second, by the coordinator's clock only, so
    /// that the window always spans a minute however often it is read).
    mutating func closeSecond(at now: Double, finishedTotal: UInt64) {
        current.at = now
        current.finishedTotal = finishedTotal
        slots.append(current)
        current = Second(at: now, finishedTotal: finishedTotal)
        if slots.count > Self.seconds + 1 { slots.removeFirst(slots.count - Self.seconds - 1) }
    }

    /// Finished per second between the latest slot and the one `span` seconds before it (or
    /// the oldest kept).
    func rate(over span: Double, finishedTotal: UInt64, now: Double) -> Double {
        guard let first = slots.last(where: { $0.at <= now - span }) ?? slots.first, now - first.at > 0.5 else { return 0 }
        return Double(finishedTotal &- first.finishedTotal) / (now - first.at)
    }

    func throughput(now: Double) -> [(secondsAgo: Double, perSecond: Double)] {
        guard slots.count >= 2 else { return [] }
        return zip(slots, slots.dropFirst()).map { earlier, later in
            (now - later.at, Double(later.finishedTotal &- earlier.finishedTotal) / max(0.001, later.at - earlier.at))
        }
    }

    func percentiles(_ keyPath: KeyPath<Second, LatencyHistogram>) -> (p50: Double, p99: Double)? {
        var merged = current[keyPath: keyPath]
        for slot in slots { merged.merge(slot[keyPath: keyPath]) }
        guard let p50 = merged.percentile(0.5), let p99 = merged.percentile(0.99) else { return nil }
        return (p50, p99)
    }
}

/// Records the coordinator's figures with swift-metrics (whatever backend the process
/// bootstrapped; `colony coordinator --metrics-listen` uses Prometheus). Counts are read from
/// the core's books, so a scrape right after `record` is exact.
final class MetricsRecorder: Sendable {
    private let queueWait = Timer(label: "colony_task_queue_wait_seconds")
    private let runTime = Timer(label: "colony_task_run_seconds")
    private let handles = Mutex<Handles>(Handles())

    private struct Handles: ~Copyable {
        var counters: [String: (handle: Counter, last: UInt64)] = [:]
        var gauges: [String: Gauge] = [:]
    }

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
    }

    /// Sets a counter to `total` (it only moves up: the difference since the last call).
    func count(_ label: String, _ dimensions: [(String, String)] = [], total: UInt64) {
        handles.withLock { handles in
            let key = Self.key(label, dimensions)
            let entry = handles.counters[key] ?? (Counter(label: label, dimensions: dimensions), 0)
            if total > entry.last { entry.handle.increment(by: Int64(total - entry.last)) }
            handles.counters[key] = (entry.handle, max(total, entry.last))
        }
    }

    /// Sets every gauge of `label` to 0 (before setting the current ones), so that a node that
    /// left or a priority no longer queued does not keep its last value.
    func zeroGauges(_ label: String) {
        handles.withLock { handles in
            for (key, gauge) in handles.gauges where key.hasPrefix(label + "|") { gauge.record(0) }
        }
    }

    func gauge(_ label: String, _ dimensions: [(String, String)], _ value: Double) {
        handles.withLock { handles in
            let key = Self.key(label, dimensions)
            let gauge = handles.gauges[key] ?? Gauge(label: label, dimensions: dimensions)
            handles.gauges[key] = gauge
            gauge.record(value)
        }
    }

    func samples(queueWaits: [Double], runTimes: [Double]) {
        for value in queueWaits { queueWait.recordNanoseconds(Int64(value * 1e9)) }
        for value in runTimes { runTime.recordNanoseconds(Int64(value * 1e9)) }
    }

    /// The journal's group commits: how many, and the time they took in all (rate of the one
    /// over the other: the mean commit time).
    func journal(_ statistics: Store.Statistics) {
        count("colony_journal_commits_total", total: statistics.commits)
        count("colony_journal_records_total", total: statistics.records)
        count("colony_journal_commit_microseconds_total", total: statistics.commitMicros)
    }

    /// Everything but the latency samples, from one snapshot.
    func record(_ figures: ClusterFigures, status: ClusterStatus) {
        let counts = figures.counts
        count("colony_tasks_submitted_total", total: counts.submitted)
        count("colony_tasks_finished_total", [("outcome", "succeeded")], total: counts.succeeded)
        count("colony_tasks_finished_total", [("outcome", "failed")], total: counts.failed)
        count("colony_tasks_finished_total", [("outcome", "cancelled")], total: counts.cancelled)
        count("colony_tasks_retried_total", total: counts.retried)
        count("colony_tasks_dispatched_total", total: counts.dispatched)
        zeroGauges("colony_queue_depth")
        for (priority, depth) in counts.queuedByPriority {
            gauge("colony_queue_depth", [("priority", "\(priority)")], Double(depth))
        }
        for reason in FailureKind.allCases {
            count("colony_tasks_failed_total", [("reason", reason.rawValue)], total: counts.failedByReason[reason] ?? 0)
        }
        count("colony_late_results_dropped_total", total: counts.staleResultsDropped)
        for (kind, total) in figures.refusedRequests { count("colony_requests_refused_total", [("kind", kind)], total: total) }
        gauge("colony_tasks", [("state", "waiting")], Double(counts.waiting))
        gauge("colony_tasks", [("state", "queued")], Double(counts.queued))
        gauge("colony_tasks", [("state", "running")], Double(counts.running))
        gauge("colony_results_waiting", [], Double(counts.resultsWaiting))
        gauge("colony_nodes_alive", [], Double(status.nodes.count))
        zeroGauges("colony_node_slots")
        for node in figures.nodeSlots {
            gauge("colony_node_slots", [("node", node.name), ("pool", "thread"), ("state", "busy")], Double(node.threadBusy))
            gauge("colony_node_slots", [("node", node.name), ("pool", "thread"), ("state", "free")], Double(node.threadSlots - node.threadBusy))
            gauge("colony_node_slots", [("node", node.name), ("pool", "process"), ("state", "busy")], Double(node.processBusy))
            gauge("colony_node_slots", [("node", node.name), ("pool", "process"), ("state", "free")], Double(node.processSlots - node.processBusy))
        }
        zeroGauges("colony_node_rss_bytes")
        zeroGauges("colony_node_children_started")
        for node in status.nodes {
            guard let reported = node.announcement.figures else { continue }
            let name = node.announcement.name
            gauge("colony_node_rss_bytes", [("node", name), ("process", "node")], Double(reported.rssBytes))
            gauge("colony_node_rss_bytes", [("node", name), ("process", "children")], Double(reported.childrenRSSBytes))
            gauge("colony_node_children_started", [("node", name)], Double(reported.childrenStarted))
        }
        for counter in figures.counters { gauge("colony_counter_value", [("name", counter.name)], Double(counter.value)) }
        for limit in status.limits {
            gauge("colony_limit_in_use", [("name", limit.name)], Double(limit.inUse))
            gauge("colony_limit_size", [("name", limit.name)], Double(limit.size))
        }
    }
}
