import ColonyCore
import ColonyModel
#if canImport(Glibc)
import Glibc
#endif

/// The coordinator core driven at cluster scale, on simulated time: many nodes with many
/// slots pulling tasks of mixed lengths while nodes die and others join. What it measures is
/// the core's own CPU time per dispatched task (reports, dispatches and ticks; not the
/// simulation around them), so that the cost can be compared from 10 to 1,000 nodes; what it
/// checks is the rules: the core's books balance, no node holds more than its slots, no task
/// goes to a node without its handler or labels, every task finishes exactly once.
///
/// Used by `colony bench` (the figures) and by the core's tests (the rules, smaller).
public struct ScaleSimulation: Sendable {
    public var nodes: Int
    public var slotsPerNode: Int
    /// Tasks per slot of the starting cluster (so the queue stays full for a while at every size).
    public var tasksPerSlot: Int
    public var seed: UInt64
    /// A node dies (its tasks vanish) and a new one joins, on average once per this many
    /// simulated seconds; 0: no churn.
    public var churnEverySeconds: Double
    /// Checks the core's invariants every this many steps (they walk every task).
    public var checkEverySteps: Int
    /// Some tasks ask for resources (4 cpus, a gpu, half a gpu, or a gpu else 8 cpus) and the
    /// gpu-labelled nodes offer `gpus=0,1,2,3`; off for the dispatch-cost figure of plain tasks.
    public var withResources = false

    public init(nodes: Int, slotsPerNode: Int = 64, tasksPerSlot: Int = 4, seed: UInt64 = 1,
                churnEverySeconds: Double = 0.05, checkEverySteps: Int = 500) {
        self.nodes = nodes
        self.slotsPerNode = slotsPerNode
        self.tasksPerSlot = tasksPerSlot
        self.seed = seed
        self.churnEverySeconds = churnEverySeconds
        self.checkEverySteps = checkEverySteps
    }

    public struct Report: Sendable {
        public var nodes: Int
        public var tasks: Int
        /// Attempts handed out (more than `tasks` when nodes died holding some).
        public var dispatched: Int
        public var nodesLost: Int
        /// Core CPU seconds spent in reports, dispatches and ticks.
        public var coreCPUSeconds: Double
        public var simulatedSeconds: Double
        /// The first broken rule, or nil.
        public var violation: String?
        public var dispatchMicrosPerTask: Double { dispatched == 0 ? 0 : coreCPUSeconds * 1e6 / Double(dispatched) }
    }

    private struct SimNode {
        var name: String
        var announcement: NodeAnnouncement
        var running: [(task: DispatchedTask, finishesAt: Double)] = []
        var alive = true
        var highestSeq: UInt64 = 0
        var nextWake = 0.0
    }

