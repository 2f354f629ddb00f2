import ColonyModel
import ColonyWire
import Foundation
import NNG
import Synchronization

/// How a node reaches its coordinator and what it offers.
public struct NodeConfiguration: Sendable {
    /// The coordinator's URL, e.g. `tcp://10.0.0.1:7411`.
    public var coordinatorURL: String
    /// Unique name of this node in the cluster.
    public var name: String
    /// The host it runs on (informational).
    public var host: String
    /// Slots of the thread pool: handlers running at once.
    public var threads: Int
    /// The process pool (size 0: none).
    public var processes = ProcessPoolConfiguration(size: 0)
    /// Slots of the io pool: handlers that mostly wait (`fetch`, `sleep`) run at once on
    /// Swift's cooperative pool, holding no thread while they wait (0: none; their tasks then
    /// run on the thread pool).
    public var ioSlots = 0
    /// How long the coordinator may hold an idle pull (the heartbeat period when idle).
    public var longPollMilliseconds: UInt32 = 1000
    /// A pull unanswered for this long (coordinator gone or restarting) is given up and
    /// retried with the same results.
    public var requestTimeout: Duration = .seconds(15)
    /// Pause after a failed pull before the next one.
    public var retryBackoff = Backoff(baseSeconds: 0.05, maxSeconds: 0.25, jitter: 0.2)
    /// After the drain deadline, how long the node keeps trying to hand back what it stopped
    /// and its results before it gives up and `run` throws `DrainIncomplete` (a coordinator
    /// that is down must not keep a stopping node alive until a supervisor's SIGKILL).
    public var drainHandBack: Duration = .seconds(2)
    /// Most results carried by one pull, and their largest total size.
    public var resultsPerPullMax = 4096
    public var resultBytesPerPullMax = 8 << 20
    /// While the node is busy (tasks wait in its local queue), results are held up to this
    /// long so that several travel in one pull; an idle node sends them at once.
    public var resultLinger: Duration = .milliseconds(2)
    /// Most tasks queued on the node beyond its free slots (0: never prefetch).
    public var prefetchMax = 1024
    /// Work per slot worth queueing ahead when tasks are short (microseconds).
    public var prefetchTargetMicros = 5000.0
    /// A task queued on the node (prefetched) that has not started after this long is handed
    /// back with everything queued behind it, so that an idle node elsewhere runs it: prefetch
    /// guessed from short tasks must not strand long ones (see docs/ARCHITECTURE.md). The
    /// node uses less when its tasks are short: twice the wait its prefetch expects (its
    /// `prefetchTargetMicros` plus one average task), at least 10 ms.
    public var strandedAfter: Duration = .milliseconds(50)
    /// Largest output a handler may return; a larger one fails its task with a clear reason.
    public var outputBytesMax = 4 << 20
    /// Labels this node offers (`gpu=1`); tasks may require them.
    public var labels: [String: String] = [:]
    /// Named resources this node offers beyond its slots (`gpus=0,1`, `mem=64G`).
    public var resources: [String: ResourceOffer] = [:]
    /// The coordinator's shared token ("" when it requires none).
    public var token = ""
    /// Certificates for a `tls+tcp://` coordinator URL.
    public var tls: TLSSettings?
    /// Where the node reports noteworthy events (one line each).
    public var log: @Sendable (String) -> Void = { _ in }

    public init(coordinatorURL: String, name: String, host: String = ProcessInfo.processInfo.hostName, threads: Int) {
        self.coordinatorURL = coordinatorURL
        self.name = name
        self.host = host
        self.threads = threads
    }
}

