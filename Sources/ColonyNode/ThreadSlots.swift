import ColonyWire
import Synchronization

/// The node's thread pool as slots: one long-lived worker per slot takes tasks from a
/// lock-protected local queue and leaves results in a lock-protected outbox.
///
/// Why: two Swift tasks and three hops between the pool and the node's actor per task, each a
/// possible thread wake-up, would be most of a tiny task's cost. Here a task
/// queued while a worker is free costs one lock and, only if that worker sleeps, one wake-up;
/// a finished task costs one lock, and the node's pull loop is woken only when the outbox
/// goes from empty to not empty (once per batch, not per task). A handler runs inline in its
/// worker, so one that never suspends never leaves its thread.
///
/// The same slots serve the io pool: there the workers have no executor preference, so they
/// run on Swift's cooperative pool and a handler that waits holds no thread (hundreds of
/// slots share a few threads).
///
/// A running task is stopped (cancellation, timeout, drain) by cancelling its worker: the
/// handler sees the cancellation, the worker reports the stop reason and ends, and a new
/// worker takes over the slot (a cancelled Swift task cannot run further tasks).
final class ThreadSlots: Sendable {
    /// A task taken by a worker: what it runs, and how to stop it.
    struct Taken: Sendable {
        var task: Colony_V1_Task
        var stop: StopSignal
    }

    private struct Running {
        var taskID: UInt64
        var stop: StopSignal
        var cpus = 1
        /// It waits for tasks it submitted: its slots are free for others meanwhile.
        var waiting = false
        /// It waited once: another worker took its slot, so its own worker ends with it.
        var gaveUpWorker = false
    }

    private struct State {
        var queue = LocalQueue()
        var idleWorkers: [(number: Int, continuation: CheckedContinuation<Taken?, Never>)] = []
        /// What each worker runs now (by worker number).
        var running: [Int: Running] = [:]
        var workers: [Int: Task<Void, Never>] = [:]
        var nextWorker = 0
        var outbox: [Colony_V1_TaskResult] = []
        var shutDown = false
        /// Slots held by running tasks beyond their worker's own (a task of N cpus holds N):
        /// the workers of those slots stay idle until it ends.
        var heldExtra = 0
        /// Slots given back by running tasks that wait for their subtasks (see `SubtaskLink`).
        var waitingHeld = 0

        func fits(_ task: Colony_V1_Task, slots: Int) -> Bool {
            running.count + heldExtra - waitingHeld + task.slotsHeld <= slots
        }

        /// Marks `task` taken by worker `number`.
        mutating func assign(_ task: Colony_V1_Task, to number: Int) -> Taken {
            let taken = Taken(task: task, stop: StopSignal())
            running[number] = Running(taskID: task.id, stop: taken.stop, cpus: task.slotsHeld)
            heldExtra += task.slotsHeld - 1
            return taken
        }

        /// Hands queued tasks to idle workers while the oldest fits (FIFO: a task of many
        /// cpus at the head waits for its slots, and nothing overtakes it).
        mutating func handOut(slots: Int) -> [(CheckedContinuation<Taken?, Never>, Taken)] {
            var handOuts: [(CheckedContinuation<Taken?, Never>, Taken)] = []
            while !idleWorkers.isEmpty, let next = queue.first, fits(next, slots: slots), let task = queue.pop() {
                let (number, worker) = idleWorkers.removeLast()
                handOuts.append((worker, assign(task, to: number)))
            }
            return handOuts
        }
    }

    private let state = Mutex(State())
    let slots: Int
    /// Called (outside the lock) when the outbox gains its first result.
    private let resultsReady: @Sendable () -> Void
    private let run: @Sendable (Colony_V1_Task, StopSignal) async -> Colony_V1_TaskResult
    /// Where the workers run; nil: Swift's cooperative pool (the io pool).
    private let executor: ThreadPoolExecutor?