    /// Runs the simulation to the end (every task finished) or to the first broken rule.
    public func run() -> Report {
        var random = SplitMix64(seed: seed)
        func roll(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        var bounds = CoordinatorCore.Bounds()
        bounds.tasksPerSubmitMax = 1_000_000
        var core = CoordinatorCore(bounds: bounds, seed: seed)
        let step = 0.001
        var now = 0.0
        var cpu = 0.0

        // Every node runs `work`; half also `render`; a tenth has the label gpu=1.
        func makeNode(_ index: Int) -> SimNode {
            let handlers = index % 2 == 0 ? ["work", "render"] : ["work"]
            let labels = index % 10 == 0 ? ["gpu": "1"] : [:]
            let name = "n\(index)"
            var announcement = NodeAnnouncement(name: name, host: "h", threadSlots: slotsPerNode, handlers: handlers, labels: labels)
            if withResources && index % 10 == 0 { announcement.resources = ["gpus": .ids(["0", "1", "2", "3"])] }
            return SimNode(name: name, announcement: announcement)
        }
        var fleet = (0..<nodes).map(makeNode)
        var nextIndex = nodes

        // Tasks: 90% of 1 ms, 9% of 50 ms, 1% of 1 s; a fifth need `render`, a twentieth gpu=1.
        let total = nodes * slotsPerNode * tasksPerSlot
        var length: [TaskID: Double] = [:]
        var needs: [TaskID: (handler: String, labels: [String: String])] = [:]
        var submitted = 0
        while submitted < total {
            let count = min(10_000, total - submitted)
            var batch: [TaskSubmission] = []
            batch.reserveCapacity(count)
            for _ in 0..<count {
                var options = TaskOptions()
                if roll(20) == 0 { options.requiredLabels = ["gpu": "1"] }
                if withResources {
                    let one = ResourceAmount.one
                    switch roll(100) {
                    case 0, 1: options.resources = [ResourceVariant(cpus: 4)]
                    case 2: options.resources = [ResourceVariant(amounts: ["gpus": one])]
                    case 3: options.resources = [ResourceVariant(amounts: ["gpus": one / 2])]
                    case 4: options.resources = [ResourceVariant(cpus: 2, amounts: ["gpus": 2 * one]), ResourceVariant(cpus: 8)]
                    default: break
                    }
                }
                batch.append(TaskSubmission(handler: roll(5) == 0 ? "render" : "work", input: [], options: options))
            }
            let ids: [TaskID]
            do { ids = try core.submit(batch, session: "scale", now: now) } catch {
                return Report(nodes: nodes, tasks: total, dispatched: 0, nodesLost: 0, coreCPUSeconds: 0, simulatedSeconds: 0,
                              violation: "submit refused: \(error)")
            }
            for (id, submission) in zip(ids, batch) {
                let dice = roll(100)
                length[id] = dice < 90 ? 0.001 : dice < 99 ? 0.05 : 1
                needs[id] = (submission.handler, submission.options.requiredLabels)
            }
            submitted += count
        }

        var finished: [TaskID: Int] = [:]
        var dispatched = 0
        var lost = 0
        var steps = 0
        var nextChurn = churnEverySeconds > 0 ? churnEverySeconds : .infinity
        func report(_ message: String) -> Report {
            Report(nodes: nodes, tasks: total, dispatched: dispatched, nodesLost: lost, coreCPUSeconds: cpu, simulatedSeconds: now,
                   violation: message)
        }

        while finished.count < total {
            steps += 1
            if steps > 10_000_000 { return report("no progress: \(finished.count) of \(total) finished") }
            // Jump to the next moment something happens (a finish, a heartbeat, churn).
            let nextEvent = fleet.lazy.filter(\.alive).map(\.nextWake).min() ?? now + step
            now = max(now + step, min(nextEvent, nextChurn))
            if now >= nextChurn {
                nextChurn = now + churnEverySeconds * Double(1 + roll(200)) / 100
                let victim = roll(fleet.count)
                if fleet[victim].alive && fleet.lazy.filter(\.alive).count > 1 {
                    fleet[victim].alive = false
                    fleet[victim].running = []
                    fleet.append(makeNode(nextIndex))
                    fleet[fleet.count - 1].nextWake = now
                    nextIndex += 1
                }
            }
            for index in fleet.indices where fleet[index].alive && fleet[index].nextWake <= now {
                var outcomes: [TaskOutcome] = []
                var still: [(task: DispatchedTask, finishesAt: Double)] = []
                for entry in fleet[index].running {
                    if entry.finishesAt <= now {
                        outcomes.append(TaskOutcome(id: entry.task.id, attempt: entry.task.attempt, succeeded: true, node: fleet[index].name))
                    } else {
                        still.append(entry)
                    }
                }
                fleet[index].running = still
                let node = fleet[index]
                let stillRunning = Set(node.running.map(\.task.id))
                let start = threadCPUSeconds()
                do {
                    _ = try core.report(node: node.announcement, results: outcomes, now: now, running: stillRunning,
                                        ackedReplySeq: node.highestSeq)
                } catch {
                    return report("report of \(node.name) refused: \(error)")
                }
                let handed = core.dispatch(toNode: node.name, now: now)
                fleet[index].highestSeq = core.nextReplySeq()
                cpu += threadCPUSeconds() - start
                for task in handed {
                    guard let need = needs[task.id] else { return report("unknown task \(task.id) dispatched") }
                    if !node.announcement.handlers.contains(need.handler) {
                        return report("task \(task.id) of handler \(need.handler) sent to \(node.name), which has \(node.announcement.handlers)")
                    }
                    if !need.labels.allSatisfy({ node.announcement.labels[$0.key] == $0.value }) {
                        return report("task \(task.id) needing \(need.labels) sent to \(node.name) with \(node.announcement.labels)")
                    }
                    fleet[index].running.append((task, now + (length[task.id] ?? 0)))
                }
                dispatched += handed.count
                let cpusHeld = fleet[index].running.reduce(0) { $0 + $1.task.cpus }
                if cpusHeld > slotsPerNode {
                    return report("\(node.name) holds tasks of \(cpusHeld) cpus with \(slotsPerNode) slots")
                }
                if let problem = Self.overShared(fleet[index].running.map(\.task), node: node.announcement) { return report(problem) }
                // The next finish, or a heartbeat (an idle node's long poll) within a second.
                fleet[index].nextWake = fleet[index].running.map(\.finishesAt).min().map { Swift.min($0, now + 1) } ?? now + 1
            }
            let before = core.queuedCount
            let tickStart = threadCPUSeconds()
            _ = core.tick(now: now)
            cpu += threadCPUSeconds() - tickStart
            if core.queuedCount > before {
                // Leases of a lost node went back to the queue: parked nodes are woken.
                lost += 1
                for index in fleet.indices where fleet[index].alive { fleet[index].nextWake = now }
            }
            for outcome in core.takeResults(session: "scale", max: 1_000_000).results {
                finished[outcome.id, default: 0] += 1
                if finished[outcome.id]! > 1 { return report("task \(outcome.id) finished twice") }
            }
            if checkEverySteps > 0 && steps % checkEverySteps == 0, let problem = core.invariantViolations().first {
                return report("invariant: \(problem)")
            }
        }
        if let problem = core.invariantViolations().first { return report("invariant at the end: \(problem)") }
        return Report(nodes: nodes, tasks: total, dispatched: dispatched, nodesLost: lost, coreCPUSeconds: cpu, simulatedSeconds: now,
                      violation: nil)
    }
}

extension ScaleSimulation {
    /// What the node runs at once, checked from the node's side: an id it does not offer, or
    /// shared beyond one whole.
    static func overShared(_ running: [DispatchedTask], node: NodeAnnouncement) -> String? {
        var shares: [String: UInt64] = [:]
        for task in running {
            for resource in task.resources where !resource.ids.isEmpty {
                guard case .ids(let offered) = node.resources[resource.name] else {
                    return "task \(task.id) given \(resource.name) by \(node.name), which offers none"
                }
                for id in resource.ids {
                    if !offered.contains(id) { return "task \(task.id) given \(resource.name) id \(id), not offered by \(node.name)" }
                    shares["\(resource.name)/\(id)", default: 0] += min(resource.amount, ResourceAmount.one)
                }
            }
        }
        if let (id, share) = shares.first(where: { $0.value > ResourceAmount.one }) {
            return "\(node.name) runs tasks sharing \(id) beyond one whole: \(ResourceAmount.format(share))"
        }
        return nil
    }
}

/// CPU time of the calling thread, in seconds.
private func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}
