import ColonyModel

/// Client sessions: when their clients were last heard from, and what happens to the work of
/// one that went away (see `Bounds.sessionIdleSeconds`).
extension CoordinatorCore {
    /// The session's client was heard from (a fetch; submits and cancels note it themselves),
    /// or, `fromNodesPull`, the node whose handlers submit in it pulled.
    public mutating func noteHeard(session: String, now: Double, fromNodesPull: Bool = false) {
        guard sessions[session] != nil else { return }
        sessions[session]!.lastHeard = now
        if fromNodesPull { sessions[session]!.ofNodeHandlers = true }
    }

    /// Cancels the unfinished tasks and drops the results of sessions not heard from for
    /// the session timeout (detached ones excepted). Returns the sessions touched.
    mutating func abandonIdleSessions(now: Double) -> Set<String> {
        var idle: [(session: String, idleSeconds: Double)] = []
        for (session, record) in sessions {
            guard let heard = record.lastHeard else {
                // A new or restored session: its clock starts now.
                sessions[session]!.lastHeard = now
                continue
            }
            if !record.detached && !record.resultsUnwanted && now - heard > bounds.sessionIdleSeconds { idle.append((session, now - heard)) }
        }
        var touched: Set<String> = []
        for (session, idleSeconds) in idle.sorted(by: { $0.session < $1.session }) {
            if sessions[session]!.ofNodeHandlers {
                // Subtasks of a node that is gone: the root's client and the job still want
                // them done (a parent retried elsewhere submits its own again), so they are
                // not cancelled; only their results, which nobody will read, are dropped.
                let dropped = sessions[session]!.finished
                sessions[session]!.finished = []
                sessions[session]!.resultsUnwanted = true
                for entry in dropped { forget(entry.outcome.id) }
                resultsWaiting -= dropped.count
                if sessions[session]!.unfinished == 0 { sessions[session] = nil }
                note(.sessionAbandoned(session: session, idleSeconds: idleSeconds, tasksCancelled: 0, resultsDropped: dropped.count))
                continue
            }
            let cancelled = cancel(session: session, now: now)
            touched.formUnion(cancelled.sessions)
            let dropped = sessions.removeValue(forKey: session)?.finished ?? []
            for entry in dropped { forget(entry.outcome.id) }
            resultsWaiting -= dropped.count
            note(.sessionAbandoned(session: session, idleSeconds: idleSeconds, tasksCancelled: cancelled.cancelled,
                                   resultsDropped: dropped.count))
        }
        touched.subtract(idle.map(\.session))
        return touched
    }

    /// Sessions with unfinished tasks or results waiting, most results waiting first.
    func sessionStatuses(now: Double, max: Int = 100) -> [SessionStatus] {
        sessions.map { session, record in
            SessionStatus(session: session, unfinished: record.unfinished, resultsWaiting: record.finished.count,
                          idleSeconds: Swift.max(0, now - (record.lastHeard ?? now)), detached: record.detached)
        }
        .sorted { ($0.resultsWaiting, $1.session) > ($1.resultsWaiting, $0.session) }
        .prefix(max)
        .map { $0 }
    }
}
