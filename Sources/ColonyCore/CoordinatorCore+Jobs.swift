import ColonyModel
/// Jobs: every submit's tasks belong to one. A job counts its tasks by phase as they move
/// (never by recounting), and keeps their results in input order until it is forgotten,
/// whatever becomes of the session that submitted them: `colony job results` reads them from
/// any client. Bounded by `Limits.jobsMax` and `Limits.jobResultBytesMax`.
extension CoordinatorCore {
    /// Failures `jobInfo` lists (the counts say how many there are in all).
    public static let jobFailuresShownMax = 20

    struct JobRecord: Sendable {
        var name: String?
        /// Its tasks' sessions are exempt from the session timeout.
        var detached: Bool
        var createdAt: Double
        /// When its last task finished (nil while some run, or it has none).
        var endedAt: Double?
        /// `colony job cancel` ran: its results were freed.
        var cancelled = false
        /// Its tasks in input order, and the outcome of each one that finished.
        var taskIDs: [TaskID] = []
        var outcomes: [TaskOutcome?] = []
        var waiting = 0
        var running = 0
        var succeeded = 0
        var failed = 0
        var cancelledTasks = 0
        /// What its results cost against `jobResultBytesMax`.
        var resultBytes = 0

        var finished: Int { succeeded + failed + cancelledTasks }
        var counts: JobCounts {
            JobCounts(waiting: waiting, queued: taskIDs.count - finished - waiting - running, running: running, succeeded: succeeded,
                      failed: failed, cancelled: cancelledTasks)
        }
        var state: JobState {
            if cancelled { return .cancelled }
            if finished < taskIDs.count { return .running }
            return failed > 0 || cancelledTasks > 0 ? .failed : .succeeded
        }
    }

    /// What a kept result costs against `jobResultBytesMax`.
    static func resultCost(_ outcome: TaskOutcome) -> Int { outcome.output.count + outcome.error.utf8.count + 64 }

    // MARK: Submitting into a job

    /// Queues `submissions` for `session` in the job `target` names (made if it is new);
    /// returns the job and the tasks' ids in order. Refuses the whole batch, changing
    /// nothing (no job made either), if any part is invalid.
    public mutating func submit(_ submissions: [TaskSubmission], session: String, now: Double = 0,
                                into target: JobTarget) throws(Refusal) -> (job: JobID, ids: [TaskID]) {
        try validateSubmit(submissions, session: session)
        let detached = submissions.contains { $0.detached }
        let job: JobID
        switch target {
        case .new:
            // A submit of nothing makes no job.
            if submissions.isEmpty { return (0, []) }
            try makeRoomForJob(now: now)
            job = makeJob(name: nil, detached: detached, now: now)
        case .existing(let id):
            guard let record = jobs[id] else { throw .notFound("job \(id) is not known (never made, or forgotten)") }
            guard !record.cancelled else { throw .invalidArgument("job \(id) was cancelled; it takes no more tasks") }
            job = id
        case .named(let name):
            try validateJobName(name)
            if let id = jobNames[name] {
                guard !jobs[id]!.cancelled else { throw .invalidArgument("job '\(name)' (\(id)) was cancelled; forget it to use its name again") }
                job = id
            } else {
                try makeRoomForJob(now: now)
                job = makeJob(name: name, detached: detached, now: now)
            }
        }
        if detached && !jobs[job]!.detached {
            jobs[job]!.detached = true
            journalJob(job)
        }
        // A detached job's tasks keep their session exempt from the timeout, whoever adds them.
        let jobDetached = jobs[job]!.detached
        var filed = submissions
        for index in filed.indices {
            filed[index].job = job
            if jobDetached { filed[index].detached = true }
        }
        let ids = submitValidated(filed, session: session, now: now)
        noteJobEndedIfDone(job, now: now)
        return (job, ids)
    }

