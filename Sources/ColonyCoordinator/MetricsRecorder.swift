import ColonyCore
import ColonyModel
import ColonyStore
import CoreMetrics
import Synchronization

/// The coordinator's metric families: each case's raw value is the family's name, and `help`
/// its one-line description (Prometheus's `# HELP`). The recorder makes metrics of these only,
/// so a family without a description does not compile.
public enum CoordinatorMetric: String, CaseIterable, Sendable {
    case tasksSubmitted = "colony_tasks_submitted_total"
    case tasksFinished = "colony_tasks_finished_total"
    case tasksFailed = "colony_tasks_failed_total"
    case tasksRetried = "colony_tasks_retried_total"
    case tasksDispatched = "colony_tasks_dispatched_total"
    case lateResultsDropped = "colony_late_results_dropped_total"
    case requestsRefused = "colony_requests_refused_total"
    case tasks = "colony_tasks"
    case queueDepth = "colony_queue_depth"
    case resultsWaiting = "colony_results_waiting"
    case nodesAlive = "colony_nodes_alive"
    case nodeSlots = "colony_node_slots"
    case nodeRSSBytes = "colony_node_rss_bytes"
    case nodeChildrenStarted = "colony_node_children_started"
    // Not "counter": `colony counter set` and `cas` move it down, so it is a gauge, and
    // Prometheus reserves the word for counters.
    case sharedValue = "colony_shared_value"
    case limitInUse = "colony_limit_in_use"
    case limitSize = "colony_limit_size"
    case journalCommits = "colony_journal_commits_total"
    case journalRecords = "colony_journal_records_total"
    case journalCommitTime = "colony_journal_commit_seconds_total"
    case journalFailedCommits = "colony_journal_failed_commits_total"
    case taskQueueWait = "colony_task_queue_wait_seconds"
    case taskRunTime = "colony_task_run_seconds"
    case jobs = "colony_jobs"

    public var help: String {
        switch self {
        case .tasksSubmitted: "Tasks accepted by this run of the coordinator, restored unfinished tasks included."
        case .tasksFinished: "Tasks finished for good, by outcome (succeeded, failed, cancelled)."
        case .tasksFailed: "Tasks failed for good, by the reason the node or the coordinator saw."
        case .tasksRetried: "Attempts that failed and were queued again."
        case .tasksDispatched: "Attempts handed to nodes (started or prefetched)."
        case .lateResultsDropped: "Results dropped because they came for an attempt that is no longer current."
        case .requestsRefused: "Requests answered with an error, by kind."
        case .tasks: "Unfinished tasks by state: waiting (dependencies or retry back-off), queued, running (leased to a node)."
        case .queueDepth: "Queued tasks by priority."
        case .resultsWaiting: "Finished tasks whose result no client has fetched yet."
        case .nodesAlive: "Nodes the coordinator currently counts as alive."
        case .nodeSlots: "Each node's task slots by pool (thread, process, io) and state (busy, free)."
        case .nodeRSSBytes: "Resident memory each node reports, of the node process and of its child processes."
        case .nodeChildrenStarted: "Child processes each node's process pool has started, as the node reports."
        case .sharedValue: "The value of each named counter (colony counter)."
        case .limitInUse: "Units of each cluster limit held by running tasks."
        case .limitSize: "Units each cluster limit has in all."
        case .journalCommits: "Group commits of the journal."
        case .journalRecords: "Records written to the journal."
        case .journalCommitTime: "Time spent in the journal's commits (rate over colony_journal_commits_total: mean commit time)."
        case .journalFailedCommits: "Journal commits that failed (a full disk, an I/O error): their changes were refused."
        case .taskQueueWait: "Seconds from a task's submission to its first attempt's dispatch to a node."
        case .taskRunTime: "Seconds each attempt ran, as its node reports."
        case .jobs: "Jobs the coordinator holds, by state (running, succeeded, failed, cancelled)."
        }
    }
}

/// Records the coordinator's figures with swift-metrics (whatever backend the process
/// bootstrapped; `colony coordinator --metrics-listen` uses Prometheus). Counts are read from
/// the core's books, so a scrape right after `record` is exact.
final class MetricsRecorder: Sendable {
    private let queueWait = Timer(label: CoordinatorMetric.taskQueueWait.rawValue)
    private let runTime = Timer(label: CoordinatorMetric.taskRunTime.rawValue)
    private let commitTime = FloatingPointCounter(label: CoordinatorMetric.journalCommitTime.rawValue)
    private let handles = Mutex<Handles>(Handles())

    private struct Handles: ~Copyable {
        var counters: [String: (handle: Counter, last: UInt64)] = [:]
        var gauges: [String: Gauge] = [:]
        var commitMicrosLast: UInt64 = 0
    }

    private static func key(_ metric: CoordinatorMetric, _ dimensions: [(String, String)]) -> String {
        metric.rawValue + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
    }

    /// Sets a counter to `total` (it only moves up: the difference since the last call).
    func count(_ metric: CoordinatorMetric, _ dimensions: [(String, String)] = [], total: UInt64) {
        handles.withLock { handles in
            let key = Self.key(metric, dimensions)
            let entry = handles.counters[key] ?? (Counter(label: metric.rawValue, dimensions: dimensions), 0)
            if total > entry.last { entry.handle.increment(by: Int64(total - entry.last)) }
            handles.counters[key] = (entry.handle, max(total, entry.last))
        }
    }

