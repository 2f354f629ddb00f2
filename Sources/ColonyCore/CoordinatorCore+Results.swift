import ColonyModel

extension CoordinatorCore {
    // MARK: Results

    /// Hands out up to `max` finished results of `session` and forgets them.
    /// Returns them with the number of the session's tasks still unfinished.
    public mutating func takeResults(session: String, max: Int) -> (results: [TaskOutcome], unfinished: Int) {
        guard var record = sessions[session] else { return ([], 0) }
        let count = Swift.min(max, record.finished.count)
        let taken = record.finished.prefix(count).map(\.outcome)
        record.finished.removeFirst(count)
        for outcome in taken { forget(outcome.id) }
        resultsWaiting -= count
        if record.finished.isEmpty && record.unfinished == 0 {
            sessions[session] = nil
        } else {
            sessions[session] = record
        }
        return (taken, record.unfinished)
    }

    /// Hands out up to `max` finished results of `session` *without* forgetting them, after
    /// forgetting the `acked` ones (those the client confirmed from the previous fetch). A
    /// reply lost on the way is thus sent again by the next fetch; a client dedupes by id.
    public mutating func peekResults(session: String, max: Int, acked: [TaskID]) -> (results: [TaskOutcome], unfinished: Int) {
        guard var record = sessions[session] else { return ([], 0) }
        if !acked.isEmpty {
            let ackedSet = Set(acked)
            // Acknowledged results are the oldest ones as a rule: drop that prefix cheaply.
            var prefix = 0
            while prefix < record.finished.count && ackedSet.contains(record.finished[prefix].outcome.id) { prefix += 1 }
            var dropped = Array(record.finished.prefix(prefix))
            record.finished.removeFirst(prefix)
            if prefix < ackedSet.count {
                dropped += record.finished.filter { ackedSet.contains($0.outcome.id) }
                record.finished.removeAll { ackedSet.contains($0.outcome.id) }
            }
            sessions[session] = record
            for entry in dropped { forget(entry.outcome.id) }
            resultsWaiting -= dropped.count
        }
        let shown = record.finished.prefix(Swift.max(0, max)).map(\.outcome)
        if record.finished.isEmpty && record.unfinished == 0 { sessions[session] = nil }
        return (shown, record.unfinished)
    }

    /// Takes the result of one task, whichever session it belongs to; nil if it has not
    /// finished (or was fetched already).
    public mutating func takeResult(of id: TaskID) -> TaskOutcome? {
        guard let task = tasks[id], case .finished = task.state,
              let index = sessions[task.session]?.finished.firstIndex(where: { $0.outcome.id == id })
        else { return nil }
        let outcome = sessions[task.session]!.finished.remove(at: index).outcome
        resultsWaiting -= 1
        if sessions[task.session]!.finished.isEmpty && sessions[task.session]!.unfinished == 0 { sessions[task.session] = nil }
        forget(id)
        return outcome
    }

    /// Whether the coordinator still knows the task (unfinished, or its result unfetched).
    public func knows(_ id: TaskID) -> Bool { tasks[id] != nil }

    /// Whether `session` has results to hand out now.
    public func hasResults(session: String) -> Bool {
        !(sessions[session]?.finished.isEmpty ?? true)
    }

    /// Number of unfinished tasks of `session`.
    public func unfinished(session: String) -> Int {
        sessions[session]?.unfinished ?? 0
    }

    // MARK: Cancellation

    /// Cancels the tasks (and, in cascade, their dependents) that have not finished.
    /// A queued task is removed; a running one finishes as cancelled at once and its node is
    /// told on its next pull. Returns the sessions that gained results and how many tasks
    /// were cancelled.
    public mutating func cancel(_ ids: [TaskID], now: Double) -> (sessions: Set<String>, cancelled: Int) {
        var touched: Set<String> = []
        let before = cancelledTotal
        for id in ids {
            guard let task = tasks[id] else { continue }
            switch task.state {
            case .finished: continue
            case .leased(let node, _):
                abandonLease(id, node: node)
            case .queued:
                ready.forget()
            default:
                break
            }
            if let session = finish(id, phase: .cancelled, error: "cancelled", now: now) { touched.insert(session) }
        }
        return (touched, Int(cancelledTotal - before))
    }

    /// Cancels every unfinished task of `session`.
    public mutating func cancel(session: String, now: Double) -> (sessions: Set<String>, cancelled: Int) {
        let ids = tasks.filter { $0.value.session == session }.map(\.key).sorted()
        return cancel(ids, now: now)
    }
}
