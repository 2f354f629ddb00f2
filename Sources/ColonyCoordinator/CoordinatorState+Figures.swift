import ColonyCore
import ColonyModel
import ColonyStore
import Foundation
import Logging

extension CoordinatorState {
    // MARK: Figures


    /// Moves the latency samples gathered since the last call into the last minute's window
    /// (and returns them, for the metrics); `closingSecond` once a second, from the clock.
    func sampleFigures(closingSecond: Bool) -> (queueWaits: [Double], runTimes: [Double]) {
        let samples = core.takeLatencySamples()
        window.absorb(queueWaits: samples.queueWaits, runTimes: samples.runTimes)
        if closingSecond { window.closeSecond(at: now, finishedTotal: core.finishedTotal) }
        return samples
    }

    /// Exact counts and the last minute's figures.
    func figures(refused: [String: UInt64]) -> (ClusterFigures, ClusterStatus) {
        noticeJournalFailure()
        let t = now
        let finished = core.finishedTotal
        let figures = ClusterFigures(
            counts: core.taskCounts(), nodeSlots: core.nodeSlots, recentFailures: core.recentFailures,
            counters: core.allCounters,
            finishedPerSecondNow: window.rate(over: 5, finishedTotal: finished, now: t),
            finishedPerSecondMinute: window.rate(over: 60, finishedTotal: finished, now: t),
            queueWait: window.percentiles(\.queueWaits), runTime: window.percentiles(\.runTimes),
            throughput: window.throughput(now: t), refusedRequests: refused, now: t)
        var status = core.status(now: t)
        status.journalFailure = journalFailure
        status.allocation = allocation
        return (figures, status)
    }

    func status() -> ClusterStatus {
        noticeJournalFailure()
        var status = core.status(now: now)
        status.journalFailure = journalFailure
        status.allocation = allocation
        return status
    }


    func noteAllocation(_ status: AllocationStatus) { allocation = status }


    /// Answers every parked request whose deadline has passed (empty: the long poll ended).
    func expire() {
        let t = now
        // A gap of over a second between ticks means this process was stopped (SIGSTOP, a
        // paused VM or container): nodes could not be heard meanwhile, so that time does not
        // count against them (else a coordinator resumed after 5 s would declare every node
        // lost and run their tasks a second time). `expiredAt` starts at 0, the state's own
        // start, so a coordinator stopped before its first tick is excused too.
        if t - expiredAt > 1 {
            core.excuseSilence(seconds: t - expiredAt)
            logger?.info("the coordinator was held up; that time does not count against its nodes",
                         metadata: ["seconds": "\(formatSeconds(((t - expiredAt) * 10).rounded() / 10))"])
        }
        expiredAt = t
        noticeJournalFailure()
        // While the journal fails, time stands still for the books (a tick's timeouts and
        // expiries are changes too); parked reads still end.
        retryJournal()
        // Nodes whose pulls wait here are heard: the answer they wait for is ours to give.
        core.noteWaiting(nodes: parkedPulls.keys, now: t)
        let touched = journalFailure == nil ? core.tick(now: t) : []
        compactIfDue()
        for session in touched { answerParkedFetches(session: session) }
        wakeParkedPulls()
        for (name, parked) in parkedPulls where parked.deadline <= t {
            parkedPulls[name] = nil
            parked.continuation.resume(returning: answer(to: name))
        }
        for (id, waiting) in parkedResults {
            let kept = waiting.filter { $0.deadline > t }
            for expired in waiting where expired.deadline <= t { expired.continuation.resume(returning: nil) }
            parkedResults[id] = kept.isEmpty ? nil : kept
        }
        for (session, waiting) in parkedFetches {
            var kept: [ParkedFetch] = []
            for parked in waiting {
                if parked.deadline <= t {
                    parked.continuation.resume(returning: ([], core.unfinished(session: session)))
                } else {
                    kept.append(parked)
                }
            }
            parkedFetches[session] = kept.isEmpty ? nil : kept
        }
        answerParkedLogReads(now: t)
        answerParkedJobReads()
        journal()
    }

    /// Answers all parked requests and parks no more (shutdown).
    func close() {
        closed = true
        answerAllParked()
    }

    /// Answers every parked request now, empty.
    func answerAllParked() {
        for (name, parked) in parkedPulls { parked.continuation.resume(returning: answer(to: name)) }
        parkedPulls = [:]
        for waiting in parkedResults.values { for parked in waiting { parked.continuation.resume(returning: nil) } }
        parkedResults = [:]
        for (session, waiting) in parkedFetches {
            for parked in waiting { parked.continuation.resume(returning: ([], core.unfinished(session: session))) }
        }
        parkedFetches = [:]
        answerParkedLogReads(now: .infinity)
        answerParkedJobReads(all: true)
    }

    func wakeParkedPulls() {
        guard !parkedPulls.isEmpty else { return }
        // Oldest parked first, so that idle nodes share new work in the order they asked.
        for (name, parked) in parkedPulls.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            let tasks = core.queuedCount > 0 ? core.dispatch(toNode: name, now: now) : []
            let cancel = core.takeCancellations(forNode: name)
            if tasks.isEmpty && cancel.isEmpty { continue }
            parkedPulls[name] = nil
            parked.continuation.resume(returning: answer(to: name, tasks, cancel: cancel))
        }
    }
}
