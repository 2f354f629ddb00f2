import ColonyCore
import ColonyModel
import ColonyStore
import Foundation
import Logging

extension CoordinatorState {
    // MARK: Counters, limits, cancellation, queries

    func counterAdd(_ name: String, _ delta: Int64, key: String? = nil) throws(CoordinatorCore.Refusal) -> Int64 {
        try refuseChangesIfJournalFails()
        defer { journal() }
        return try core.addToCounter(name, delta, key: key)
    }

    func counterSet(_ name: String, _ value: Int64, key: String? = nil) throws(CoordinatorCore.Refusal) -> Int64 {
        try refuseChangesIfJournalFails()
        defer { journal() }
        return try core.setCounter(name, value, key: key)
    }

    func counterCompareAndSet(_ name: String, expected: Int64, new: Int64, key: String? = nil) throws(CoordinatorCore.Refusal) -> (swapped: Bool, value: Int64) {
        try refuseChangesIfJournalFails()
        defer { journal() }
        return try core.compareAndSetCounter(name, expected: expected, new: new, key: key)
    }

    func counter(_ name: String) -> Int64 {
        noticeJournalFailure()
        return core.counter(name)
    }

    func counters() -> [(name: String, value: Int64)] {
        noticeJournalFailure()
        return core.allCounters
    }

    func setLimit(_ name: String, size: Int) throws(CoordinatorCore.Refusal) {
        try refuseChangesIfJournalFails()
        try core.setLimit(name, size: size)
        journal()
        wakeParkedPulls()
    }

    func limits() -> [LimitStatus] {
        noticeJournalFailure()
        return core.allLimits
    }

    /// A connection closed: if a node pulled on it, the node is suspect (see `markSuspect`).
    func pipeRemoved(_ pipeID: UInt32) {
        guard let name = nodeOfPipe.removeValue(forKey: pipeID) else { return }
        pipeOfNode[name] = nil
        core.markSuspect(node: name, now: now)
    }

    /// Asks `node` to drain; its parked pull (if any) is answered at once so it learns now.
    func drain(node: String, deadlineSeconds: Double) -> Bool {
        guard core.requestDrain(node: node, deadlineSeconds: deadlineSeconds) else { return false }
        if let parked = parkedPulls.removeValue(forKey: node) {
            parked.continuation.resume(returning: answer(to: node))
        }
        return true
    }

    func cancel(ids: [TaskID], session: String) throws(CoordinatorCore.Refusal) -> Int {
        try refuseChangesIfJournalFails()
        var result = core.cancel(ids, now: now)
        if !session.isEmpty {
            let more = core.cancel(session: session, now: now)
            result.sessions.formUnion(more.sessions)
            result.cancelled += more.cancelled
        }
        for touched in result.sessions { answerParkedFetches(session: touched) }
        // Tell nodes at once about running tasks to stop.
        wakeParkedPulls()
        journal()
        return result.cancelled
    }

    func tasks(phase: TaskPhase?, limit: Int) -> [TaskInfo] {
        noticeJournalFailure()
        return core.taskInfos(phase: phase, limit: limit)
    }

    /// The result of one task by id; waits up to `waitSeconds` for it to finish. nil: not
    /// finished in time. Throws for an id the coordinator does not know.
    func result(of id: TaskID, waitSeconds: Double) async throws(CoordinatorCore.Refusal) -> TaskOutcome? {
        try refuseChangesIfJournalFails()
        if let outcome = core.takeResult(of: id) {
            journal()
            return outcome
        }
        guard core.knows(id) else {
            throw .notFound("task \(id) is not known (never submitted, or its result was fetched or expired)")
        }
        if waitSeconds <= 0 || closed { return nil }
        let deadline = now + waitSeconds
        return await withCheckedContinuation { continuation in
            parkedResults[id, default: []].append((continuation, deadline))
        }
    }

    func answerParkedFetches(session: String) {
        // Waits for one task by id come first: they asked for that very result.
        if !parkedResults.isEmpty {
            for (id, waiting) in parkedResults {
                guard let outcome = core.takeResult(of: id) else { continue }
                parkedResults[id] = nil
                waiting.first?.continuation.resume(returning: outcome)
                for other in waiting.dropFirst() { other.continuation.resume(returning: nil) }
            }
        }
        guard var waiting = parkedFetches[session] else { return }
        while !waiting.isEmpty && core.hasResults(session: session) {
            let parked = waiting.removeFirst()
            parked.continuation.resume(returning: parked.keepUntilAcked
                ? core.peekResults(session: session, max: parked.maxResults, acked: [])
                : core.takeResults(session: session, max: parked.maxResults))
        }
        parkedFetches[session] = waiting.isEmpty ? nil : waiting
    }
}
