import ColonyCore
import ColonyModel

/// Jobs in the shell: the core's job calls with the journal and parked fetches around them,
/// and job reads that wait (`colony job wait`, `colony job results` streaming), answered by
/// `expire` every 20 ms once they can be.
extension CoordinatorState {
    /// A job read parked until it has something new or its deadline passes.
    struct ParkedJobRead {
        enum Kind {
            /// Results from this position on.
            case results(from: Int, max: Int)
            /// The job's end.
            case end
        }
        var job: JobID
        var kind: Kind
        var deadline: Double
        var continuation: CheckedContinuation<Void, Never>
    }

    func submit(_ submissions: [TaskSubmission], session: String, into target: JobTarget) throws(CoordinatorCore.Refusal) -> (job: JobID, ids: [TaskID]) {
        try refuseChangesIfJournalFails()
        let submitted = try core.submit(submissions, session: session, now: now, into: target)
        answerParkedFetches(session: session)
        wakeParkedPulls()
        journal()
        return submitted
    }

    /// The job an id or a name refers to; refused if none.
    func job(_ reference: String) throws(CoordinatorCore.Refusal) -> JobID {
        guard let id = core.jobID(for: reference) else { throw .notFound("job '\(reference)' is not known (never made, or forgotten)") }
        return id
    }

    func jobs(max: Int) -> [JobInfo] { core.jobInfos(now: now, max: max) }

    func jobTaskIDs(_ reference: String, from: Int, max: Int) throws(CoordinatorCore.Refusal) -> (ids: [TaskID], total: Int) {
        guard let page = core.jobTaskIDs(try job(reference), from: from, max: max) else { throw .notFound("job '\(reference)' is not known") }
        return page
    }

    func jobInfo(_ reference: String) throws(CoordinatorCore.Refusal) -> JobInfo {
        let id = try job(reference)
        guard let info = core.jobInfo(id, now: now) else { throw .notFound("job '\(reference)' is not known") }
        return info
    }

    func cancel(job reference: String) throws(CoordinatorCore.Refusal) -> Int {
        try refuseChangesIfJournalFails()
        let result = try core.cancel(job: try job(reference), now: now)
        for touched in result.sessions { answerParkedFetches(session: touched) }
        wakeParkedPulls()
        journal()
        return result.cancelled
    }

    func forget(job reference: String) throws(CoordinatorCore.Refusal) {
        try refuseChangesIfJournalFails()
        try core.forget(job: try job(reference))
        journal()
    }

    /// Results in input order from `from`; waits up to `waitSeconds` while there is none yet
    /// and the job has not ended.
    func jobResults(_ reference: String, from: Int, max: Int, waitSeconds: Double) async throws(CoordinatorCore.Refusal) -> JobResultsPage {
        let id = try job(reference)
        let page = try core.jobResults(id, from: from, max: max)
        guard page.results.isEmpty, !page.ended, waitSeconds > 0, !closed else { return page }
        await park(ParkedJobRead.Kind.results(from: from, max: max), job: id, waitSeconds: waitSeconds)
        return try core.jobResults(id, from: from, max: max)
    }

    /// The job once it has ended, or after `waitSeconds`.
    func waitForJob(_ reference: String, waitSeconds: Double) async throws(CoordinatorCore.Refusal) -> JobInfo {
        let id = try job(reference)
        if let info = core.jobInfo(id, now: now), info.state == .running, waitSeconds > 0, !closed {
            await park(.end, job: id, waitSeconds: waitSeconds)
        }
        guard let info = core.jobInfo(id, now: now) else { throw .notFound("job \(id) was forgotten while it was waited for") }
        return info
    }

    private func park(_ kind: ParkedJobRead.Kind, job: JobID, waitSeconds: Double) async {
        let deadline = now + waitSeconds
        await withCheckedContinuation { continuation in
            parkedJobReads.append(ParkedJobRead(job: job, kind: kind, deadline: deadline, continuation: continuation))
        }
    }

    /// Resumes the parked job reads that can be answered (or whose time is up, or all of them
    /// when `all`); they read the core again themselves.
    func answerParkedJobReads(all: Bool = false) {
        guard !parkedJobReads.isEmpty else { return }
        let t = now
        var kept: [ParkedJobRead] = []
        for parked in parkedJobReads {
            let ready: Bool
            switch parked.kind {
            case .results(let from, let max):
                let page = try? core.jobResults(parked.job, from: from, max: max)
                ready = page.map { !$0.results.isEmpty || $0.ended } ?? true
            case .end:
                ready = core.jobInfo(parked.job, now: t).map { $0.state != .running } ?? true
            }
            if all || ready || parked.deadline <= t {
                parked.continuation.resume()
            } else {
                kept.append(parked)
            }
        }
        parkedJobReads = kept
    }
}