    /// A job name: 1 to `jobNameBytesMax` bytes, no control characters, and not all digits
    /// (a reference of digits is an id, so a name never reads as one).
    func validateJobName(_ name: String) throws(Refusal) {
        guard !name.isEmpty, name.utf8.count <= bounds.jobNameBytesMax else {
            throw .invalidArgument("job name must be 1 to \(bounds.jobNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: name, "job name")
        if name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            throw .invalidArgument("job name '\(name)' is all digits, which reads as a job id; give it a letter")
        }
    }

    private mutating func makeJob(name: String?, detached: Bool, now: Double) -> JobID {
        let id = nextJobID
        nextJobID += 1
        jobs[id] = JobRecord(name: name, detached: detached, createdAt: now)
        if let name { jobNames[name] = id }
        journalJob(id)
        return id
    }

    private mutating func journalJob(_ id: JobID) {
        guard journaling, let record = jobs[id] else { return }
        journal.append(.jobMade(RecoveredJob(id: id, name: record.name, detached: record.detached, cancelled: record.cancelled)))
    }

    /// At `jobsMax`, forgets the oldest ended job; refuses if none has ended.
    private mutating func makeRoomForJob(now: Double) throws(Refusal) {
        guard jobs.count >= bounds.jobsMax else { return }
        guard let oldest = endedJobsOldestFirst().first else {
            throw .unavailable("the coordinator holds \(jobs.count) jobs, the most it keeps, and none has ended; wait for one, or cancel and forget one")
        }
        dropJob(oldest)
    }

    /// Ended jobs in the order the bounds forget them: attached ones (their client got
    /// their results) before detached ones, oldest first within each.
    private func endedJobsOldestFirst() -> [JobID] {
        jobs.filter { $0.value.endedAt != nil || $0.value.cancelled && $0.value.finished == $0.value.taskIDs.count }
            .sorted { ($0.value.detached ? 1 : 0, $0.key) < ($1.value.detached ? 1 : 0, $1.key) }
            .map(\.key)
    }

    /// Appends task `task` to job `job`'s input order; returns its place.
    mutating func addToJob(_ job: JobID, task: TaskID) -> Int {
        Self.inPlace(&jobs[job]) { record -> Int in
            guard record != nil else { return 0 }
            record!.taskIDs.append(task)
            record!.outcomes.append(nil)
            record!.endedAt = nil
            return record!.taskIDs.count - 1
        }
    }

    /// A task of `job` moved into (1) or out of (-1) the waiting or running phase.
    @inline(__always)
    mutating func countJob(_ job: JobID, waiting: Int = 0, running: Int = 0) {
        guard job != 0 else { return }
        Self.inPlace(&jobs[job]) { record in
            guard record != nil else { return }
            record!.waiting += waiting
            record!.running += running
        }
    }

    /// Files a finished task's outcome in its job.
    mutating func jobTaskFinished(_ job: JobID, index: Int, outcome: TaskOutcome, phase: TaskPhase, now: Double) {
        let cost = Self.inPlace(&jobs[job]) { record -> Int? in
            guard record != nil, index < record!.outcomes.count, record!.outcomes[index] == nil else { return nil }
            var kept = outcome
            if record!.cancelled { kept.output = [] }
            record!.outcomes[index] = kept
            switch phase {
            case .succeeded: record!.succeeded += 1
            case .cancelled: record!.cancelledTasks += 1
            default: record!.failed += 1
            }
            let cost = Self.resultCost(kept)
            record!.resultBytes += cost
            return cost
        }
        guard let cost else { return }
        jobResultBytes += cost
        noteJobEndedIfDone(job, now: now)
    }

    private mutating func noteJobEndedIfDone(_ job: JobID, now: Double) {
        guard let record = jobs[job], record.endedAt == nil, record.finished == record.taskIDs.count, !record.taskIDs.isEmpty else { return }
        jobs[job]!.endedAt = now
        trimJobResults(keeping: job)
    }

    /// Forgets ended jobs (see `endedJobsOldestFirst`) while jobs keep more result bytes than
    /// `jobResultBytesMax`; the job that just ended goes last.
    private mutating func trimJobResults(keeping newest: JobID) {
        guard jobResultBytes > bounds.jobResultBytesMax else { return }
        let order = endedJobsOldestFirst().filter { $0 != newest } + [newest]
        for id in order {
            guard jobResultBytes > bounds.jobResultBytesMax else { break }
            dropJob(id)
        }
    }

    /// Removes an ended job and its kept results. Its tasks stay where sessions hold them.
    private mutating func dropJob(_ id: JobID) {
        guard let record = jobs.removeValue(forKey: id) else { return }
        if let name = record.name, jobNames[name] == id { jobNames[name] = nil }
        jobResultBytes -= record.resultBytes
        if journaling { journal.append(.jobForgotten(id)) }
        note(.jobForgotten(id: id, tasks: record.taskIDs.count))
    }

    // MARK: Cancelling and forgetting

    /// Cancels the job's unfinished tasks (queued ones are removed, running ones' nodes are
    /// told) and frees its results. Returns the sessions that gained results and the number
    /// of tasks cancelled.
    public mutating func cancel(job id: JobID, now: Double) throws(Refusal) -> (sessions: Set<String>, cancelled: Int) {
        guard let record = jobs[id] else { throw .notFound("job \(id) is not known (never made, or forgotten)") }
        if !record.cancelled {
            jobs[id]!.cancelled = true
            if journaling { journal.append(.jobCancelled(id)) }
            var freed = 0
            Self.inPlace(&jobs[id]) { job in
                for index in job!.outcomes.indices where job!.outcomes[index] != nil {
                    freed += job!.outcomes[index]!.output.count
                    job!.outcomes[index]!.output = []
                }
                job!.resultBytes -= freed
            }
            jobResultBytes -= freed
        }
        let unfinished = record.taskIDs.enumerated().filter { record.outcomes[$0.offset] == nil }.map(\.element)
        return cancel(unfinished, now: now)
    }

    /// Forgets a job that has ended (cancel a running one first): its results go, its id is
    /// not used again, its name is free.
    public mutating func forget(job id: JobID) throws(Refusal) {
        guard let record = jobs[id] else { throw .notFound("job \(id) is not known (never made, or forgotten)") }
        let unfinished = record.taskIDs.count - record.finished
        guard unfinished == 0 else {
            throw .invalidArgument("job \(id) has \(unfinished) unfinished task(s); cancel it first (colony job cancel \(id))")
        }
        dropJob(id)
    }

    // MARK: Queries

    /// The job an id (all digits) or a name refers to; nil if none.
    public func jobID(for reference: String) -> JobID? {
        if !reference.isEmpty, reference.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            guard let id = JobID(reference), jobs[id] != nil else { return nil }
            return id
        }
        return jobNames[reference]
    }

