import ColonyModel

extension CoordinatorCore {
    /// Checks the core's books against each other; returns what is wrong (empty when sound).
    /// The simulation calls it after every step; it is too slow for production use. `jobs`:
    /// also recount every job (the costliest part).
    public func invariantViolations(jobs: Bool = true) -> [String] {
        var problems: [String] = []
        var holding = 0
        var usage: [String: Int] = [:]
        for (name, node) in nodes {
            holding += node.holding
            if Set(node.leasePool.keys) != Set(node.leased.keys) { problems.append("node \(name): lease pools do not match its leases") }
            let inProcess = node.leasePool.values.filter { $0 == .process }.count + node.abandoned.filter { $0.pool == .process }.count
            if inProcess != node.holdingProcess { problems.append("node \(name): holdingProcess \(node.holdingProcess) != \(inProcess)") }
            let inIO = node.leasePool.values.filter { $0 == .io }.count + node.abandoned.filter { $0.pool == .io }.count
            if inIO != node.holdingIO { problems.append("node \(name): holdingIO \(node.holdingIO) != \(inIO)") }
            // A node may hold more than its slots when it announced fewer than it had, or
            // reported restored tasks running; dispatch must never add to that.
            let threadCapacity = node.announcement.threadSlots + node.announcement.prefetch
            let processCapacity = node.announcement.processSlots + node.announcement.processPrefetch
            var held = node.holdingWithCpus
            held.thread -= node.waitingAtDispatch.thread
            held.process -= node.waitingAtDispatch.process
            held.io -= node.waitingAtDispatch.io
            if held.thread > max(threadCapacity, node.heldBeforeDispatch.thread)
                || held.process > max(processCapacity, node.heldBeforeDispatch.process)
                || held.io > max(node.announcement.ioSlots, node.heldBeforeDispatch.io) {
                problems.append("node \(name) was given more than its slots: \(held.thread) thread, \(held.process) process, \(held.io) io")
            }
            problems += resourceViolations(node: name, record: node)
            for (id, pool) in node.leasePool {
                if let wanted = tasks[id]?.options.pool, wanted != .automatic, wanted != pool {
                    problems.append("task \(id) asked for the \(wanted) pool but runs in the \(pool) pool")
                }
            }
            for (id, attempt) in node.leased {
                guard let task = tasks[id] else {
                    problems.append("node \(name) leases unknown task \(id)")
                    continue
                }
                if task.state != .leased(node: name, since: leaseSince(task)) { problems.append("task \(id) leased to \(name) but in state \(task.state)") }
                if task.attempt != attempt { problems.append("task \(id) lease attempt \(attempt) != task attempt \(task.attempt)") }
                for limit in task.options.uses { usage[limit, default: 0] += 1 }
            }
            for abandoned in node.abandoned {
                for limit in abandoned.uses { usage[limit, default: 0] += 1 }
            }
        }
        if holding != leasedTotal { problems.append("leasedTotal \(leasedTotal) != leases held \(holding)") }
        for name in Set(usage.keys).union(limitInUse.keys) where (usage[name] ?? 0) != (limitInUse[name] ?? 0) {
            problems.append("limit \(name): in use \(limitInUse[name] ?? 0), leases using it \(usage[name] ?? 0)")
        }
        let queued = tasks.values.filter { $0.state == .queued }.count
        if queued != ready.count { problems.append("ready queue counts \(ready.count), tasks queued \(queued)") }
        var waiting = 0
        var backoff = 0
        var unfinished: [String: Int] = [:]
        for (id, task) in tasks {
            if case .leased(let node, _) = task.state, nodes[node]?.leased[id] != task.attempt {
                problems.append("task \(id) says it is leased to \(node), which does not hold it")
            }
            switch task.state {
            case .waiting: waiting += 1
            case .backoff: backoff += 1
            default: break
            }
            if case .finished = task.state {} else { unfinished[task.session, default: 0] += 1 }
        }
        if waiting != waitingCount { problems.append("waitingCount \(waitingCount) != \(waiting)") }
        if backoff != backoffCount { problems.append("backoffCount \(backoffCount) != \(backoff)") }
        for (session, record) in sessions where record.unfinished != (unfinished[session] ?? 0) {
            problems.append("session \(session): unfinished \(record.unfinished) != \(unfinished[session] ?? 0)")
        }
        if jobs { problems += jobInvariantViolations() }
        return problems
    }

    private func leaseSince(_ task: TaskRecord) -> Double {
        if case .leased(_, let since) = task.state { return since }
        return -1
    }

    /// Whether a queued task with a higher priority than `priority` could have gone to `node`
    /// in `pool` (used by the simulation to check that dispatch takes the best eligible task first).
    public func hasEligibleQueuedTask(above priority: Int32, forNode node: String, pool: TaskPool) -> Bool {
        guard let record = nodes[node] else { return false }
        for task in tasks.values where task.state == .queued && task.options.priority > priority && record.pool(for: task.classKey) == pool {
            let limitsFree = task.options.uses.allSatisfy { (limitInUse[$0] ?? 0) < (limitSizes[$0] ?? 0) }
            let labelsMatch = task.options.requiredLabels.allSatisfy { record.announcement.labels[$0.key] == $0.value }
            if limitsFree && labelsMatch { return true }
        }
        return false
    }

    /// Priority of a known task.
    public func priority(of id: TaskID) -> Int32? { tasks[id]?.options.priority }
}
