import ColonyModel

extension CoordinatorCore {
    // MARK: Queries

    public func taskInfo(_ id: TaskID) -> TaskInfo? {
        guard let task = tasks[id] else { return nil }
        return TaskInfo(id: id, handler: task.handler, phase: phase(of: task), attempt: task.attempt, node: task.node,
                        error: task.lastError, priority: task.options.priority)
    }

    /// Tasks the coordinator still knows (unfinished, or finished and not yet fetched).
    public func taskInfos(phase wanted: TaskPhase? = nil, limit: Int = 1000) -> [TaskInfo] {
        var infos: [TaskInfo] = []
        for id in tasks.keys.sorted() {
            guard let info = taskInfo(id), wanted == nil || info.phase == wanted else { continue }
            infos.append(info)
            if infos.count == limit { break }
        }
        return infos
    }

    func phase(of task: TaskRecord) -> TaskPhase {
        switch task.state {
        case .waiting, .backoff: .waiting
        case .queued: .queued
        case .leased: .running
        case .finished(let phase): phase
        }
    }

    public func status(now: Double) -> ClusterStatus {
        let nodeList = nodes.values
            .sorted { $0.announcement.name < $1.announcement.name }
            .map {
                ClusterStatus.Node(announcement: $0.announcement, running: $0.leased.count, completed: $0.completed,
                                   failed: $0.failed, lastSeenSecondsAgo: Swift.max(0, now - $0.lastSeen))
                    .holding($0.resourceUse)
            }
        var status = ClusterStatus(nodes: nodeList, queued: ready.count, running: leasedTotal, succeeded: succeededTotal,
                                   failed: failedTotal, resultsWaiting: resultsWaiting, staleResultsDropped: staleDropped)
        status.cancelled = cancelledTotal
        status.retried = retriedTotal
        status.waiting = waitingCount + backoffCount
        status.limits = allLimits
        status.sessions = sessionStatuses(now: now)
        status.jobs = jobInfos(now: now, max: 50)
        status.jobsByState = jobsByState
        // Classes that ask for something (a handler, labels, a pool) that no live node offers
        // (with no node at all, nothing is counted: that is said apart).
        var reasons: [String: Int] = [:]
        if !nodes.isEmpty {
            for entry in ready.classes {
                if let reason = whyUnplaceable(entry.key) ?? whyStuckOnALimit(entry.key) { reasons[reason, default: 0] += entry.count }
            }
        }
        status.unplaceable = reasons.values.reduce(0, +)
        status.unplaceableReasons = reasons.map { Unplaceable(reason: $0.key, count: $0.value) }
            .sorted { ($0.count, $1.reason) > ($1.count, $0.reason) }
        return status
    }

    /// What node `name` last described itself as (nil: not a live node).
    public func announcement(ofNode name: String) -> NodeAnnouncement? { nodes[name]?.announcement }

    /// The pool in which `node` would run tasks of class `key` now: nil when a limit they use is
    /// full, the node lacks one of their labels, or it has no pool for them.
    static func pool(for key: ReadyQueue.ClassKey, on node: NodeRecord, limitsInUse inUse: [String: Int], limitSizes sizes: [String: Int]) -> TaskPool? {
        guard key.uses.allSatisfy({ (inUse[$0] ?? 0) < (sizes[$0] ?? 0) }),
              key.labels.allSatisfy({ node.announcement.labels[$0.key] == $0.value }) else { return nil }
        return node.pool(for: key)
    }

    /// Why no live node can run tasks of this class: the first of handler, labels and pool
    /// that none of them offers, or nil when one can.
    func whyUnplaceable(_ key: ReadyQueue.ClassKey) -> String? {
        // A draining node takes no new task.
        let taking = nodes.values.filter { !$0.announcement.draining }
        if taking.contains(where: { node in
            guard key.labels.allSatisfy({ node.announcement.labels[$0.key] == $0.value }), let pool = node.pool(for: key) else { return false }
            return key.resources.isEmpty || node.firstPossible(key.resources, pool: pool) != nil
        }) { return nil }
        if taking.isEmpty { return "every node is draining" }
        let withHandler = taking.filter { $0.announcement.handlers.isEmpty || $0.announcement.handlers.contains(key.handler) }
        if withHandler.isEmpty { return "no node has the handler '\(key.handler)'" }
        let labelled = withHandler.filter { node in key.labels.allSatisfy { node.announcement.labels[$0.key] == $0.value } }
        if labelled.isEmpty {
            let wanted = key.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return "no node with the handler '\(key.handler)' has the label(s) \(wanted)"
        }
        let pool = switch key.pool {
        case .process: "the process pool"
        case .thread: "the thread pool"
        case .io: "the io pool"
        case .automatic: "any pool"
        }
        if !labelled.contains(where: { $0.pool(for: key) != nil }) {
            return "no node with the handler '\(key.handler)'\(key.labels.isEmpty ? "" : " and its labels") has slots in \(pool)"
        }
        return Self.resourcesReason(key.resources)
    }

    /// Why tasks of this class may never start although a node could run them: a limit they
    /// use is full and every task holding it waits for its subtasks (a task keeps its limits
    /// while it waits, so a parent holding a limit its children need waits for ever); nil
    /// otherwise.
    func whyStuckOnALimit(_ key: ReadyQueue.ClassKey) -> String? {
        for limit in key.uses where (limitInUse[limit] ?? 0) >= (limitSizes[limit] ?? 0) {
            var holders: [TaskID] = []
            var allWait = true
            for node in nodes.values {
                for id in node.leased.keys where tasks[id]?.options.uses.contains(limit) == true {
                    holders.append(id)
                    if !node.announcement.waiting.contains(id) { allWait = false }
                }
                // A lease a lost node still owes holds the limit too, and is not waiting.
                if node.abandoned.contains(where: { $0.uses.contains(limit) }) { allWait = false }
            }
            guard allWait, !holders.isEmpty else { continue }
            let named = holders.sorted().prefix(5).map(String.init).joined(separator: ", ") + (holders.count > 5 ? ", ..." : "")
            return "the limit '\(limit)' is held only by tasks waiting for their subtasks (\(named)); a task keeps its limits while it waits, so if they wait for these, they wait for ever"
        }
        return nil
    }

    /// Adds a run time of `handler` to its average (or `replacing` it by at least `micros`).
    mutating func noteRunTime(handler: String, micros: Double, replacing: Bool = false) {
        if handlerRunMicros.count >= 10_000 && handlerRunMicros[handler] == nil { handlerRunMicros.removeAll() }
        if replacing {
            handlerRunMicros[handler] = Swift.max(handlerRunMicros[handler] ?? 0, micros)
        } else {
            handlerRunMicros[handler] = handlerRunMicros[handler].map { $0 * 0.8 + micros * 0.2 } ?? micros
        }
    }
}
