import Colony
import ColonyModel
import ColonyWire
import Foundation
import NNG
import Sockets
import Synchronization

// The pull loop: planning a pull, sending it, taking its reply, failing over.
extension NodeAgent {
    // MARK: Pulling

    struct PlannedPull: Sendable {
        var context: Requester
        var bytes: [UInt8]
        var results: [Colony_V1_TaskResult]
        var returned: [UInt64] = []
        var leaving = false
        /// It carries the node's full description.
        var full = false
    }

    func pullLoop() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !drained {
                if let plan = nextPull() {
                    // On the sockets thread, as the agent is (see NodeAgent).
                    group.addTask(executorPreference: SocketReactor.shared) { await self.perform(plan) }
                } else {
                    if let deadline = armLingerTimer() {
                        group.addTask {
                            try? await Task.sleep(until: deadline, clock: .continuous)
                            await self.lingerTimerFired()
                        }
                    }
                    if let deadline = armOutputTimer() {
                        group.addTask {
                            try? await Task.sleep(until: deadline, clock: .continuous)
                            await self.outputTimerFired()
                        }
                    }
                    await wake.wait()
                }
            }
        }
    }

    /// When results are being held, the moment they must go (once per held batch).
    func armLingerTimer() -> ContinuousClock.Instant? {
        guard !lingerTimerArmed, let since = pendingSince else { return nil }
        lingerTimerArmed = true
        return since + configuration.resultLinger
    }

    func lingerTimerFired() {
        lingerTimerArmed = false
        wake.notify()
    }

    /// While output waits and a pull is out: when a pull of its own may take it.
    func armOutputTimer() -> ContinuousClock.Instant? {
        guard !outputTimerArmed, inFlight >= 1, let sentAt = outputSentAt, !outbox.isEmpty else { return nil }
        outputTimerArmed = true
        return sentAt + Self.outputPullInterval
    }

    func outputTimerFired() {
        outputTimerArmed = false
        wake.notify()
    }

    /// Output waits and may go in a pull of its own now (see `outputPullInterval`).
    var outputDue: Bool {
        guard !outbox.isEmpty else { return false }
        return outputSentAt.map { ContinuousClock.now - $0 >= Self.outputPullInterval } ?? true
    }

    /// Decides whether to pull now: always when nothing is in flight (the idle long poll),
    /// and a second one only to deliver results (or output, see `outputDue`) while the first is held.
    func nextPull() -> PlannedPull? {
        absorbThreadResults()
        let threadsIdle = (threadSlots?.isIdle ?? true) && (ioSlots?.isIdle ?? true)
        let situation = PullPlan.Situation(
            backingOff: backingOff, drained: drained, draining: draining, freeContexts: freeContexts.count, inFlight: inFlight,
            idle: threadsIdle && executingProcesses == 0 && processQueue.isEmpty,
            queuedLocally: (threadSlots?.hasQueued ?? false) || !processQueue.isEmpty,
            pendingResults: pendingResults.count, handBacks: toReturn.count, outputDue: outputDue,
            waitingChanged: (subtasks?.changes ?? 0) != waitingChangesSent,
            oldestResultAge: pendingSince.map { ContinuousClock.now - $0 }, resultLinger: configuration.resultLinger,
            resultsPerPullMax: configuration.resultsPerPullMax)
        guard case .send(let leaving) = PullPlan.decide(situation) else { return nil }
        let context = freeContexts.removeLast()
        inFlight += 1
        // Output first: a task's result never reaches the coordinator before its output.
        let output = outbox.isEmpty ? [] : outbox.take()
        if !output.isEmpty { outputSentAt = ContinuousClock.now }
        let outputHeld = outbox.isEmpty ? [] : outbox.pendingTaskIDs
        let taken = PullPlan.batch(pendingResults.lazy.map { (bytes: $0.output.count + $0.error.utf8.count + 64,
                                                               outputHeld: !outputHeld.isEmpty && outputHeld.contains($0.id)) },
                                   countMax: configuration.resultsPerPullMax, bytesMax: configuration.resultBytesPerPullMax)
        let results = Array(pendingResults.prefix(taken))
        pendingResults.removeFirst(taken)
        pendingSince = pendingResults.isEmpty ? nil : ContinuousClock.now
        var pull = Colony_V1_PullRequest()
        var info = Colony_V1_NodeInfo()
        info.name = configuration.name
        info.draining = draining
        if described {
            info.brief = true
        } else {
            info.host = configuration.host
            info.threadSlots = UInt32(configuration.threads)
            info.handlers = handlerNames
            info.pid = UInt32(ProcessInfo.processInfo.processIdentifier)
            info.labels = configuration.labels
            info.processSlots = UInt32(configuration.processes.size)
            info.processHandlers = processHandlerNames
            info.ioSlots = UInt32(configuration.ioSlots)
            info.ioHandlers = ioHandlerNames
            info.resources = configuration.resources.mapValues(\.wire)
        }
        pull.node = info
        pull.figures = currentFigures()
        pull.returned = toReturn
        if let link = subtasks {
            let (changes, waiting, session) = link.forPull()
            waitingChangesSent = changes
            pull.waiting = waiting
            if let session { pull.subtaskSession = session }
        }
        toReturn = []
        pull.leaving = leaving && pendingResults.isEmpty
        pull.results = results
        pull.output = output
        // Acknowledge only when no other pull is in flight: then every reply sent before has
        // been processed, and tasks up to it that the node does not run were really lost.
        // The running list matters only with an acknowledgement, so it travels only then.
        if inFlight == 1 && highestReplySeq > 0 {
            pull.ackedDispatchSeq = highestReplySeq
            // Finished tasks whose results wait for a later pull still count as held.
            pull.running = Array(running.keys) + pendingResults.map(\.id)
        }
        pull.waitMs = pull.leaving ? 0 : configuration.longPollMilliseconds
        pull.prefetch = draining ? 0 : UInt32(prefetch(.thread))
        pull.processPrefetch = draining ? 0 : UInt32(prefetch(.process))
        unacknowledged[ObjectIdentifier(context)] = (results, pull.returned)
        return PlannedPull(context: context, bytes: Wire.encode(.pull(pull), token: configuration.token), results: results, returned: pull.returned,
                           leaving: pull.leaving, full: !described)
    }

    nonisolated func perform(_ plan: PlannedPull) async {
        // A goodbye is not long-polled: a coordinator that does not answer it within 2 s is
        // down, and a node with nothing left to hand back need not wait for it.
        let timeout = plan.leaving ? .seconds(2) : configuration.requestTimeout + .milliseconds(Int(configuration.longPollMilliseconds))
        do {
            let replyBytes = try await plan.context.request(plan.bytes, timeout: timeout, url: configuration.coordinatorURL)
            let envelope = try Wire.decode(replyBytes)
            switch envelope.body {
            case .pullReply(let reply) where reply.describe:
                await describeAgain(plan)
            case .pullReply(let reply):
                if plan.full { await noteDescribed() }
                if reply.drain { await drain(deadline: .milliseconds(Int(reply.drainDeadlineMs))) }
                await accepted(reply.tasks, cancel: reply.cancel, seq: reply.dispatchSeq, context: plan.context, leaving: plan.leaving)
            case .error(let error):
                await pullFailed(plan, reason: "coordinator refused pull: \(error.message)")
            default:
                await pullFailed(plan, reason: "coordinator answered a pull with an unexpected message")
            }
        } catch {
            await pullFailed(plan, reason: "pull failed: \(error)")
        }
    }

    func accepted(_ tasks: [Colony_V1_Task], cancel: [UInt64], seq: UInt64, context: Requester, leaving: Bool = false) {
        failuresInARow = 0
        unacknowledged[ObjectIdentifier(context)] = nil
        highestReplySeq = max(highestReplySeq, seq)
        if leaving {
            drained = true
            configuration.log("node \(configuration.name) drained and left")
        }
        if !cancel.isEmpty {
            let stopping = Set(cancel)
            // Not started yet: report them stopped without running them.
            for task in (threadSlots?.removeQueued(stopping) ?? []) + (ioSlots?.removeQueued(stopping) ?? []) + processQueue.remove(stopping) {
                running[task.id] = nil
                var result = Colony_V1_TaskResult()
                result.id = task.id
                result.attempt = task.attempt
                result.ok = false
                result.error = "cancelled"
                result.failure = .failureCancelled
                result.node = configuration.name
                pendingResults.append(result)
            }
            for id in cancel {
                stopSignals[id]?.stop(reason: "cancelled")
                threadSlots?.stop(id, reason: "cancelled")
                ioSlots?.stop(id, reason: "cancelled")
            }
        }
        let arrived = ContinuousClock.now
        var forThreads: [Colony_V1_Task] = []
        var forIO: [Colony_V1_Task] = []
        for task in tasks {
            if let older = running[task.id], older < task.attempt {
                // Re-leased while an older attempt still runs here (this node was declared lost
                // and came back): that attempt is stale; stop it so the new one gets its slot.
                let stale: Set<UInt64> = [task.id]
                _ = threadSlots?.removeQueued(stale)
                _ = ioSlots?.removeQueued(stale)
                _ = processQueue.remove(stale)
                stopSignals[task.id]?.stop(reason: "superseded by attempt \(task.attempt)")
                threadSlots?.stop(task.id, reason: "superseded by attempt \(task.attempt)")
                ioSlots?.stop(task.id, reason: "superseded by attempt \(task.attempt)")
            }
            running[task.id] = task.attempt
            if task.pool == .io {
                if ioSlots != nil {
                    forIO.append(task)
                } else {
                    refuse(task, reason: "node \(configuration.name) has no io pool")
                }
            } else if task.pool == .process {
                if configuration.processes.size > 0 {
                    processQueue.push(task, at: arrived)
                } else {
                    refuse(task, reason: "node \(configuration.name) has no process pool")
                }
            } else {
                forThreads.append(task)
            }
        }
        threadSlots?.push(forThreads, at: arrived)
        ioSlots?.push(forIO, at: arrived)
        // Dispatched before the coordinator saw the node draining: hand them straight back.
        if draining { handBackQueued() }
        // Only the process pool starts from the tick (thread and io slots start their own):
        // a tick costs a wake-up of the run loop, which no thread-pool task should pay.
        if !processQueue.isEmpty { startTick?.yield() }
        armStrandCheck()
        freeContexts.append(context)
        inFlight -= 1
        wake.notify()
    }

    /// Reports `task` failed (refused) without running it: it asks for a pool this node has
    /// not. A coordinator that knows the node never sends one; say so rather than guess.
    func refuse(_ task: Colony_V1_Task, reason: String) {
        running[task.id] = nil
        var result = Colony_V1_TaskResult()
        result.id = task.id
        result.attempt = task.attempt
        result.error = reason
        result.failure = .failureRefused
        result.node = configuration.name
        pendingResults.append(result)
    }

    /// Schedules a look at the local queues when their oldest task would be stranded.
    func armStrandCheck() {
        let dues = [threadSlots?.oldestQueuedAt.map { $0 + strandBound(.thread) },
                    processQueue.oldestQueuedAt.map { $0 + strandBound(.process) }]
        guard !strandCheckArmed, let due = dues.compactMap({ $0 }).min() else { return }
        strandCheckArmed = true
        Task {
            try? await Task.sleep(until: due, clock: .continuous)
            self.handBackStranded()
        }
    }

    /// How long a queued task of `pool` may wait for a slot before it counts as stranded:
    /// twice what the prefetch expects it to wait, within 10 ms and `strandedAfter`.
    func strandBound(_ pool: TaskPool) -> Duration {
        let expectedMicros = configuration.prefetchTargetMicros + (averageRunMicros[pool] ?? 0)
        let bound = Duration.microseconds(Int64(min(2 * expectedMicros, 1e9)))
        return min(configuration.strandedAfter, max(.milliseconds(10), bound))
    }

    /// Hands back the queued tasks of a pool whose oldest has waited `strandBound` without a
    /// slot: its slots are held by longer tasks than the prefetch expected. The pool's average
    /// task time becomes at least that wait, so it prefetches no more until short tasks
    /// bring it down again.
    func handBackStranded() {
        strandCheckArmed = false
        let now = ContinuousClock.now
        for pool in [TaskPool.thread, .process] {
            let oldestQueuedAt = pool == .process ? processQueue.oldestQueuedAt : threadSlots?.oldestQueuedAt
            guard let oldest = oldestQueuedAt, now - oldest >= strandBound(pool) else { continue }
            let waited = now - oldest
            let waitedMicros = Double(waited.inMicroseconds)
            averageRunMicros[pool] = max(averageRunMicros[pool] ?? 0, waitedMicros)
            let stranded = pool == .process ? processQueue.takeAll() : (threadSlots?.takeQueued() ?? [])
            for task in stranded {
                running[task.id] = nil
                toReturn.append(task.id)
            }
            statistics.handedBack += UInt64(stranded.count)
        }
        armStrandCheck()
        wake.notify()
    }

    func noteDescribed() { described = true }

    /// The coordinator does not know this node on its connection and applied nothing of the
    /// pull: the next one carries the full description (and the same results), at once.
    func describeAgain(_ plan: PlannedPull) {
        described = false
        unacknowledged[ObjectIdentifier(plan.context)] = nil
        pendingResults.insert(contentsOf: plan.results, at: 0)
        toReturn.insert(contentsOf: plan.returned, at: 0)
        if pendingSince == nil && !pendingResults.isEmpty { pendingSince = ContinuousClock.now }
        freeContexts.append(plan.context)
        inFlight -= 1
        wake.notify()
    }

    func pullFailed(_ plan: PlannedPull, reason: String) async {
        unacknowledged[ObjectIdentifier(plan.context)] = nil
        // The results were not delivered: put them back in front, so none is lost.
        pendingResults.insert(contentsOf: plan.results, at: 0)
        toReturn.insert(contentsOf: plan.returned, at: 0)
        if pendingSince == nil && !pendingResults.isEmpty { pendingSince = ContinuousClock.now }
        statistics.failedPulls += 1
        failuresInARow += 1
        lastPullFailure = reason
        leaveIfNothingIsOwed(because: "the coordinator did not answer its goodbye (\(reason))")
        if !Task.isCancelled && !drained {
            if statistics.failedPulls == 1 || statistics.failedPulls % 20 == 0 {
                configuration.log("node \(configuration.name): \(reason); retrying")
            }
            backingOff = true
            try? await Task.sleep(for: configuration.retryBackoff.delay(afterFailures: failuresInARow, unit: Double.random(in: 0..<1)))
            backingOff = false
        }
        freeContexts.append(plan.context)
        inFlight -= 1
        wake.notify()
    }

    /// Draining with nothing left to run or hand back: no need to wait for the coordinator to
    /// answer a goodbye (or a long poll it will never answer); it sees the node gone when the
    /// connection closes, and a pull nng resends to a restarted coordinator finds the node gone.
    func leaveIfNothingIsOwed(because reason: String) {
        guard draining && !drained && running.isEmpty && pendingResults.isEmpty && toReturn.isEmpty
            && unacknowledged.values.allSatisfy({ $0.results.isEmpty && $0.returned.isEmpty }) else { return }
        drained = true
        configuration.log("node \(configuration.name) drained; \(reason), nothing was left to hand back")
        Self.close(link)
        wake.notify()
    }

    func connectionChanged(_ isConnected: Bool) {
        connected = isConnected
        if !connected { leaveIfNothingIsOwed(because: "its connection to the coordinator closed") }
    }

    /// A process-pool task ended (the slots' pools report through their outboxes).
    func finishedInProcess(_ result: Colony_V1_TaskResult) -> PlannedPull? {
        stopSignals[result.id] = nil
        executingProcesses -= processSlotsHeld.removeValue(forKey: result.id) ?? 1
        startTick?.yield()
        record(result, in: .process)
        return nextPull()
    }

    /// Takes the thread and io slots' finished results into the next pulls.
    func absorbThreadResults() {
        for result in threadSlots?.takeResults() ?? [] { record(result, in: .thread) }
        for result in ioSlots?.takeResults() ?? [] { record(result, in: .io) }
    }

    /// Books a finished task: its slot's average run time, the node's counts, and its result
    /// (or, stopped at the drain deadline, its hand-back) for the next pull.
    func record(_ result: Colony_V1_TaskResult, in pool: TaskPool) {
        // The result of an attempt superseded meanwhile leaves the newer one booked.
        if running[result.id] == result.attempt { running[result.id] = nil }
        // An exponentially weighted average (plus a little per-task overhead) of recent run times.
        let sample = Double(result.runMicros) + 5
        averageRunMicros[pool] = averageRunMicros[pool].map { $0 * 0.8 + sample * 0.2 } ?? sample
        if !result.ok && stoppedByDrain.remove(result.id) != nil {
            // Stopped at the drain deadline: another node runs it; not a failure.
            toReturn.append(result.id)
            return
        }
        if result.ok { statistics.succeeded += 1 } else { statistics.failed += 1 }
        if pendingResults.isEmpty { pendingSince = ContinuousClock.now }
        pendingResults.append(result)
    }
}
