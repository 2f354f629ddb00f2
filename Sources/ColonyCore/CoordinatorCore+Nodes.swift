import ColonyModel

extension CoordinatorCore {
    // MARK: Nodes

    /// Records that `node` pulled at `now` and applies the results it carried.
    /// Returns the sessions that gained results (their waiting fetches can be answered).
    ///
    /// `returned`: tasks the node hands back unfinished (draining); they are queued again
    /// without counting as a failure. `leaving`: the node's last pull; what it still holds is
    /// queued again and the node is forgotten at once.
    public mutating func report(node announcement: NodeAnnouncement, results: [TaskOutcome], now: Double,
                                running: Set<TaskID>? = nil, ackedReplySeq: UInt64 = 0,
                                returned: [TaskID] = [], leaving: Bool = false) throws(Refusal) -> Set<String> {
        guard !announcement.name.isEmpty, announcement.name.utf8.count <= bounds.nodeNameBytesMax else {
            throw .invalidArgument("node name must be 1 to \(bounds.nodeNameBytesMax) bytes")
        }
        try NameCheck.refuseControlCharacters(in: announcement.name, "node name")
        guard announcement.threadSlots >= 0, announcement.threadSlots <= bounds.threadSlotsMax else {
            throw .invalidArgument("node slots must be 0 to \(bounds.threadSlotsMax)")
        }
        guard announcement.processSlots >= 0, announcement.processSlots <= bounds.threadSlotsMax else {
            throw .invalidArgument("node process slots must be 0 to \(bounds.threadSlotsMax)")
        }
        guard announcement.ioSlots >= 0, announcement.ioSlots <= bounds.ioSlotsMax else {
            throw .invalidArgument("node io slots must be 0 to \(bounds.ioSlotsMax)")
        }
        guard announcement.prefetch >= 0, announcement.prefetch <= bounds.prefetchMax,
              announcement.processPrefetch >= 0, announcement.processPrefetch <= bounds.prefetchMax else {
            throw .invalidArgument("node prefetch must be 0 to \(bounds.prefetchMax)")
        }
        // A node describes itself once per connection; re-checked only when that changes.
        if nodes[announcement.name].map({ !$0.announcement.describesTheSame(as: announcement) }) ?? true {
            try validateNodeDescription(announcement)
        }
        if nodes[announcement.name] == nil {
            note(.nodeJoined(name: announcement.name, host: announcement.host, threads: announcement.threadSlots,
                             processes: announcement.processSlots))
        }
        var record = nodes[announcement.name] ?? NodeRecord(announcement: announcement, lastSeen: now)
        record.announcement = announcement
        record.lastSeen = now
        record.suspect = false
        nodes[announcement.name] = record
        var touched: Set<String> = []
        for outcome in results {
            if let session = apply(outcome, from: announcement.name, now: now) { touched.insert(session) }
        }
        if let running, ackedReplySeq > 0 {
            adopt(running, node: announcement.name, now: now)
            tellStale(running, node: announcement.name)
            reconcile(node: announcement.name, running: running, ackedReplySeq: ackedReplySeq)
        }
        for id in returned {
            if let abandoned = nodes[announcement.name]?.abandoned.first(where: { $0.id == id }) {
                release(abandoned, node: announcement.name)
                continue
            }
            guard nodes[announcement.name]?.leased[id] != nil else { continue }
            releaseLease(id, node: announcement.name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            task.lastError = "handed back by node \(announcement.name) (\(announcement.draining ? "draining" : "not started in time"))"
            task.state = .queued
            task.unrun += 1
            tasks[id] = task
            ready.push(id, priority: task.options.priority, key: task.classKey)
            if !announcement.draining {
                // Queued behind longer work than the node expected: its handler is not one to prefetch.
                noteRunTime(handler: task.classKey.handler, micros: bounds.prefetchRunMicrosMax * 10, replacing: true)
            }
        }
        if announcement.draining { nodes[announcement.name]?.drainRequested = nil }
        if leaving {
            note(.nodeLeft(name: announcement.name, handedBack: nodes[announcement.name]?.holding ?? 0))
            touched.formUnion(requeueLeases(ofNode: announcement.name, reason: "node \(announcement.name) left", now: now))
            nodes[announcement.name] = nil
        }
        return touched
    }

    /// After a restart: tasks restored as queued that `node` reports running (it got them
    /// before the coordinator died) stay with it instead of running a second time elsewhere.
    mutating func adopt(_ running: Set<TaskID>, node name: String, now: Double) {
        // The node's leases are looked up once: `nodes[name]?.leased[id]` in the loop copied
        // the whole node record per running task (2.5% of the coordinator's CPU under W1,
        // with a node's prefetched tasks all "running"). The copy ends before the loop
        // mutates the leases, so they are not copied on write either.
        let unleased: [TaskID] = {
            guard let leased = nodes[name]?.leased else { return [] }
            return running.filter { leased[$0] == nil }
        }()
        for id in unleased {
            guard var task = tasks[id], task.restored, task.state == .queued else { continue }
            task.restored = false
            task.attempt += 1
            task.state = .leased(node: name, since: now)
            task.node = name
            tasks[id] = task
            ready.forget()
            for limit in task.options.uses { takeLimit(limit) }
            nodes[name]!.leased[id] = task.attempt
            // Sequence 0: from now on it is reconciled like any lease the node acknowledged.
            nodes[name]!.leaseSeq[id] = 0
            nodes[name]!.leasePool[id] = .thread
            nodes[name]!.adopted.insert(id)
            grantIfFits(id, options: task.options, node: name)
            leasedTotal += 1
            countJob(task.job, running: 1)
            adoptedTotal += 1
            if task.options.timeoutSeconds != nil { timedTasks.insert(id) }
        }
    }

    /// Attempts the node runs that are no longer its own (requeued while it was cut off, or
    /// run again elsewhere): it is told to stop them; their late results would be dropped.
    mutating func tellStale(_ running: Set<TaskID>, node name: String) {
        guard let node = nodes[name] else { return }
        for id in running where node.leased[id] == nil && !node.abandoned.contains(where: { $0.id == id }) {
            if nodes[name]!.toCancel.insert(id).inserted { staleTold += 1 }
        }
    }

    /// The node's connection closed (its process died, or the network reset it): unless it
    /// pulls again within `suspectGraceSeconds`, `tick` declares it dead, well before the
    /// node timeout. A partition closes nothing, so there the node timeout still applies.
    public mutating func markSuspect(node name: String, now: Double) {
        guard let node = nodes[name] else { return }
        nodes[name]!.suspect = true
        nodes[name]!.lastSeen = min(node.lastSeen, now - bounds.nodeTimeoutSeconds + bounds.suspectGraceSeconds)
    }

    /// Asks `node` to drain (told on its next pull); false if no such node is known.
    public mutating func requestDrain(node name: String, deadlineSeconds: Double) -> Bool {
        guard nodes[name] != nil else { return false }
        nodes[name]!.drainRequested = deadlineSeconds
        return true
    }

    /// The drain deadline to tell `node`, if `colony drain` asked for one and it has not started draining.
    public func drainRequest(forNode name: String) -> Double? {
        nodes[name]?.drainRequested
    }

    /// Queues again (or fails, past `lostAttemptsMax`) every attempt `name` holds; returns
    /// the sessions that gained results.
    mutating func requeueLeases(ofNode name: String, reason: String, now: Double) -> Set<String> {
        guard let node = nodes[name] else { return [] }
        var touched: Set<String> = []
        for abandoned in node.abandoned { release(abandoned, node: name) }
        for id in node.leased.keys.sorted() {
            releaseLease(id, node: name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            if task.runs < bounds.lostAttemptsMax {
                retriedTotal += 1
                task.lastError = reason
                task.state = .queued
                tasks[id] = task
                ready.push(id, priority: task.options.priority, key: task.classKey)
            } else if let session = finish(id, phase: .failed, error: "\(reason), \(task.attempt) attempts", failure: .lost, now: now) {
                touched.insert(session)
            }
        }
        return touched
    }

    /// Requeues attempts the node should have received (their reply is at or below the one it
    /// acknowledged) but does not run: their dispatch reply was lost in transit.
    mutating func reconcile(node name: String, running: Set<TaskID>, ackedReplySeq: UInt64) {
        guard let node = nodes[name] else { return }
        for (id, seq) in node.leaseSeq where seq <= ackedReplySeq && !running.contains(id) {
            releaseLease(id, node: name)
            guard var task = tasks[id], case .leased = task.state else { continue }
            lostDispatches += 1
            task.lastError = "dispatch to \(name) lost in transit"
            task.state = .queued
            task.unrun += 1
            tasks[id] = task
            ready.push(id, priority: task.options.priority, key: task.classKey)
        }
    }

    /// Numbers the next reply to a pull (every reply, with tasks or not). Call it once per
    /// reply, after `dispatch`: the tasks just dispatched travel under this number. One
    /// sequence for all nodes, so a node that rejoins never acknowledges numbers it was not given.
    public mutating func nextReplySeq() -> UInt64 {
        replySeq += 1
        return replySeq
    }

    /// Applies one reported outcome if it belongs to the attempt leased to `node`.
    mutating func apply(_ reported: TaskOutcome, from node: String, now: Double) -> String? {
        let (abandoned, leasedAttempt, adopted) = Self.inPlace(&nodes[node]) { record -> (AbandonedLease?, UInt32?, Bool) in
            let abandoned = record?.abandoned.isEmpty == false
                ? record?.abandoned.first(where: { $0.id == reported.id && $0.attempt == reported.attempt }) : nil
            return (abandoned, record?.leased[reported.id], record?.adopted.contains(reported.id) == true)
        }
        if let abandoned {
            release(abandoned, node: node)
            staleDropped += 1
            return nil
        }
        // An adopted attempt (see `adopt`) was numbered before the restart: any number goes.
        guard (adopted && leasedAttempt != nil) || leasedAttempt == reported.attempt,
              let (retryable, handler) = Self.inPlace(&tasks[reported.id], { record in
                  record.map { ($0.options.retryOnError, $0.poolHandler ?? $0.handler) }
              }) else {
            staleDropped += 1
            return nil
        }
        releaseLease(reported.id, node: node)
        noteRunTime(handler: handler, micros: Double(reported.runMicros))
        figures.sample(runTime: Double(reported.runMicros) / 1e6)
        if reported.succeeded {
            if reported.output.count > bounds.resultBytesMax {
                return attemptFailed(reported.id, error: "output of \(reported.output.count) bytes exceeds the limit of \(bounds.resultBytesMax) bytes",
                                     failure: .refused, retryable: false, now: now)
            }
            for op in reported.counterOps where !op.name.isEmpty && op.name.utf8.count <= bounds.counterNameBytesMax {
                // The task has succeeded and cannot be refused: a change past the 64-bit range
                // leaves the counter at the bound rather than wrapping to the other sign.
                let (sum, overflow) = counters[op.name, default: 0].addingReportingOverflow(op.delta)
                counters[op.name] = overflow ? (op.delta > 0 ? .max : .min) : sum
                if journaling { journal.append(.counter(name: op.name, value: counters[op.name]!)) }
            }
            nodes[node]?.completed += 1
            return finish(reported.id, phase: .succeeded, output: reported.output, runMicros: reported.runMicros, now: now)
        }
        nodes[node]?.failed += 1
        var error = reported.error
        if error.utf8.count > bounds.errorBytesMax {
            // Cut on a character boundary, and say so.
            var cut = Substring(error)
            while cut.utf8.count > bounds.errorBytesMax - 32 { cut = cut.dropLast(max(1, (cut.utf8.count - bounds.errorBytesMax) / 4)) }
            error = cut + " ... (\(reported.error.utf8.count) bytes, cut)"
        }
        // Nodes before `TaskResult.failure` do not say the kind: read it from their words.
        let failure = reported.failure ?? .error
        return attemptFailed(reported.id, error: error, failure: failure, retryable: retryable, now: now)
    }

    /// Leases queued tasks to `name`, up to the free capacity of each of its pools, best first.
    public mutating func dispatch(toNode name: String, now: Double = 0) -> [DispatchedTask] {
        guard let node = nodes[name] else { return [] }
        nodes[name]!.heldBeforeDispatch = node.occupyingWithCpus
        nodes[name]!.waitingAtDispatch = node.announcement.waiting.isEmpty ? PoolCounts() : node.waitingSlots
        var free = PoolCounts(thread: node.freeSlots(.thread), process: node.freeSlots(.process), io: node.freeSlots(.io))
        // Capacity without the prefetch: all that tasks of long or unmeasured handlers may take.
        var slotsFree = PoolCounts(thread: node.freeSlots(.thread, prefetching: false), process: node.freeSlots(.process, prefetching: false),
                                   io: node.freeSlots(.io, prefetching: false))
        var handed: [DispatchedTask] = []
        var handedBytes = 0
        // Only while tasks that ask for resources are queued: their fit, and the reservation
        // that keeps the oldest of them from starving.
        var fitting: FreeResources?
        var head: TaskID?
        if ready.resourceClasses > 0 && free.any {
            fitting = FreeResources(offer: node.announcement.resources, use: node.resourceUse)
            head = reserveForBlockedHead(node: node, free: &free, slotsFree: &slotsFree, fitting: &fitting!)
        }
        while free.any && handedBytes < bounds.dispatchBytesMax {
            guard let (id, pool, variant) = popReady(for: node, free: free, slotsFree: slotsFree, fitting: fitting) else { break }
            var handing = Self.inPlace(&self.tasks[id]) { record -> (DispatchedTask, submittedAt: Double, uses: [String], after: [TaskID], job: JobID) in
                record!.attempt += 1
                record!.restored = false
                record!.state = .leased(node: name, since: now)
                record!.node = name
                return (DispatchedTask(id: id, handler: record!.handler, input: record!.input, attempt: record!.attempt,
                                       timeoutSeconds: record!.options.timeoutSeconds, pool: pool),
                        record!.submittedAt, record!.options.uses, record!.options.after, record!.job)
            }
            countJob(handing.job, running: 1)
            handing.0.job = handing.job
            if handing.0.attempt == 1 { figures.sample(queueWait: now - handing.submittedAt) }
            figures.dispatched += 1
            for parent in handing.after {
                handing.0.dependencies[parent] = Self.inPlace(&self.tasks[parent]) { $0?.output } ?? remembered[parent]?.output ?? []
            }
            for limit in handing.uses { takeLimit(limit) }
            Self.inPlace(&nodes[name]) { record in
                record!.leased[id] = handing.0.attempt
                record!.leaseSeq[id] = replySeq + 1
                record!.leasePool[id] = pool
                record!.countHolding(in: pool, 1)
            }
            leasedTotal += 1
            if handing.0.timeoutSeconds != nil { timedTasks.insert(id) }
            var cpus = 1
            if let variant {
                let grant = ResourceGrant(pool: pool, cpus: variant.cpus, resources: fitting!.take(variant))
                Self.inPlace(&nodes[name]) { record in
                    record!.grants[id] = grant
                    record!.resourceUse.add(grant)
                }
                handing.0.cpus = variant.cpus
                handing.0.resources = grant.resources
                cpus = variant.cpus
            }
            handedBytes += handing.0.input.count + handing.0.dependencies.values.reduce(0) { $0 + $1.count }
            handed.append(handing.0)
            free[pool] = max(0, free[pool] - cpus)
            slotsFree[pool] = max(0, slotsFree[pool] - cpus)
            if id == head, free.any {
                head = reserveForBlockedHead(node: nodes[name]!, free: &free, slotsFree: &slotsFree, fitting: &fitting!)
            }
        }
        return handed
    }

    /// The best queued task `node` may take now (with the pool it would run in), taken off the queue.
    ///
    /// A function of its own so that the copies its closures capture (the task table among
    /// them) are gone before the caller mutates the table: a copy still alive there would make
    /// every dispatched task copy the whole table (copy-on-write), O(tasks) each.
    mutating func popReady(for node: NodeRecord, free: PoolCounts, slotsFree: PoolCounts,
                                   fitting: FreeResources?) -> (TaskID, TaskPool, ResourceVariant?)? {
        let sizes = limitSizes
        let inUse = limitInUse
        let tasks = self.tasks
        let runMicros = handlerRunMicros
        let shortMax = bounds.prefetchRunMicrosMax
        let popped = ready.pop(
            eligible: { key in
                guard let pool = Self.pool(for: key, on: node, limitsInUse: inUse, limitSizes: sizes) else { return false }
                if !key.resources.isEmpty {
                    // Never prefetched: it must fit in free slots, beside its named resources.
                    return fitting.map { Self.firstFitting(key.resources, slotsFree: slotsFree[pool], in: $0) != nil } ?? false
                }
                return free[pool] > 0 && (slotsFree[pool] > 0 || (runMicros[key.handler] ?? .infinity) <= shortMax)
            },
            isLive: { tasks[$0]?.state == .queued })
        // The popped class was eligible, so it resolves to a pool with room on this node.
        guard let popped, let pool = node.pool(for: popped.key) else { return nil }
        if popped.key.resources.isEmpty { return (popped.id, pool, nil) }
        return (popped.id, pool, fitting.flatMap { Self.firstFitting(popped.key.resources, slotsFree: slotsFree[pool], in: $0) })
    }

    /// Ids the node must stop (cancelled or timed out since its last pull); forgets them.
    public mutating func takeCancellations(forNode name: String) -> [TaskID] {
        guard let cancels = nodes[name]?.toCancel, !cancels.isEmpty else { return [] }
        nodes[name]!.toCancel = []
        return cancels.sorted()
    }

    /// Time-driven rules: dead nodes lose their leases, back-offs end, attempts past their
    /// timeout fail, unfetched results expire. Returns the sessions that gained results.
    public mutating func tick(now: Double) -> Set<String> {
        var touched: Set<String> = []
        for (name, node) in nodes where now - node.lastSeen > bounds.nodeTimeoutSeconds {
            let reason = "node \(name) lost (not heard from for \(formatSeconds(bounds.nodeTimeoutSeconds)) s)"
            note(.nodeLost(name: name, reason: reason, tasksMoved: node.holding))
            touched.formUnion(requeueLeases(ofNode: name, reason: reason, now: now))
            nodes[name] = nil
        }
        for id in timedTasks {
            guard let task = tasks[id] else {
                timedTasks.remove(id)
                continue
            }
            switch task.state {
            case .backoff(let until) where until <= now:
                timedTasks.remove(id)
                var queued = task
                queued.state = .queued
                tasks[id] = queued
                backoffCount -= 1
                countJob(task.job, waiting: -1)
                ready.push(id, priority: task.options.priority, key: task.classKey)
            case .leased(let node, let since):
                if let timeout = task.options.timeoutSeconds, now - since > timeout + bounds.timeoutGraceSeconds {
                    // The node did not stop it in time: give up on the attempt and tell the node.
                    abandonLease(id, node: node)
                    let error = "timed out after \(formatSeconds(timeout)) s"
                    if let session = attemptFailed(id, error: error, failure: .timeout, retryable: task.options.retryOnError, now: now) {
                        touched.insert(session)
                    }
                }
            case .backoff:
                break
            default:
                timedTasks.remove(id)
            }
        }
        trimRemembered(now: now)
        touched.formUnion(abandonIdleSessions(now: now))
        for (session, record) in sessions {
            // Results are filed in time order: only a session whose oldest one expired needs work.
            guard let oldest = record.finished.first, now - oldest.finishedAt > bounds.resultTTLSeconds else { continue }
            let kept = record.finished.filter { now - $0.finishedAt <= bounds.resultTTLSeconds }
            if kept.count != record.finished.count {
                for expired in record.finished where now - expired.finishedAt > bounds.resultTTLSeconds { forget(expired.outcome.id) }
                resultsWaiting -= record.finished.count - kept.count
                sessions[session]!.finished = kept
                if kept.isEmpty && record.unfinished == 0 { sessions[session] = nil }
            }
        }
        return touched
    }
}
