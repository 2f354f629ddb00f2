import ColonyCore
import ColonyModel
import ColonyStore

/// A core rebuilt from what a journal holds: at start, and after a failed commit (the memory
/// then held changes the journal refused).
public enum JournalRecovery {
    /// What was recovered, for the log.
    public struct Summary: Sendable {
        public var unfinishedTasks = 0
        public var results = 0
        public var counters = 0
        public var limits = 0
        public var seconds = 0.0
    }

    /// Streams the journal's rows into a new core made with `bounds` (a million recovered
    /// tasks are never held twice); `now` is the core's clock.
    public static func restore(from store: Store, bounds: CoordinatorCore.Bounds, now: Double = 0) throws(StoreError) -> (core: CoordinatorCore, summary: Summary) {
        let clock = ContinuousClock()
        let started = clock.now
        var restoration = CoordinatorCore.Restoration(core: CoordinatorCore(bounds: bounds), now: now)
        let header = try store.recover(expecting: { restoration.reserve($0) }, jobs: { for job in $0 { restoration.add(job) } },
                                       each: { restoration.add($0) })
        var summary = Summary()
        summary.unfinishedTasks = restoration.unfinished
        summary.results = restoration.finished
        summary.counters = header.counters.count
        summary.limits = header.limits.count
        let core = restoration.finish(with: header)
        let elapsed = clock.now - started
        summary.seconds = elapsed.inSeconds
        return (core, summary)
    }
}