    /// Sets every gauge of `metric` to 0 (before setting the current ones), so that a node that
    /// left or a priority no longer queued does not keep its last value.
    func zeroGauges(_ metric: CoordinatorMetric) {
        handles.withLock { handles in
            for (key, gauge) in handles.gauges where key.hasPrefix(metric.rawValue + "|") { gauge.record(0) }
        }
    }

    func gauge(_ metric: CoordinatorMetric, _ dimensions: [(String, String)], _ value: Double) {
        handles.withLock { handles in
            let key = Self.key(metric, dimensions)
            let gauge = handles.gauges[key] ?? Gauge(label: metric.rawValue, dimensions: dimensions)
            handles.gauges[key] = gauge
            gauge.record(value)
        }
    }

    func samples(queueWaits: [Double], runTimes: [Double]) {
        for value in queueWaits { queueWait.recordNanoseconds(Int64(value * 1e9)) }
        for value in runTimes { runTime.recordNanoseconds(Int64(value * 1e9)) }
    }

    /// The journal's group commits: how many, and the time they took in all.
    func journal(_ statistics: Store.Statistics) {
        count(.journalCommits, total: statistics.commits)
        count(.journalRecords, total: statistics.records)
        count(.journalFailedCommits, total: statistics.failedCommits)
        handles.withLock { handles in
            guard statistics.commitMicros > handles.commitMicrosLast else { return }
            commitTime.increment(by: Double(statistics.commitMicros - handles.commitMicrosLast) / 1e6)
            handles.commitMicrosLast = statistics.commitMicros
        }
    }

    /// Everything but the latency samples, from one snapshot.
    func record(_ figures: ClusterFigures, status: ClusterStatus) {
        let counts = figures.counts
        count(.tasksSubmitted, total: counts.submitted)
        count(.tasksFinished, [("outcome", "succeeded")], total: counts.succeeded)
        count(.tasksFinished, [("outcome", "failed")], total: counts.failed)
        count(.tasksFinished, [("outcome", "cancelled")], total: counts.cancelled)
        count(.tasksRetried, total: counts.retried)
        count(.tasksDispatched, total: counts.dispatched)
        zeroGauges(.queueDepth)
        for (priority, depth) in counts.queuedByPriority {
            gauge(.queueDepth, [("priority", "\(priority)")], Double(depth))
        }
        for reason in FailureKind.allCases {
            count(.tasksFailed, [("reason", reason.rawValue)], total: counts.failedByReason[reason] ?? 0)
        }
        count(.lateResultsDropped, total: counts.staleResultsDropped)
        for (kind, total) in figures.refusedRequests { count(.requestsRefused, [("kind", kind)], total: total) }
        gauge(.tasks, [("state", "waiting")], Double(counts.waiting))
        gauge(.tasks, [("state", "queued")], Double(counts.queued))
        gauge(.tasks, [("state", "running")], Double(counts.running))
        gauge(.resultsWaiting, [], Double(counts.resultsWaiting))
        for state in JobState.allCases { gauge(.jobs, [("state", state.rawValue)], Double(status.jobsByState[state] ?? 0)) }
        gauge(.nodesAlive, [], Double(status.nodes.count))
        zeroGauges(.nodeSlots)
        for node in figures.nodeSlots {
            gauge(.nodeSlots, [("node", node.name), ("pool", "thread"), ("state", "busy")], Double(node.threadBusy))
            gauge(.nodeSlots, [("node", node.name), ("pool", "thread"), ("state", "free")], Double(node.threadSlots - node.threadBusy))
            gauge(.nodeSlots, [("node", node.name), ("pool", "process"), ("state", "busy")], Double(node.processBusy))
            gauge(.nodeSlots, [("node", node.name), ("pool", "process"), ("state", "free")], Double(node.processSlots - node.processBusy))
            gauge(.nodeSlots, [("node", node.name), ("pool", "io"), ("state", "busy")], Double(node.ioBusy))
            gauge(.nodeSlots, [("node", node.name), ("pool", "io"), ("state", "free")], Double(node.ioSlots - node.ioBusy))
        }
        zeroGauges(.nodeRSSBytes)
        zeroGauges(.nodeChildrenStarted)
        for node in status.nodes {
            guard let reported = node.announcement.figures else { continue }
            let name = node.announcement.name
            gauge(.nodeRSSBytes, [("node", name), ("process", "node")], Double(reported.rssBytes))
            gauge(.nodeRSSBytes, [("node", name), ("process", "children")], Double(reported.childrenRSSBytes))
            gauge(.nodeChildrenStarted, [("node", name)], Double(reported.childrenStarted))
        }
        for counter in figures.counters { gauge(.sharedValue, [("name", counter.name)], Double(counter.value)) }
        for limit in status.limits {
            gauge(.limitInUse, [("name", limit.name)], Double(limit.inUse))
            gauge(.limitSize, [("name", limit.name)], Double(limit.size))
        }
    }
}
