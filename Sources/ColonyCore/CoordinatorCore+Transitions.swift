import ColonyModel

extension CoordinatorCore {
    // MARK: Transitions

    /// Runs `body` on a record in place. A read through a dictionary's getter copies the
    /// whole record (a dozen retains and releases for a task or node record), which was most
    /// of the core's time per task; an `inout` access through `_modify` copies nothing.
    @inline(__always)
    static func inPlace<Record, Result>(_ record: inout Record?, _ body: (inout Record?) -> Result) -> Result {
        body(&record)
    }

    mutating func releaseLease(_ id: TaskID, node: String) {
        // One lookup of the node, not one per table: this runs once per finished task.
        let released = Self.inPlace(&nodes[node]) { record -> Bool in
            guard record?.leased.removeValue(forKey: id) != nil else { return false }
            record!.adopted.remove(id)
            record!.leaseSeq[id] = nil
            if let pool = record!.leasePool.removeValue(forKey: id) { record!.countHolding(in: pool, -1) }
            if !record!.grants.isEmpty, let grant = record!.grants.removeValue(forKey: id) { record!.resourceUse.remove(grant) }
            return true
        }
        guard released else { return }
        leasedTotal -= 1
        let (uses, job) = Self.inPlace(&tasks[id]) { ($0?.options.uses ?? [], $0?.job ?? 0) }
        countJob(job, running: -1)
        for limit in uses { limitInUse[limit, default: 0] -= 1 }
    }

    mutating func release(_ abandoned: AbandonedLease, node: String) {
        guard nodes[node]?.abandoned.remove(abandoned) != nil else { return }
        nodes[node]!.countHolding(in: abandoned.pool, -1)
        if let grant = abandoned.grant { nodes[node]!.resourceUse.remove(grant) }
        leasedTotal -= 1
        for limit in abandoned.uses { limitInUse[limit, default: 0] -= 1 }
    }

    /// The attempt stays on the node's books (slot and limits) until the node lets go of it;
    /// the node is told to stop it on its next pull.
    mutating func abandonLease(_ id: TaskID, node: String) {
        guard let attempt = nodes[node]?.leased.removeValue(forKey: id), let task = tasks[id] else { return }
        nodes[node]!.leaseSeq[id] = nil
        nodes[node]!.adopted.remove(id)
        // Still holding its slot in the same pool, now as abandoned.
        let pool = nodes[node]!.leasePool.removeValue(forKey: id) ?? .thread
        // The grant moves with it: the node may still be using those ids.
        let grant = nodes[node]!.grants.removeValue(forKey: id)
        nodes[node]!.abandoned.insert(AbandonedLease(id: id, attempt: attempt, uses: task.options.uses, pool: pool, grant: grant))
        nodes[node]!.toCancel.insert(id)
        countJob(task.job, running: -1)
        // The task leaves the running state; the lease itself is counted on as abandoned.
        var updated = task
        updated.state = .queued  // replaced at once by the caller's transition (finish or back-off)
        tasks[id] = updated
    }

    /// A failed attempt: back off and retry if allowed and attempts remain, else fail for good.
    @discardableResult
    mutating func attemptFailed(_ id: TaskID, error: String, failure: FailureKind, retryable: Bool, now: Double) -> String? {
        guard var task = tasks[id] else { return nil }
        task.lastError = error
        task.lastFailure = failure
        if retryable && task.runs < task.options.maxAttempts {
            retriedTotal += 1
            let backoff = Backoff(baseSeconds: bounds.retryBackoffBaseSeconds, maxSeconds: bounds.retryBackoffMaxSeconds, jitter: 0.5)
            let unit = Double(random.next() % 1_000_000) / 1_000_000
            task.state = .backoff(until: now + backoff.seconds(afterFailures: Int(task.attempt), unit: unit))
            backoffCount += 1
            countJob(task.job, waiting: 1)
            timedTasks.insert(id)
            tasks[id] = task
            return nil
        }
        tasks[id] = task
        return finish(id, phase: .failed, error: error, failure: failure, now: now)
    }

