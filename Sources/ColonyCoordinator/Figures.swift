import ColonyCore
import ColonyModel
import Foundation

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
