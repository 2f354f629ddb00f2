import ColonyCore

/// The coordinator's state and its waiting requests: the core, plus the pulls and fetches
/// parked until there is something to answer (long polls).
///
/// One actor serializes every decision; parked requests are continuations resumed by the
/// event that satisfies them or by `expire` at their deadline.
actor CoordinatorState {
    private struct ParkedPull {
        var continuation: CheckedContinuation<[DispatchedTask], Never>
        var deadline: Double
        var sequence: UInt64
    }

    private struct ParkedFetch {
        var continuation: CheckedContinuation<(results: [TaskOutcome], unfinished: Int), Never>
        var maxResults: Int
        var deadline: Double
        var sequence: UInt64
    }

    private var core: CoordinatorCore
    private var parkedPulls: [String: ParkedPull] = [:]
    private var parkedFetches: [String: [ParkedFetch]] = [:]
    private var sequence: UInt64 = 0
    private var closed = false
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant

    init(limits: CoordinatorCore.Limits) {
        core = CoordinatorCore(limits: limits)
        started = clock.now
    }

    private var now: Double {
        let elapsed = clock.now - started
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    func submit(_ submissions: [TaskSubmission], session: String) throws(CoordinatorCore.Refusal) -> [TaskID] {
        let ids = try core.submit(submissions, session: session)
        wakeParkedPulls()
        return ids
    }

    /// A node's pull: applies its results, then answers at once with work, or parks until
    /// work arrives or `waitSeconds` pass. A newer pull of the same node answers the parked
    /// one (empty), so each node has at most one parked pull.
    func pull(node: NodeAnnouncement, results: [TaskOutcome], waitSeconds: Double) async throws(CoordinatorCore.Refusal) -> [DispatchedTask] {
        let sessions = try core.report(node: node, results: results, now: now)
        for session in sessions { answerParkedFetches(session: session) }
        if let previous = parkedPulls.removeValue(forKey: node.name) {
            previous.continuation.resume(returning: [])
        }
        let tasks = core.dispatch(toNode: node.name)
        if !tasks.isEmpty || waitSeconds <= 0 || closed { return tasks }
        let deadline = now + waitSeconds
        sequence += 1
        let order = sequence
        return await withCheckedContinuation { continuation in
            parkedPulls[node.name] = ParkedPull(continuation: continuation, deadline: deadline, sequence: order)
        }
    }

    /// A client's fetch of its session's results: answers at once when there are some (or
    /// nothing is pending), else parks until results arrive or `waitSeconds` pass.
    func fetch(session: String, maxResults: Int, waitSeconds: Double) async -> (results: [TaskOutcome], unfinished: Int) {
        let taken = core.takeResults(session: session, max: maxResults)
        if !taken.results.isEmpty || taken.unfinished == 0 || waitSeconds <= 0 || closed { return taken }
        let deadline = now + waitSeconds
        sequence += 1
        let order = sequence
        return await withCheckedContinuation { continuation in
            parkedFetches[session, default: []].append(
                ParkedFetch(continuation: continuation, maxResults: maxResults, deadline: deadline, sequence: order))
        }
    }

    func status() -> ClusterStatus {
        core.status(now: now)
    }

    /// Answers every parked request whose deadline has passed (empty: the long poll ended).
    func expire() {
        let t = now
        for (name, parked) in parkedPulls where parked.deadline <= t {
            parkedPulls[name] = nil
            parked.continuation.resume(returning: [])
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
    }

    /// Answers all parked requests and parks no more (shutdown).
    func close() {
        closed = true
        for parked in parkedPulls.values { parked.continuation.resume(returning: []) }
        parkedPulls = [:]
        for (session, waiting) in parkedFetches {
            for parked in waiting { parked.continuation.resume(returning: ([], core.unfinished(session: session))) }
        }
        parkedFetches = [:]
    }

    private func wakeParkedPulls() {
        guard core.queuedCount > 0, !parkedPulls.isEmpty else { return }
        // Oldest parked first, so that idle nodes share new work in the order they asked.
        for (name, parked) in parkedPulls.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            if core.queuedCount == 0 { break }
            let tasks = core.dispatch(toNode: name)
            if tasks.isEmpty { continue }
            parkedPulls[name] = nil
            parked.continuation.resume(returning: tasks)
        }
    }

    private func answerParkedFetches(session: String) {
        guard var waiting = parkedFetches[session] else { return }
        while !waiting.isEmpty && core.hasResults(session: session) {
            let parked = waiting.removeFirst()
            parked.continuation.resume(returning: core.takeResults(session: session, max: parked.maxResults))
        }
        parkedFetches[session] = waiting.isEmpty ? nil : waiting
    }
}