    /// The ids of job `id`'s tasks in input order from position `from` (at most `max`), and
    /// how many tasks it has; nil for an unknown job.
    public func jobTaskIDs(_ id: JobID, from: Int, max: Int) -> (ids: [TaskID], total: Int)? {
        guard let record = jobs[id] else { return nil }
        let start = Swift.min(Swift.max(0, from), record.taskIDs.count)
        return (Array(record.taskIDs[start..<Swift.min(record.taskIDs.count, start + Swift.max(0, max))]), record.taskIDs.count)
    }

    public func jobInfo(_ id: JobID, now: Double) -> JobInfo? {
        guard let record = jobs[id] else { return nil }
        var failures: [JobFailure] = []
        if record.failed > 0 {
            for (index, outcome) in record.outcomes.enumerated() {
                guard let outcome, !outcome.succeeded, !outcome.cancelled else { continue }
                failures.append(JobFailure(id: outcome.id, index: index, error: outcome.error,
                                           reason: outcome.failure ?? .error))
                if failures.count == Self.jobFailuresShownMax { break }
            }
        }
        return JobInfo(id: id, name: record.name, detached: record.detached, state: record.state, counts: record.counts,
                       ageSeconds: Swift.max(0, now - record.createdAt),
                       elapsedSeconds: Swift.max(0, (record.endedAt ?? now) - record.createdAt), failures: failures)
    }

    /// Jobs, newest first, without their failures (`jobInfo` has them). Every status asks for
    /// the newest 50: with many jobs they are found by counting down from the newest id
    /// (the bounds forget the oldest, so the newest ids are mostly held) instead of sorting all.
    public func jobInfos(now: Double, max: Int = 1000) -> [JobInfo] {
        var newest: [JobID] = []
        if jobs.count <= max * 4 {
            newest = Array(jobs.keys.sorted(by: >).prefix(Swift.max(0, max)))
        } else {
            var id = nextJobID
            while id > 1 && newest.count < max {
                id -= 1
                if jobs[id] != nil { newest.append(id) }
            }
        }
        return newest.compactMap { id in
            guard let record = jobs[id] else { return nil }
            return JobInfo(id: id, name: record.name, detached: record.detached, state: record.state, counts: record.counts,
                           ageSeconds: Swift.max(0, now - record.createdAt),
                           elapsedSeconds: Swift.max(0, (record.endedAt ?? now) - record.createdAt))
        }
    }

    /// Jobs held, by state.
    public var jobsByState: [JobState: Int] {
        var counts: [JobState: Int] = [:]
        for record in jobs.values { counts[record.state, default: 0] += 1 }
        return counts
    }