/// A worker node: pulls tasks from the coordinator when it has free slots, runs them in its
/// thread pool or its process pool and sends the results back on its next pull.
///
/// Tasks beyond the free slots wait in a local queue; the node asks for such extra tasks
/// (prefetch) only while its recent tasks are short, so that tiny tasks travel in batches
/// but long ones are never hoarded by a busy node.
///
/// At most two pulls are in flight: one that the coordinator may hold (long poll), and one
/// sent as soon as results are ready so they never wait for the held one to return. The
/// coordinator, not the node, counts free slots (slots minus tasks leased to the node), so
/// overlapping pulls never over-commit the node.
public actor NodeAgent {
    /// What the node has done so far.
    public struct Statistics: Sendable, Equatable {
        public var succeeded: UInt64 = 0
        public var failed: UInt64 = 0
        public var running = 0
        public var failedPulls: UInt64 = 0
        /// Prefetched tasks handed back unstarted because longer tasks held the slots.
        public var handedBack: UInt64 = 0
    }

    public let configuration: NodeConfiguration
    private let registry: HandlerRegistry
    private var pendingResults: [Colony_V1_TaskResult] = []
    /// Tasks the node holds (queued or running), with the attempt it holds of each: an older
    /// attempt still running when the coordinator re-leased the task (it had declared this
    /// node lost) is stopped and its result counts for nothing here.
    private var running: [UInt64: UInt32] = [:]
    private var freeContexts: [Context] = []
    private var inFlight = 0
    private var backingOff = false
    private var statistics = Statistics()
    private var startTick: AsyncStream<Void>.Continuation?
    /// The thread pool's slots, queue and finished results (set while `run` runs).
    private var threadSlots: ThreadSlots?
    /// The io pool's, on the cooperative pool (set while `run` runs, with io slots).
    private var ioSlots: ThreadSlots?
    private var processQueue = LocalQueue()
    private var executingProcesses = 0
    /// Process-pool slots each executing task holds (its cpus).
    private var processSlotsHeld: [UInt64: Int] = [:]
    private var averageRunMicros: [TaskPool: Double] = [:]
    private var processPool: ProcessPool?
    /// Resident memory of the node and of its children, and when it was read.
    private var memory: (node: UInt64, children: UInt64) = (0, 0)
    private var memoryReadAt: ContinuousClock.Instant?
    private var stopSignals: [UInt64: StopSignal] = [:]
    private var highestReplySeq: UInt64 = 0
    /// The coordinator has this node's description (a full pull was answered); pulls are
    /// brief until it asks again (PullReply.describe).
    private var described = false
    /// When the oldest of `pendingResults` was added.
    private var pendingSince: ContinuousClock.Instant?
    private var lingerTimerArmed = false
    private let wake: WakeSignal
    /// Running tasks' live output, for the next pulls.
    private let outbox: TaskOutputOutbox
    /// When a pull last carried output: a pull of its own for output goes at most every
    /// `outputPullInterval`, so chatty commands cost a few pulls a second, not one per line.
    private var outputSentAt: ContinuousClock.Instant?
    private var outputTimerArmed = false
    static let outputPullInterval = Duration.milliseconds(100)
    /// Draining: no new tasks; queued ones (and, past the deadline, running ones) go back.
    private var draining = false
    private var toReturn: [UInt64] = []
    /// The last pull (leaving) was answered: the node is done.
    private var drained = false
    private static let drainStopReason = "handed back: node draining past its deadline"
    /// Tasks stopped at the drain deadline: what they report is a hand-back, not a result.
    private var stoppedByDrain: Set<UInt64> = []
    /// Set when a drain gave up at its deadline: what was not handed back.
    private var drainGaveUp: DrainIncomplete?
    /// The latest reason a pull failed (for a drain that gives up).
    private var lastPullFailure: String?
    /// Pulls failed since the last answered one: how long the next retry waits.
    private var failuresInARow = 0
    /// What pulls in flight carry (by context), not yet taken by the coordinator.
    private var unacknowledged: [ObjectIdentifier: (results: [Colony_V1_TaskResult], returned: [UInt64])] = [:]
    /// The socket of `run`, so that a drain that gives up can end pulls in flight at once.
    private var socket: Socket?

    /// Whether a look at the local queues for stranded tasks is scheduled.
    private var strandCheckArmed = false

    private let handlerNames: [String]
    private let processHandlerNames: [String]
    private let ioHandlerNames: [String]

    public init(configuration: NodeConfiguration, handlers: HandlerRegistry = .builtIn) {
        self.configuration = configuration
        var registry = handlers
        registry.register(BatchHandler.handler(over: handlers))
        self.registry = registry
        self.handlerNames = registry.names
        self.processHandlerNames = registry.processDefaultNames
        self.ioHandlerNames = registry.ioDefaultNames
        let wake = WakeSignal()
        self.wake = wake
        outbox = TaskOutputOutbox(arrived: { wake.notify() })
    }

    /// Stops taking tasks: queued ones are handed back at once, running ones may finish
    /// within `deadline` (then they are stopped and handed back too); once nothing is left
    /// the node says it is leaving and `run` returns. Idempotent.
    public func drain(deadline: Duration) {
        guard !draining else { return }
        draining = true
        configuration.log("node \(configuration.name) draining: \((threadSlots?.busy ?? 0) + (ioSlots?.busy ?? 0) + executingProcesses) task(s) running, deadline \(deadline)")
        handBackQueued()
        let handBack = configuration.drainHandBack
        Task {
            try? await Task.sleep(for: deadline)
            stopRemaining()
            try? await Task.sleep(for: handBack)
            giveUpDrain()
        }
        wake.notify()
    }

    /// Past the deadline and its hand-back time, the node stops even though the coordinator
    /// did not take everything back: its leases run out there and the tasks run elsewhere.
    private func giveUpDrain() {
        guard !drained else { return }
        let results = pendingResults + unacknowledged.values.flatMap(\.results)
        let returned = toReturn.count + unacknowledged.values.reduce(0) { $0 + $1.returned.count }
        drainGaveUp = DrainIncomplete(node: configuration.name, coordinator: configuration.coordinatorURL,
                                      tasks: returned + running.count, results: results.count, lastFailure: lastPullFailure)
        drained = true
        socket?.close()
        wake.notify()
    }

    /// At the drain deadline: stops what still runs (it is handed back as it ends).
    private func stopRemaining() {
        stoppedByDrain.formUnion(running.keys)
        for stop in stopSignals.values { stop.stop(reason: Self.drainStopReason) }
        threadSlots?.stopAll(reason: Self.drainStopReason)
        ioSlots?.stopAll(reason: Self.drainStopReason)
    }

    private func handBackQueued() {
        for task in (threadSlots?.takeQueued() ?? []) + (ioSlots?.takeQueued() ?? []) + processQueue.takeAll() {
            running[task.id] = nil
            toReturn.append(task.id)
        }
    }

    /// Process ids of the process pool's live children.
    public func childPIDs() -> [Int32] { processPool?.childPIDs ?? [] }

    /// What the node tells the coordinator of itself on every pull (a few /proc reads).
    /// Memory is read from /proc at most once a second: a pull goes out per task when tasks
    /// are slow, and three file reads per pull would cost more than the pull.
    private func currentFigures() -> Colony_V1_NodeFigures {
        let now = ContinuousClock.now
        if memoryReadAt.map({ now - $0 >= .seconds(1) }) ?? true {
            memoryReadAt = now
            memory = (residentBytes(), (processPool?.childPIDs ?? []).reduce(0) { $0 + residentBytes(of: $1) })
        }
        var figures = Colony_V1_NodeFigures()
        figures.rssBytes = memory.node
        figures.childrenRssBytes = memory.children
        figures.childrenStarted = processPool?.childrenStarted ?? 0
        figures.succeeded = statistics.succeeded
        figures.failed = statistics.failed
        figures.failedPulls = statistics.failedPulls
        return figures
    }

    public func stats() -> Statistics {
        var s = statistics
        s.running = running.count
        return s
    }

    /// Runs the node until the surrounding task is cancelled.
    public func run() async throws {
        let socket = try Socket(.req)
        self.socket = socket
        try socket.setReceiveMaxBytes(colonyMessageBytesMax)
        try socket.setReconnectTimes(minimum: .milliseconds(50), maximum: .seconds(2))
        // Resending is ours to do (with the results put back), not nng's.
        try socket.setRequestResendTime(nil)
        try socket.dial(configuration.coordinatorURL, waitForConnection: false, tls: configuration.tls)
        freeContexts = [try socket.openContext(), try socket.openContext()]
        let pool = ThreadPoolExecutor(threads: max(1, configuration.threads), name: "colony-\(configuration.name)")
        if configuration.processes.size > 0 {
            // A child that found no child-mode hook in its main would start a node of its own.
            guard !ProcessPoolChild.isRequested else {
                throw ValidationFailure("this process is a process-pool child: its main must call ProcessPoolChild.run first")
            }
            processPool = ProcessPool(configuration: configuration.processes, nodeName: configuration.name,
                                      environment: [ProcessPoolChild.allowExecVariable: registry.allowsExec ? "1" : "0"],
                                      log: configuration.log)
        }
        let processPool = self.processPool
        let registry = self.registry
        let nodeName = configuration.name
        let outputBytesMax = configuration.outputBytesMax
        let wake = self.wake
        let outbox = self.outbox
        let slots = ThreadSlots(slots: configuration.threads, executor: pool, resultsReady: { wake.notify() }) { task, stop in
            await Self.execute(task, registry: registry, nodeName: nodeName, outputBytesMax: outputBytesMax, stop: stop, poolKind: .thread,
                               output: outbox.add)
        }
        threadSlots = slots
        slots.start()
        let ioSlots = configuration.ioSlots > 0
            ? ThreadSlots(slots: configuration.ioSlots, executor: nil, resultsReady: { wake.notify() }) { task, stop in
                await Self.execute(task, registry: registry, nodeName: nodeName, outputBytesMax: outputBytesMax, stop: stop, poolKind: .io,
                                   output: outbox.add)
            }
            : nil
        self.ioSlots = ioSlots
        ioSlots?.start()
        defer {
            slots.shutdown()
            ioSlots?.shutdown()
            pool.shutdown()
            processPool?.shutdown()
            socket.close()
        }
        let (ticks, tick) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        startTick = tick
        configuration.log("node \(nodeName) pulling from \(configuration.coordinatorURL) with \(configuration.threads) thread slots"
            + ", \(configuration.processes.size) process slots and \(configuration.ioSlots) io slots")
        // Pulls in flight ignore task cancellation (see Context.request); closing the socket
        // is what ends them promptly when the node is stopped.
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await self.pullLoop()
                    tick.finish()
                }
                // Start queued process-pool tasks whenever a child is free: on every dispatch and
                // every finish (the thread pool's slots start their own).
                for await _ in ticks {
                    while let processPool, let task = nextStartableInProcess() {
                        let stop = StopSignal()
                        stopSignals[task.id] = stop
                        group.addTask {
                            let watchdog = Self.watchdog(for: task, stop: stop)
                            let result = await processPool.run(task, nodeName: nodeName, stop: stop, output: outbox.add)
                            watchdog?.cancel()
                            if let plan = await self.finishedInProcess(result) { await self.perform(plan) }
                        }
                    }
                }
            }
        } onCancel: {
            socket.close()
        }
        startTick = nil
        if let drainGaveUp { throw drainGaveUp }
    }

    /// The next queued process-pool task, when a child is free; marks the child taken.
    private func nextStartableInProcess() -> Colony_V1_Task? {
        // A task of N cpus starts only with N children free, and holds them all.
        guard let next = processQueue.first, executingProcesses + next.slotsHeld <= configuration.processes.size,
              let task = processQueue.pop() else { return nil }
        executingProcesses += task.slotsHeld
        processSlotsHeld[task.id] = task.slotsHeld
        return task
    }

    /// How many tasks to ask for beyond the free slots of `pool`: enough to cover about
    /// `prefetchTargetMicros` of work per slot at the recent average task time, so that tiny
    /// tasks travel in batches, and none for tasks long enough to amortise their round trip.
    private func prefetch(_ pool: TaskPool) -> Int {
        guard configuration.prefetchMax > 0, let average = averageRunMicros[pool] else { return 0 }
        let perSlot = Int(configuration.prefetchTargetMicros / max(average, 1))
        let slots = pool == .process ? configuration.processes.size : configuration.threads
        return min(configuration.prefetchMax, perSlot * slots)
    }

    // MARK: Pulling

    private struct PlannedPull: Sendable {
        var context: Context
        var bytes: [UInt8]
        var results: [Colony_V1_TaskResult]
        var returned: [UInt64] = []
        var leaving = false
        /// It carries the node's full description.
        var full = false
    }

    private func pullLoop() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !drained {
                if let plan = nextPull() {
                    group.addTask { await self.perform(plan) }
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
    private func armLingerTimer() -> ContinuousClock.Instant? {
        guard !lingerTimerArmed, let since = pendingSince else { return nil }
        lingerTimerArmed = true
        return since + configuration.resultLinger
    }

    private func lingerTimerFired() {
        lingerTimerArmed = false
        wake.notify()
    }

    /// While output waits and a pull is out: when a pull of its own may take it.
    private func armOutputTimer() -> ContinuousClock.Instant? {
        guard !outputTimerArmed, inFlight >= 1, let sentAt = outputSentAt, !outbox.isEmpty else { return nil }
        outputTimerArmed = true
        return sentAt + Self.outputPullInterval
    }

    private func outputTimerFired() {
        outputTimerArmed = false
        wake.notify()
    }

    /// Output waits and may go in a pull of its own now (see `outputPullInterval`).
    private var outputDue: Bool {
        guard !outbox.isEmpty else { return false }
        return outputSentAt.map { ContinuousClock.now - $0 >= Self.outputPullInterval } ?? true
    }

    /// Decides whether to pull now: always when nothing is in flight (the idle long poll),
    /// and a second one only to deliver results (or output, see `outputDue`) while the first is held.
    private func nextPull() -> PlannedPull? {
        absorbThreadResults()
        if backingOff || freeContexts.isEmpty || drained { return nil }
        let threadsIdle = (threadSlots?.isIdle ?? true) && (ioSlots?.isIdle ?? true)
        // Drained: nothing runs, nothing waits to be delivered, no other pull out. Leave.
        let leaving = draining && inFlight == 0 && threadsIdle && executingProcesses == 0
            && processQueue.isEmpty && pendingResults.count <= configuration.resultsPerPullMax
        if inFlight >= 1 && pendingResults.isEmpty && toReturn.isEmpty && !outputDue { return nil }
        if inFlight >= 1 && ((threadSlots?.hasQueued ?? false) || !processQueue.isEmpty), let since = pendingSince,
           ContinuousClock.now - since < configuration.resultLinger {
            // Busy: let a few more results join this batch (the linger timer sends it).
            return nil
        }
        let context = freeContexts.removeLast()
        inFlight += 1
        // Output first: a task's result never reaches the coordinator before its output.
        let output = outbox.isEmpty ? [] : outbox.take()
        if !output.isEmpty { outputSentAt = ContinuousClock.now }
        let outputHeld = outbox.isEmpty ? [] : outbox.pendingTaskIDs
        var results: [Colony_V1_TaskResult] = []
        var bytes = 0
        var taken = 0
        for result in pendingResults {
            if !outputHeld.isEmpty && outputHeld.contains(result.id) { break }
            let size = result.output.count + result.error.utf8.count + 64
            if taken == configuration.resultsPerPullMax || (taken > 0 && bytes + size > configuration.resultBytesPerPullMax) { break }
            results.append(result)
            bytes += size
            taken += 1
        }
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
            info.resources = configuration.resources.mapValues(\.nodeWire)
        }
        pull.node = info
        pull.figures = currentFigures()
        pull.returned = toReturn
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

    private nonisolated func perform(_ plan: PlannedPull) async {
        // A goodbye is not long-polled: a coordinator that does not answer it within 2 s is
        // down, and a node with nothing left to hand back need not wait for it.
        let timeout = plan.leaving ? .seconds(2) : configuration.requestTimeout + .milliseconds(Int(configuration.longPollMilliseconds))
        do {
            let replyBytes = try await plan.context.request(plan.bytes, timeout: timeout)
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

    private func accepted(_ tasks: [Colony_V1_Task], cancel: [UInt64], seq: UInt64, context: Context, leaving: Bool = false) {
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
        if !tasks.isEmpty { startTick?.yield() }
        armStrandCheck()
        freeContexts.append(context)
        inFlight -= 1
        wake.notify()
    }

    /// Reports `task` failed (refused) without running it: it asks for a pool this node has
    /// not. A coordinator that knows the node never sends one; say so rather than guess.
    private func refuse(_ task: Colony_V1_Task, reason: String) {
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
    private func armStrandCheck() {
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
    private func strandBound(_ pool: TaskPool) -> Duration {
        let expectedMicros = configuration.prefetchTargetMicros + (averageRunMicros[pool] ?? 0)
        let bound = Duration.microseconds(Int64(min(2 * expectedMicros, 1e9)))
        return min(configuration.strandedAfter, max(.milliseconds(10), bound))
    }

    /// Hands back the queued tasks of a pool whose oldest has waited `strandBound` without a
    /// slot: its slots are held by longer tasks than the prefetch expected. The pool's average
    /// task time becomes at least that wait, so it prefetches no more until short tasks
    /// bring it down again.
    private func handBackStranded() {
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

    private func noteDescribed() { described = true }

    /// The coordinator does not know this node on its connection and applied nothing of the
    /// pull: the next one carries the full description (and the same results), at once.
    private func describeAgain(_ plan: PlannedPull) {
        described = false
        unacknowledged[ObjectIdentifier(plan.context)] = nil
        pendingResults.insert(contentsOf: plan.results, at: 0)
        toReturn.insert(contentsOf: plan.returned, at: 0)
        if pendingSince == nil && !pendingResults.isEmpty { pendingSince = ContinuousClock.now }
        freeContexts.append(plan.context)
        inFlight -= 1
        wake.notify()
    }

    private func pullFailed(_ plan: PlannedPull, reason: String) async {
        unacknowledged[ObjectIdentifier(plan.context)] = nil
        // The results were not delivered: put them back in front, so none is lost.
        pendingResults.insert(contentsOf: plan.results, at: 0)
        toReturn.insert(contentsOf: plan.returned, at: 0)
        if pendingSince == nil && !pendingResults.isEmpty { pendingSince = ContinuousClock.now }
        statistics.failedPulls += 1
        failuresInARow += 1
        lastPullFailure = reason
        // Draining with nothing left to run or hand back: no need to wait for the coordinator
        // to say goodbye; it sees the node gone (its connection closes).
        if draining && !drained && running.isEmpty && pendingResults.isEmpty && toReturn.isEmpty
            && unacknowledged.values.allSatisfy({ $0.results.isEmpty && $0.returned.isEmpty }) {
            drained = true
            configuration.log("node \(configuration.name) drained; the coordinator did not answer its goodbye (\(reason)), nothing was left to hand back")
            socket?.close()
        }
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

    /// A process-pool task ended (the slots' pools report through their outboxes).
    private func finishedInProcess(_ result: Colony_V1_TaskResult) -> PlannedPull? {
        stopSignals[result.id] = nil
        executingProcesses -= processSlotsHeld.removeValue(forKey: result.id) ?? 1
        startTick?.yield()
        record(result, in: .process)
        return nextPull()
    }

    /// Takes the thread and io slots' finished results into the next pulls.
    private func absorbThreadResults() {
        for result in threadSlots?.takeResults() ?? [] { record(result, in: .thread) }
        for result in ioSlots?.takeResults() ?? [] { record(result, in: .io) }
    }

    /// Books a finished task: its slot's average run time, the node's counts, and its result
    /// (or, stopped at the drain deadline, its hand-back) for the next pull.
    private func record(_ result: Colony_V1_TaskResult, in pool: TaskPool) {
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

    // MARK: Running a task

    /// Stops `task` with "timed out after X s" once its timeout has passed, if it has one.
    static func watchdog(for task: Colony_V1_Task, stop: StopSignal) -> Task<Void, Never>? {
        guard task.timeoutMs > 0 else { return nil }
        let limit = Duration.milliseconds(Int(task.timeoutMs))
        let seconds = Double(task.timeoutMs) / 1000
        return Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled {
                stop.stop(reason: "timed out after \(seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)) s", kind: .failureTimeout)
            }
        }
    }

    /// Runs one task in this process (in a worker of the node's thread or io slots, or in a
    /// process-pool child). Never throws: every failure becomes a failed result with a
    /// one-line reason. A stop (cancellation from the coordinator, the task's timeout, a
    /// drain) cancels the calling task; a thread cannot be preempted, so a handler that never
    /// checks for cancellation holds its slot until it returns (its result is then replaced
    /// by the stop's reason).
    static func execute(_ task: Colony_V1_Task, registry: HandlerRegistry, nodeName: String, outputBytesMax: Int,
                        stop: StopSignal, poolKind: TaskPool,
                        output: (@Sendable (Colony_V1_OutputChunk) -> Void)? = nil) async -> Colony_V1_TaskResult {
        var result = Colony_V1_TaskResult()
        result.id = task.id
        result.attempt = task.attempt
        result.node = nodeName
        let clock = ContinuousClock()
        let start = clock.now
        guard let handler = registry[task.handler] else {
            result.ok = false
            result.error = HandlerError.unknownHandler(task.handler, node: nodeName, known: registry.names).description
            result.failure = .failureUnknownHandler
            return result
        }
        var context = TaskContext(taskID: task.id, attempt: task.attempt, nodeName: nodeName,
                                  dependencyOutputs: task.dependencies.mapValues { Array($0) }, pool: poolKind)
        context.output = output.map { TaskOutputSink(taskID: task.id, attempt: task.attempt, deliver: $0) }
        context.resources = task.assignedResources
        // Inline, in the caller's task: a stop cancels that task (see ThreadSlots), and a
        // handler that never suspends never leaves its thread.
        let outcome: Result<[UInt8], any Error>
        do { outcome = .success(try await handler.run(Array(task.input), context: context)) } catch { outcome = .failure(error) }
        if let (reason, kind) = stop.stopped {
            result.ok = false
            result.error = reason
            result.failure = kind
        } else {
            switch outcome {
            case .success(let output):
                if output.count > outputBytesMax {
                    result.ok = false
                    result.error = "output of \(output.count) bytes exceeds the limit of \(outputBytesMax) bytes"
                    result.failure = .failureRefused
                } else {
                    result.ok = true
                    result.output = Data(output)
                    result.counterOps = context.recorder.recorded.map { change in
                        var op = Colony_V1_CounterOp()
                        op.name = change.name
                        op.delta = change.delta
                        return op
                    }
                }
            case .failure(let error):
                result.ok = false
                result.error = String(describing: error)
                result.failure = .failureError
            }
        }
        let elapsed = clock.now - start
        result.runMicros = elapsed.inMicroseconds
        return result
    }
}

/// Tells a running task to stop, once, with a reason and the kind of failure it makes.
final class StopSignal: Sendable {
    private struct State {
        var reason: String?
        var kind: Colony_V1_FailureKind = .failureCancelled
        var action: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    /// Why it was stopped, with the failure's kind; nil while it was not.
    var stopped: (reason: String, kind: Colony_V1_FailureKind)? {
        state.withLock { state in state.reason.map { ($0, state.kind) } }
    }

    /// Runs `action` when the task is stopped (at once if it already was).
    func onStop(_ action: @escaping @Sendable () -> Void) {
        let stoppedAlready = state.withLock { state -> Bool in
            if state.reason != nil { return true }
            state.action = action
            return false
        }
        if stoppedAlready { action() }
    }

    func stop(reason: String, kind: Colony_V1_FailureKind = .failureCancelled) {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            state.kind = kind
            let action = state.action
            state.action = nil
            return action
        }
        action?()
    }
}

/// Tasks waiting on the node for a free slot of one pool, oldest first.
struct LocalQueue {
    private var items: [Colony_V1_Task] = []
    private var queuedAt: [ContinuousClock.Instant] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    /// The oldest task waiting.
    var first: Colony_V1_Task? { head < items.count ? items[head] : nil }

    /// When the oldest task still waiting was queued.
    var oldestQueuedAt: ContinuousClock.Instant? { head < queuedAt.count ? queuedAt[head] : nil }

    /// Queues `task`, which arrived at `time` (one clock read per dispatched batch, not per task).
    mutating func push(_ task: Colony_V1_Task, at time: ContinuousClock.Instant) {
        items.append(task)
        queuedAt.append(time)
    }

    mutating func pop() -> Colony_V1_Task? {
        guard head < items.count else { return nil }
        let task = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            queuedAt.removeAll(keepingCapacity: true)
            head = 0
        }
        return task
    }

    /// Empties the queue; returns what was waiting, oldest first.
    mutating func takeAll() -> [Colony_V1_Task] {
        defer {
            items = []
            queuedAt = []
            head = 0
        }
        return Array(items[head...])
    }

    /// Takes the tasks whose ids are in `ids` out of the queue and returns them.
    mutating func remove(_ ids: Set<UInt64>) -> [Colony_V1_Task] {
        let waiting = items[head...]
        let removed = waiting.filter { ids.contains($0.id) }
        if !removed.isEmpty {
            let kept = waiting.indices.filter { !ids.contains(items[$0].id) }
            queuedAt = kept.map { queuedAt[$0] }
            items = kept.map { items[$0] }
            head = 0
        }
        return removed
    }
}