    /// `run` executes one task (never throws: failures are results).
    init(slots: Int, executor: ThreadPoolExecutor?, resultsReady: @escaping @Sendable () -> Void,
         run: @escaping @Sendable (Colony_V1_Task, StopSignal) async -> Colony_V1_TaskResult) {
        self.slots = slots
        self.executor = executor
        self.resultsReady = resultsReady
        self.run = run
    }

    /// Starts one worker per slot.
    func start() {
        for _ in 0..<slots { startWorker() }
    }

    private func startWorker() {
        state.withLock { state in
            guard !state.shutDown else { return }
            let number = state.nextWorker
            state.nextWorker += 1
            state.workers[number] = Task(executorPreference: executor) { [self] in await self.work(as: number) }
        }
    }

    private func work(as number: Int) async {
        while let taken = await take(worker: number) {
            let watchdog = watchdog(for: taken.task)
            let result = await run(taken.task, taken.stop)
            watchdog?.cancel()
            // Read under the lock that `stop` cancels under: a stop either hit this run (and
            // the worker ends) or finds the task finished.
            let (first, cancelled, ended, handOuts) = state.withLock { state -> (Bool, Bool, Bool, [(CheckedContinuation<Taken?, Never>, Taken)]) in
                let ran = state.running.removeValue(forKey: number)
                let cpus = ran?.cpus ?? 1
                let cancelled = Task.isCancelled
                // A worker whose task waited for subtasks was replaced then: it ends here.
                let ended = ran?.gaveUpWorker ?? false
                if cancelled || ended { state.workers[number] = nil }
                if ran?.waiting ?? false { state.waitingHeld -= cpus }
                state.outbox.append(result)
                guard cpus > 1 || ended else { return (state.outbox.count == 1, cancelled, ended, []) }
                // Its slots are free again: idle workers may start queued tasks.
                state.heldExtra -= cpus - 1
                return (state.outbox.count == 1, cancelled, ended, state.handOut(slots: slots))
            }
            for (worker, taken) in handOuts { worker.resume(returning: taken) }
            if first { resultsReady() }
            if ended { return }
            if cancelled {
                // Cancelled to stop its handler: a fresh worker takes the slot.
                startWorker()
                return
            }
        }
    }

    /// Stops `task` with "timed out after X s" once its timeout has passed, if it has one.
    private func watchdog(for task: Colony_V1_Task) -> Task<Void, Never>? {
        guard task.timeoutMs > 0 else { return nil }
        let limit = Duration.milliseconds(Int(task.timeoutMs))
        let seconds = Double(task.timeoutMs) / 1000
        let id = task.id
        return Task { [self] in
            try? await Task.sleep(for: limit)
            if !Task.isCancelled {
                stop(id, reason: "timed out after \(seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)) s", kind: .failureTimeout)
            }
        }
    }

