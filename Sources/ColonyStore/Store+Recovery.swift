import CSQLite
import ColonyCore
import ColonyModel
import Foundation
import Synchronization

// Reading the journal back at a start.
extension Store {
    /// Reads everything the journal holds (call before the first `append`).
    public func recover() throws(StoreError) -> RecoveredState {
        var tasks: [RecoveredTask] = []
        var state = try recover(expecting: { tasks.reserveCapacity($0) }, jobs: { _ in }, each: { tasks.append($0) })
        state.tasks = tasks
        return state
    }

    /// Like `recover()`, but hands each task to `each` as it is read, in id order, instead of
    /// keeping them all (the returned state's `tasks` is empty); `expecting` gets their number
    /// first. With `CoordinatorCore.Restoration`, a coordinator restarts without holding a
    /// million rows and a million records at once.
    /// `jobs` gets the jobs held before the first task comes (a task joins its job as it is
    /// added: `Restoration.add(_:)` each, or the tasks lose their jobs).
    public func recover(expecting: (Int) -> Void = { _ in }, jobs: ([RecoveredJob]) -> Void,
                        each: (RecoveredTask) -> Void) throws(StoreError) -> RecoveredState {
        var state = RecoveredState()
        if let next = try database.scalarText("SELECT value FROM meta WHERE key = 'next_id'"), let id = TaskID(next) { state.nextID = id }
        state.nextID = max(state.nextID, nextIDFloor)
        try database.forEachRow("SELECT name, value FROM counters") { row in state.counters[row.text(0)] = row.int64(1) }
        try database.forEachRow("SELECT name, size FROM limits") { row in state.limits[row.text(0)] = Int(row.int64(1)) }
        try database.forEachRow("SELECT name, value FROM limit_high_water") { row in state.limitHighWater[row.text(0)] = Int(row.int64(1)) }
        try database.forEachRow("SELECT key, value, swapped FROM counter_keys ORDER BY seq") { row in
            state.counterKeys.append(CounterKey(key: row.text(0), reply: CounterReply(value: row.int64(1), swapped: row.int64(2) != 0)))
        }
        try JobTables.recover(from: database, into: &state)
        jobs(state.jobs)
        if let count = try database.scalarText("SELECT count(*) FROM tasks").flatMap(Int.init) { expecting(count) }
        // Consecutive rows mostly share their session: one string kept for the run, not one
        // per task (a million restored tasks otherwise hold a million copies of it).
        var lastSession = ""
        try database.forEachRow("""
            SELECT id, session, handler, input, priority, uses, after, max_attempts, retry_on_error, timeout, labels, pool,
                   pool_handler, outcome, attempt, output, error, node, run_micros, key, detached, job, delivered, resources
            FROM tasks ORDER BY id
            """) { row in
            let id = TaskID(bitPattern: row.int64(0))
            var options = TaskOptions(priority: Int32(truncatingIfNeeded: row.int64(4)), uses: Strings.decode(row.blob(5)),
                                      after: IDs.decode(row.blob(6)), maxAttempts: Int(row.int64(7)), retryOnError: row.int64(8) != 0,
                                      timeoutSeconds: row.isNull(9) ? nil : row.double(9))
            let labelList = Strings.decode(row.blob(10))
            for pair in stride(from: 0, to: labelList.count - 1, by: 2) { options.requiredLabels[labelList[pair]] = labelList[pair + 1] }
            options.pool = TaskPool(rawValue: row.text(11)) ?? .automatic
            if !row.isNull(23) { options.resources = Strings.decode(row.blob(23)).compactMap(ResourceVariant.parse) }
            var submission = TaskSubmission(handler: row.text(2), input: row.blob(3), options: options,
                                            poolHandler: row.isNull(12) ? nil : row.text(12), key: row.isNull(19) ? nil : row.text(19),
                                            detached: row.int64(20) != 0)
            submission.job = JobID(bitPattern: row.int64(21))
            var outcome: TaskOutcome?
            if !row.isNull(13) {
                // "failed:KIND"; a bare "failed" (older journals) is an `error`.
                let stored = row.text(13).split(separator: ":", maxSplits: 1).map(String.init)
                let phase = stored.first ?? ""
                let failure = phase == "failed" && stored.count == 2 ? FailureKind(rawValue: stored[1]) : nil
                outcome = TaskOutcome(id: id, attempt: UInt32(truncatingIfNeeded: row.int64(14)), succeeded: phase == "succeeded",
                                      output: row.blob(15), error: row.text(16), failure: failure, node: row.text(17),
                                      runMicros: UInt64(bitPattern: row.int64(18)), cancelled: phase == "cancelled")
            }
            let session = row.text(1)
            if session != lastSession { lastSession = session }
            each(RecoveredTask(id: id, submission: submission, session: lastSession, outcome: outcome, delivered: row.int64(22) != 0))
        }
        queue.withLock { $0.nextID = state.nextID }
        return state
    }
}