    /// Ends a task for good and files its result under its session. Returns the session.
    @discardableResult
    mutating func finish(_ id: TaskID, phase: TaskPhase, output: [UInt8] = [], error: String = "", failure: FailureKind = .error,
                                 runMicros: UInt64 = 0, now: Double) -> String? {
        typealias Finished = (previous: State, session: String, handler: String, node: String, attempt: UInt32, lastError: String,
                              lastFailure: FailureKind, after: [TaskID], dependents: [TaskID], job: JobID, jobIndex: Int)
        let finished = Self.inPlace(&tasks[id]) { record -> Finished? in
            guard let previous = record?.state else { return nil }
            if case .finished = previous { return nil }
            record!.state = .finished(phase)
            record!.input = []
            record!.finishedAt = now
            if !error.isEmpty { record!.lastError = error }
            if phase == .failed { record!.lastFailure = failure }
            if phase == .succeeded { record!.output = output }
            return (previous, record!.session, record!.handler, record!.node, record!.attempt, record!.lastError, record!.lastFailure,
                    record!.options.after, record!.dependents, record!.job, record!.jobIndex)
        }
        guard let task = finished else { return nil }
        switch task.previous {
        case .waiting:
            waitingCount -= 1
            countJob(task.job, waiting: -1)
        case .backoff:
            backoffCount -= 1
            countJob(task.job, waiting: -1)
        default: break
        }
        switch phase {
        case .succeeded:
            succeededTotal += 1
        case .cancelled: cancelledTotal += 1
        default:
            failedTotal += 1
            figures.noteFailure(id: id, handler: task.handler, error: task.lastError, reason: task.lastFailure, node: task.node, at: now)
            note(.taskFailed(id: id, handler: task.handler, node: task.node, attempts: task.attempt, error: task.lastError, reason: task.lastFailure))
        }
        let outcome = TaskOutcome(id: id, attempt: task.attempt, succeeded: phase == .succeeded, output: output,
                                  error: phase == .succeeded ? "" : task.lastError, failure: phase == .failed ? task.lastFailure : nil,
                                  node: task.node, runMicros: runMicros,
                                  cancelled: phase == .cancelled)
        if journaling { journal.append(.finished(outcome)) }
        if task.job != 0 { jobTaskFinished(task.job, index: task.jobIndex, outcome: outcome, phase: phase, now: now) }
        // A session whose results nobody will read (`SessionRecord.resultsUnwanted`) files none.
        let unwanted = sessions[task.session]?.resultsUnwanted ?? false
        if !unwanted {
            sessions[task.session, default: SessionRecord()].finished.append(FinishedResult(outcome: outcome, finishedAt: now))
            resultsWaiting += 1
        }
        sessions[task.session]!.unfinished -= 1
        // Parents: this task no longer needs their outputs.
        for parent in Set(task.after) { releaseReader(parent) }
        // Children: ready, or failed in cascade.
        for child in task.dependents {
            guard var dependent = tasks[child], case .waiting(let remaining) = dependent.state else { continue }
            if phase == .succeeded {
                if remaining <= 1 {
                    dependent.state = .queued
                    waitingCount -= 1
                    countJob(dependent.job, waiting: -1)
                    tasks[child] = dependent
                    ready.push(child, priority: dependent.options.priority, key: dependent.classKey)
                } else {
                    dependent.state = .waiting(remaining: remaining - 1)
                    tasks[child] = dependent
                }
            } else {
                let cascade: TaskPhase = phase == .cancelled ? .cancelled : .failed
                finish(child, phase: cascade, error: "dependency \(id) \(phase == .cancelled ? "was cancelled" : "failed")", failure: .dependency, now: now)
            }
        }
        if unwanted {
            if sessions[task.session]!.unfinished == 0 && sessions[task.session]!.finished.isEmpty { sessions[task.session] = nil }
            forget(id)
            return nil
        }
        return task.session
    }

    mutating func releaseReader(_ parent: TaskID) {
        guard var record = tasks[parent] else { return }
        record.readers -= 1
        if record.readers <= 0 {
            tasks[parent] = record
            if case .finished = record.state, !(sessions[record.session]?.finished.contains { $0.outcome.id == parent } ?? false) {
                tasks[parent] = nil
                if let key = record.key { keys[key] = nil }
            }
        } else {
            tasks[parent] = record
        }
    }

    /// Drops a task whose result was handed out, unless dependents still read its output or
    /// its node still holds it.
    mutating func forget(_ id: TaskID) {
        guard let (readers, job) = Self.inPlace(&tasks[id], { record in record.map { ($0.readers, $0.job) } }) else { return }
        // Durably gone once handed out, even if dependents still read it in memory; a job
        // still held keeps its result (its row stays, marked delivered to the session).
        if journaling { journal.append(job != 0 && jobs[job] != nil ? .delivered(id) : .removed(id)) }
        if readers > 0 { return }
        guard let task = tasks.removeValue(forKey: id) else { return }
        if case .finished(let phase) = task.state {
            let output = task.output ?? []
            remembered[id] = Remembered(phase: phase, output: output, at: task.finishedAt, key: task.key)
            rememberedOrder.append(id)
            rememberedBytes += output.count
            trimRemembered(now: task.finishedAt)
        }
    }

    /// Forgets the oldest remembered tasks past their time or over the byte budget.
    mutating func trimRemembered(now: Double) {
        while rememberedHead < rememberedOrder.count {
            let id = rememberedOrder[rememberedHead]
            guard let entry = remembered[id] else {
                rememberedHead += 1
                continue
            }
            guard now - entry.at > bounds.finishedMemorySeconds || rememberedBytes > bounds.finishedMemoryBytesMax else { break }
            remembered[id] = nil
            if let key = entry.key { keys[key] = nil }
            rememberedBytes -= entry.output.count
            rememberedHead += 1
        }
        if rememberedHead > 4096 && rememberedHead * 2 > rememberedOrder.count {
            rememberedOrder.removeFirst(rememberedHead)
            rememberedHead = 0
        }
    }
}
