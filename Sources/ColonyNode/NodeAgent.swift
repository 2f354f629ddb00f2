import Colony
import ColonyModel
import ColonyWire
import Foundation
import NNG
import Sockets
import Synchronization

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
///
/// The agent and its pulls run on the sockets thread (`SocketReactor`), where replies are
/// read: a reply is taken and the next pull sent without waking another thread. Tasks run
/// elsewhere (thread slots, io slots, the process pool), never here.
public actor NodeAgent {
    public nonisolated var unownedExecutor: UnownedSerialExecutor { SocketReactor.shared.asUnownedSerialExecutor() }

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
    let registry: HandlerRegistry
    var pendingResults: [Colony_V1_TaskResult] = []
    /// Tasks the node holds (queued or running), with the attempt it holds of each: an older
    /// attempt still running when the coordinator re-leased the task (it had declared this
    /// node lost) is stopped and its result counts for nothing here.
    var running: [UInt64: UInt32] = [:]
    var freeContexts: [Requester] = []
    var inFlight = 0
    var backingOff = false
    var statistics = Statistics()
    var startTick: AsyncStream<Void>.Continuation?
    /// The thread pool's slots, queue and finished results (set while `run` runs).
    var threadSlots: ThreadSlots?
    /// The io pool's, on the cooperative pool (set while `run` runs, with io slots).
    var ioSlots: ThreadSlots?
    var processQueue = LocalQueue()
    var executingProcesses = 0
    /// Process-pool slots each executing task holds (its cpus).
    var processSlotsHeld: [UInt64: Int] = [:]
    var averageRunMicros: [TaskPool: Double] = [:]
    var processPool: ProcessPool?
    /// Resident memory of the node and of its children, and when it was read.
    var memory: (node: UInt64, children: UInt64) = (0, 0)
    var memoryReadAt: ContinuousClock.Instant?
    var stopSignals: [UInt64: StopSignal] = [:]
    var highestReplySeq: UInt64 = 0
    /// The coordinator has this node's description (a full pull was answered); pulls are
    /// brief until it asks again (PullReply.describe).
    var described = false
    /// When the oldest of `pendingResults` was added.
    var pendingSince: ContinuousClock.Instant?
    var lingerTimerArmed = false
    let wake: WakeSignal
    /// Running tasks' live output, for the next pulls.
    let outbox: TaskOutputOutbox
    /// When a pull last carried output: a pull of its own for output goes at most every
    /// `outputPullInterval`, so chatty commands cost a few pulls a second, not one per line.
    var outputSentAt: ContinuousClock.Instant?
    var outputTimerArmed = false
    static let outputPullInterval = Duration.milliseconds(100)
    /// Draining: no new tasks; queued ones (and, past the deadline, running ones) go back.
    var draining = false
    var toReturn: [UInt64] = []
    /// The last pull (leaving) was answered: the node is done.
    var drained = false
    static let drainStopReason = "handed back: node draining past its deadline"
    /// Tasks stopped at the drain deadline: what they report is a hand-back, not a result.
    var stoppedByDrain: Set<UInt64> = []
    /// Set when a drain gave up at its deadline: what was not handed back.
    var drainGaveUp: DrainIncomplete?
    /// The latest reason a pull failed (for a drain that gives up).
    var lastPullFailure: String?
    /// Pulls failed since the last answered one: how long the next retry waits.
    var failuresInARow = 0
    /// What pulls in flight carry (by context), not yet taken by the coordinator.
    var unacknowledged: [ObjectIdentifier: (results: [Colony_V1_TaskResult], returned: [UInt64])] = [:]
    /// The link of `run`, so that a drain that gives up can end pulls in flight at once.
    var link: CoordinatorLink?
    /// Whether the link is connected: not means the coordinator is not there to answer the
    /// pull in flight, so a draining node owing nothing need not wait for it.
    var connected = false
    /// Handlers' submits and waits for their subtasks; `waitingChangesSent`: how many changes
    /// of the waiting set the last pull told the coordinator of.
    var subtasks: SubtaskLink?
    var waitingChangesSent: UInt64 = 0

    /// Whether a look at the local queues for stranded tasks is scheduled.
    var strandCheckArmed = false

    let handlerNames: [String]
    let processHandlerNames: [String]
    let ioHandlerNames: [String]

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
        if !connected { leaveIfNothingIsOwed(because: "the coordinator is not connected") }
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
    func giveUpDrain() {
        guard !drained else { return }
        let results = pendingResults + unacknowledged.values.flatMap(\.results)
        let returned = toReturn.count + unacknowledged.values.reduce(0) { $0 + $1.returned.count }
        drainGaveUp = DrainIncomplete(node: configuration.name, coordinator: configuration.coordinatorURL,
                                      tasks: returned + running.count, results: results.count, lastFailure: lastPullFailure)
        drained = true
        Self.close(link)
        wake.notify()
    }

    /// Closes `link` off the sockets thread, where the agent runs: closing an nng socket may
    /// wait up to `Socket.closeWaitMax` (nng 1.5.2), and meanwhile no socket of this process
    /// would be read.
    nonisolated static func close(_ link: CoordinatorLink?) {
        guard let link else { return }
        Task.detached { link.close() }
    }

    /// At the drain deadline: stops what still runs (it is handed back as it ends).
    func stopRemaining() {
        stoppedByDrain.formUnion(running.keys)
        for stop in stopSignals.values { stop.stop(reason: Self.drainStopReason) }
        threadSlots?.stopAll(reason: Self.drainStopReason)
        ioSlots?.stopAll(reason: Self.drainStopReason)
    }

    func handBackQueued() {
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
    func currentFigures() -> Colony_V1_NodeFigures {
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
        // Resending is ours to do (with the results put back), not the link's.
        let link = try CoordinatorLink(url: configuration.coordinatorURL, tls: configuration.tls, waitForConnection: false, onLoss: .fail)
        self.link = link
        let connectionEvents = link.connectionEvents()
        freeContexts = [try link.openRequester(), try link.openRequester()]
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
        let subtasks = SubtaskLink(url: configuration.coordinatorURL, token: configuration.token, tls: configuration.tls) { wake.notify() }
        self.subtasks = subtasks
        let slots = ThreadSlots(slots: configuration.threads, executor: pool, resultsReady: { wake.notify() }) { task, stop in
            await Self.execute(task, registry: registry, nodeName: nodeName, outputBytesMax: outputBytesMax, stop: stop, poolKind: .thread,
                               output: outbox.add, subtasks: subtasks)
        }
        subtasks.attach(slots, for: .thread)
        threadSlots = slots
        slots.start()
        let ioSlots = configuration.ioSlots > 0
            ? ThreadSlots(slots: configuration.ioSlots, executor: nil, resultsReady: { wake.notify() }) { task, stop in
                await Self.execute(task, registry: registry, nodeName: nodeName, outputBytesMax: outputBytesMax, stop: stop, poolKind: .io,
                                   output: outbox.add, subtasks: subtasks)
            }
            : nil
        if let ioSlots { subtasks.attach(ioSlots, for: .io) }
        self.ioSlots = ioSlots
        ioSlots?.start()
        let (ticks, tick) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        startTick = tick
        configuration.log("node \(nodeName) pulling from \(configuration.coordinatorURL) with \(configuration.threads) thread slots"
            + ", \(configuration.processes.size) process slots and \(configuration.ioSlots) io slots")
        // Pulls in flight ignore task cancellation (see Context.request); closing the socket
        // is what ends them promptly when the node is stopped.
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                // On the sockets thread, so that its waits (WakeSignal) do not hop to the pool.
                group.addTask(executorPreference: SocketReactor.shared) {
                    await self.pullLoop()
                    tick.finish()
                    // Off the sockets thread (see `close(_:)`); ends the connection events' stream too.
                    await Task.detached {
                        await subtasks.close()
                        link.close()
                    }.value
                }
                group.addTask {
                    for await event in connectionEvents { await self.connectionChanged(event) }
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
            // Not at once: closing a REQ socket while a pull is in flight can leave nng 1.5.2's
            // reaper stuck for the rest of the process (see Socket.close). Cancelled, the pull
            // loop sends no more pulls and ends once the one in flight is answered, which a live
            // coordinator does within the long poll; the socket is then closed with nothing in
            // flight. One that does not answer is cut off after that grace.
            let grace = Duration.milliseconds(Int(configuration.longPollMilliseconds)) + .milliseconds(500)
            Task.detached {
                try? await Task.sleep(for: grace)
                link.close()
            }
        }
        startTick = nil
        // Off the sockets thread: closing a process slot waits for its running task, and an
        // nng socket's close may wait too.
        await Task.detached { Self.shutDown(slots: slots, ioSlots: ioSlots, pool: pool, processPool: processPool, link: link) }.value
        if let drainGaveUp { throw drainGaveUp }
    }

    private nonisolated static func shutDown(slots: ThreadSlots, ioSlots: ThreadSlots?, pool: ThreadPoolExecutor,
                                             processPool: ProcessPool?, link: CoordinatorLink) {
        slots.shutdown()
        ioSlots?.shutdown()
        pool.shutdown()
        processPool?.shutdown()
        link.close()
    }

    /// The next queued process-pool task, when a child is free; marks the child taken.
    func nextStartableInProcess() -> Colony_V1_Task? {
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
    func prefetch(_ pool: TaskPool) -> Int {
        guard configuration.prefetchMax > 0, let average = averageRunMicros[pool] else { return 0 }
        let perSlot = Int(configuration.prefetchTargetMicros / max(average, 1))
        let slots = pool == .process ? configuration.processes.size : configuration.threads
        return min(configuration.prefetchMax, perSlot * slots)
    }

}