    private func take(worker number: Int) async -> Taken? {
        let slots = self.slots
        let ready = state.withLock { state -> Taken?? in
            if state.shutDown { return .some(nil) }
            guard let next = state.queue.first, state.fits(next, slots: slots), let task = state.queue.pop() else { return nil }
            return .some(state.assign(task, to: number))
        }
        if let ready { return ready }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Taken?, Never>) in
            let now = state.withLock { state -> Taken?? in
                if state.shutDown { return .some(nil) }
                if let next = state.queue.first, state.fits(next, slots: slots), let task = state.queue.pop() {
                    return .some(state.assign(task, to: number))
                }
                state.idleWorkers.append((number, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Queues `tasks` (arrived at `time`); idle workers take them at once.
    func push(_ tasks: [Colony_V1_Task], at time: ContinuousClock.Instant) {
        guard !tasks.isEmpty else { return }
        let handOuts = state.withLock { state -> [(CheckedContinuation<Taken?, Never>, Taken)] in
            var handOuts: [(CheckedContinuation<Taken?, Never>, Taken)] = []
            for task in tasks {
                if state.queue.isEmpty, state.fits(task, slots: slots), let (number, worker) = state.idleWorkers.popLast() {
                    handOuts.append((worker, state.assign(task, to: number)))
                } else {
                    state.queue.push(task, at: time)
                }
            }
            return handOuts
        }
        for (worker, taken) in handOuts { worker.resume(returning: taken) }
    }

    /// Takes the finished results (oldest first).
    func takeResults() -> [Colony_V1_TaskResult] {
        state.withLock { state in
            defer { state.outbox.removeAll(keepingCapacity: true) }
            return state.outbox
        }
    }

    /// Stops the running task `id` (if it runs here) with `reason`: its handler's worker is
    /// cancelled, under the lock, so the cancellation can never reach the worker's next task.
    func stop(_ id: UInt64, reason: String, kind: Colony_V1_FailureKind = .failureCancelled) {
        state.withLock { state in
            guard let (number, running) = state.running.first(where: { $0.value.taskID == id }) else { return }
            running.stop.stop(reason: reason, kind: kind)
            state.workers[number]?.cancel()
        }
    }

    /// Task `id` waits (`true`) for tasks it submitted, or stops waiting: while it waits its
    /// slots are free, and the first time another worker is started to use them (its own is
    /// busy awaiting). Once it stops waiting it runs on beside them until one ends.
    func setWaiting(_ id: UInt64, _ waiting: Bool) {
        let slots = self.slots
        let (handOuts, startAnother) = state.withLock { state -> ([(CheckedContinuation<Taken?, Never>, Taken)], Bool) in
            guard let number = state.running.first(where: { $0.value.taskID == id })?.key,
                  state.running[number]!.waiting != waiting else { return ([], false) }
            let cpus = state.running[number]!.cpus
            state.running[number]!.waiting = waiting
            state.waitingHeld += waiting ? cpus : -cpus
            guard waiting else { return ([], false) }
            let first = !state.running[number]!.gaveUpWorker
            state.running[number]!.gaveUpWorker = true
            return (state.handOut(slots: slots), first)
        }
        for (worker, taken) in handOuts { worker.resume(returning: taken) }
        if startAnother { startWorker() }
    }

    /// Stops every running task with `reason`.
    func stopAll(reason: String) {
        state.withLock { state in
            for (number, running) in state.running {
                running.stop.stop(reason: reason)
                state.workers[number]?.cancel()
            }
        }
    }

    /// Takes queued (not started) tasks whose ids are in `ids` out of the queue.
    func removeQueued(_ ids: Set<UInt64>) -> [Colony_V1_Task] {
        let slots = self.slots
        // A task of many cpus waiting at the head may be among them: what queued behind it may start.
        let (removed, handOuts) = state.withLock { state in (state.queue.remove(ids), state.handOut(slots: slots)) }
        for (worker, taken) in handOuts { worker.resume(returning: taken) }
        return removed
    }

    /// Takes every queued (not started) task.
    func takeQueued() -> [Colony_V1_Task] {
        state.withLock { $0.queue.takeAll() }
    }

    var oldestQueuedAt: ContinuousClock.Instant? { state.withLock { $0.queue.oldestQueuedAt } }
    var hasQueued: Bool { state.withLock { !$0.queue.isEmpty } }
    /// Tasks running now.
    var busy: Int { state.withLock { $0.running.count } }
    /// Nothing runs, nothing waits, no result waits to be taken.
    var isIdle: Bool { state.withLock { $0.running.isEmpty && $0.queue.isEmpty && $0.outbox.isEmpty } }

    /// Ends the workers (once nothing runs) and wakes idle ones.
    func shutdown() {
        let (idle, workers) = state.withLock { state in
            state.shutDown = true
            defer { state.idleWorkers.removeAll() }
            return (state.idleWorkers, Array(state.workers.values))
        }
        for (_, worker) in idle { worker.resume(returning: nil) }
        for worker in workers { worker.cancel() }
    }
}