    /// Up to `max` results of the job in input order from position `from`, stopping at the
    /// first task not finished yet. Refused for a job not known, or cancelled (its results
    /// were freed).
    public func jobResults(_ id: JobID, from: Int, max: Int) throws(Refusal) -> JobResultsPage {
        guard let record = jobs[id] else { throw .notFound("job \(id) is not known (never made, or forgotten)") }
        guard !record.cancelled else { throw .invalidArgument("job \(id) was cancelled; its results were freed") }
        guard from >= 0 else { throw .invalidArgument("a results position must be 0 or more") }
        var results: [TaskOutcome] = []
        var next = Swift.min(from, record.outcomes.count)
        while next < record.outcomes.count, results.count < max, let outcome = record.outcomes[next] {
            results.append(outcome)
            next += 1
        }
        return JobResultsPage(results: results, next: next, total: record.taskIDs.count, ended: record.finished == record.taskIDs.count)
    }

    // MARK: Restoring

    mutating func restoreJob(_ job: RecoveredJob, now: Double) {
        var record = JobRecord(name: job.name, detached: job.detached, createdAt: now)
        record.cancelled = job.cancelled
        jobs[job.id] = record
        if let name = job.name { jobNames[name] = job.id }
        nextJobID = Swift.max(nextJobID, job.id + 1)
    }

    /// Adds a restored task (finished with `outcome`, or not) to its job; returns its place.
    mutating func restoreJobTask(_ job: JobID, task: TaskID, outcome: TaskOutcome?) -> Int {
        let index = addToJob(job, task: task)
        if let outcome {
            let phase: TaskPhase = outcome.cancelled ? .cancelled : outcome.succeeded ? .succeeded : .failed
            jobTaskFinished(job, index: index, outcome: outcome, phase: phase, now: 0)
        }
        return index
    }

    /// Ends the restore: the next job id, and ended jobs marked so (restored clocks start now).
    mutating func finishJobRestore(nextJobID next: JobID, now: Double) {
        nextJobID = Swift.max(nextJobID, next)
        for id in Array(jobs.keys) {
            jobs[id]!.createdAt = now
            let record = jobs[id]!
            jobs[id]!.endedAt = record.finished == record.taskIDs.count && !record.taskIDs.isEmpty ? now : nil
        }
    }

    // MARK: Checks

    /// Each job's counts against a recount of its tasks, and its result bytes against theirs.
    /// Unfinished phases are recounted from the live tasks; finished ones from the kept
    /// outcomes only for running jobs of at most 4096 tasks (an ended job's counts no longer
    /// move; a larger job's unfinished ones are checked), so that a run keeping every result ever made does not make each check cost all
    /// of them (the simulations check after every few steps).
    func jobInvariantViolations() -> [String] {
        var problems: [String] = []
        var recount: [JobID: JobCounts] = [:]
        for task in tasks.values where task.job != 0 && jobs[task.job] != nil {
            switch phase(of: task) {
            case .waiting: recount[task.job, default: JobCounts()].waiting += 1
            case .queued: recount[task.job, default: JobCounts()].queued += 1
            case .running: recount[task.job, default: JobCounts()].running += 1
            default: break
            }
        }
        var bytes = 0
        for (id, record) in jobs {
            bytes += record.resultBytes
            if record.endedAt != nil {
                if record.finished != record.taskIDs.count || record.waiting != 0 || record.running != 0 || recount[id] != nil {
                    problems.append("job \(id) ended with counts \(record.counts) for \(record.taskIDs.count) tasks")
                }
                continue
            }
            if record.taskIDs.count > 4096 {
                let live = recount[id] ?? JobCounts()
                let counts = record.counts
                if (live.waiting, live.queued, live.running) != (counts.waiting, counts.queued, counts.running) {
                    problems.append("job \(id): unfinished counts \(counts) != recount \(live)")
                }
                continue
            }
            var expected = recount[id] ?? JobCounts()
            for outcome in record.outcomes {
                guard let outcome else { continue }
                if outcome.cancelled { expected.cancelled += 1 } else if outcome.succeeded { expected.succeeded += 1 } else { expected.failed += 1 }
            }
            if expected != record.counts { problems.append("job \(id): counts \(record.counts) != recount \(expected)") }
            let cost = record.outcomes.reduce(0) { $0 + ($1.map(Self.resultCost) ?? 0) }
            if cost != record.resultBytes { problems.append("job \(id): result bytes \(record.resultBytes) != \(cost)") }
            if (record.endedAt != nil) != (record.finished == record.taskIDs.count && !record.taskIDs.isEmpty) {
                problems.append("job \(id): ended \(record.endedAt != nil) with \(record.finished) of \(record.taskIDs.count) finished")
            }
        }
        if bytes != jobResultBytes { problems.append("jobResultBytes \(jobResultBytes) != \(bytes)") }
        return problems
    }
}
