@testable import ColonyCore
import ColonyModel
import ColonySimulation
import XCTest

/// A seeded simulation of the coordinator core: nodes with random slots in three pools (thread,
/// process, io; some nodes without io slots, where io handlers fall back to threads) run tasks of random
/// lengths, die, lose dispatch replies, send duplicated and late results; clients submit with priorities, limits,
/// dependencies and counter increments, and cancel. After every step the core's books must
/// balance; at the end every task must have finished exactly once and the counter must equal
/// the increments of the tasks that succeeded. A failing seed is printed for replay:
/// `COLONY_SIM_SEED=1234 swift test --filter SimulationTests`.
final class SimulationTests: XCTestCase {
    struct SimNode {
        var announcement: NodeAnnouncement
        var running: [(task: DispatchedTask, finishesAt: Double)] = []
        var alive = true
        var highestSeq: UInt64 = 0
    }

    func testSeededSimulationKeepsEveryRule() {
        let seeds: [UInt64]
        if let fixed = ProcessInfo.processInfo.environment["COLONY_SIM_SEED"].flatMap(UInt64.init) {
            seeds = [fixed]
        } else {
            seeds = Array(1...200)
        }
        for seed in seeds {
            if let failure = simulate(seed: seed, steps: 2000) {
                XCTFail("seed \(seed): \(failure)  (replay: COLONY_SIM_SEED=\(seed) swift test --filter SimulationTests)")
                return
            }
        }
    }

    /// Runs one seed; returns the first broken rule, or nil.
    func simulate(seed: UInt64, steps: Int) -> String? {
        var random = SplitMix64(seed: seed)
        func roll(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        var bounds = CoordinatorCore.Bounds()
        bounds.nodeTimeoutSeconds = 3
        bounds.retryBackoffBaseSeconds = 0.05
        var core = CoordinatorCore(bounds: bounds, seed: seed)
        try? core.setLimit("db", size: 2)
        var now = 0.0
        var nodes: [SimNode] = (0..<(2 + roll(4))).map { index in
            var labels: [String: String] = [:]
            if index == 0 { labels["gpu"] = "1" }
            return SimNode(announcement: NodeAnnouncement(name: "n\(index)", host: "h", threadSlots: roll(4), labels: labels,
                                                          processSlots: 1 + roll(2), processHandlers: roll(2) == 0 ? ["isolated"] : [],
                                                          ioSlots: [0, 2, 8][roll(3)], ioHandlers: ["waiting"]))
        }
        var increments: [TaskID: Int64] = [:]
        var submitted: [TaskID] = []
        var finishedCount: [TaskID: Int] = [:]
        var succeededIncrements: Int64 = 0
        var lateResults: [(node: Int, outcome: TaskOutcome)] = []
        var nextNodeName = nodes.count

        func collect() {
            for outcome in core.takeResults(session: "s", max: 100_000).results {
                finishedCount[outcome.id, default: 0] += 1
                if outcome.succeeded { succeededIncrements += increments[outcome.id] ?? 0 }
            }
        }

        func pull(_ index: Int, finishing: Bool) -> String? {
            guard nodes[index].alive else { return nil }
            var outcomes: [TaskOutcome] = []
            var still: [(task: DispatchedTask, finishesAt: Double)] = []
            for entry in nodes[index].running {
                if entry.finishesAt <= now || finishing {
                    let ok = roll(10) != 0
                    let outcome = TaskOutcome(id: entry.task.id, attempt: entry.task.attempt, succeeded: ok, output: [1],
                                              error: ok ? "" : "boom", node: nodes[index].announcement.name,
                                              counterOps: [CounterOp(name: "c", delta: increments[entry.task.id] ?? 0)])
                    outcomes.append(outcome)
                    if roll(8) == 0 { lateResults.append((index, outcome)) }
                } else {
                    still.append(entry)
                }
            }
            let cancels = core.takeCancellations(forNode: nodes[index].announcement.name)
            // A node stops cancelled tasks and reports them as failed attempts.
            var kept: [(task: DispatchedTask, finishesAt: Double)] = []
            for entry in still {
                if cancels.contains(entry.task.id) {
                    outcomes.append(TaskOutcome(id: entry.task.id, attempt: entry.task.attempt, succeeded: false, error: "cancelled", node: nodes[index].announcement.name))
                } else {
                    kept.append(entry)
                }
            }
            nodes[index].running = kept
            // Some running tasks start or stop waiting for subtasks: their slots are free meanwhile.
            var waiting = nodes[index].announcement.waiting.intersection(kept.map(\.task.id))
            for entry in kept where roll(6) == 0 {
                if waiting.remove(entry.task.id) == nil { waiting.insert(entry.task.id) }
            }
            nodes[index].announcement.waiting = waiting
            if roll(10) == 0, let duplicate = outcomes.first { outcomes.append(duplicate) }
            do {
                _ = try core.report(node: nodes[index].announcement, results: outcomes, now: now,
                                    running: Set(nodes[index].running.map(\.task.id)), ackedReplySeq: nodes[index].highestSeq)
            } catch {
                return "report refused: \(error)"
            }
            var dispatched = core.dispatch(toNode: nodes[index].announcement.name, now: now)
            let seq = core.nextReplySeq()
            if roll(15) == 0 {
                // The reply is lost in transit: the node never sees these tasks.
                dispatched = []
            } else {
                nodes[index].highestSeq = seq
            }
            for pool in [TaskPool.thread, .process, .io] {
                if let lowest = dispatched.filter({ $0.pool == pool }).map({ core.priority(of: $0.id) ?? 0 }).min(),
                   core.hasEligibleQueuedTask(above: lowest, forNode: nodes[index].announcement.name, pool: pool) {
                    return "node \(index) got priority \(lowest) in its \(pool) pool while a higher eligible task was queued"
                }
            }
            for task in dispatched {
                if task.pool == .automatic { return "task \(task.id) dispatched without a pool" }
                nodes[index].running.append((task, now + Double(roll(5)) * 0.1))
            }
            // Tasks waiting for subtasks hold no slot; one that stops waiting takes its slot back
            // beside what took it, so only a pool that was just given tasks must not be overfull.
            let announcement = nodes[index].announcement
            let occupying = nodes[index].running.filter { !announcement.waiting.contains($0.task.id) }
            let inThreads = occupying.filter { $0.task.pool == .thread }.count
            let inIO = occupying.filter { $0.task.pool == .io }.count
            let inProcesses = occupying.count - inThreads - inIO
            let got = Set(dispatched.map(\.pool))
            if (got.contains(.thread) && inThreads > announcement.threadSlots) || (got.contains(.process) && inProcesses > announcement.processSlots)
                || (got.contains(.io) && inIO > announcement.ioSlots) {
                return "node \(index) holds \(inThreads)+\(inProcesses)+\(inIO) tasks with "
                    + "\(announcement.threadSlots)+\(announcement.processSlots)+\(announcement.ioSlots) slots"
            }
            return nil
        }

        for step in 0..<steps {
            now += 0.05
            switch roll(20) {
            case 0...3:
                var batch: [TaskSubmission] = []
                for _ in 0..<(1 + roll(4)) {
                    var options = TaskOptions(priority: Int32(roll(3)))
                    if roll(4) == 0 { options.uses = ["db"] }
                    if roll(6) == 0, let parent = submitted.randomElement(using: &random) { options.after = [parent] }
                    if roll(5) == 0 { options.retryOnError = true; options.maxAttempts = 3 }
                    if roll(15) == 0 { options.requiredLabels = ["gpu": "1"] }
                    options.pool = [TaskPool.automatic, .automatic, .thread, .process, .io][roll(5)]
                    batch.append(TaskSubmission(handler: ["isolated", "waiting", "work", "work"][roll(4)], input: [], options: options))
                }
                do {
                    let ids = try core.submit(batch, session: "s", now: now)
                    for id in ids { increments[id] = Int64(1 + roll(3)) }
                    submitted += ids
                } catch {
                    // A dependency already fetched is refused: that is the rule, not a failure.
                    if !"\(error)".contains("unknown dependency") { return "submit refused: \(error)" }
                }
            case 4:
                if let victim = submitted.randomElement(using: &random) { _ = core.cancel([victim], now: now) }
            case 5:
                // A node dies (its tasks vanish with it) and a new one joins later.
                let index = roll(nodes.count)
                if nodes[index].alive && nodes.filter(\.alive).count > 1 {
                    nodes[index].alive = false
                    nodes[index].running = []
                    nodes.append(SimNode(announcement: NodeAnnouncement(name: "n\(nextNodeName)", host: "h", threadSlots: 1 + roll(4),
                                                                        processSlots: roll(3), processHandlers: ["isolated"],
                                                                        ioSlots: roll(3) * 4, ioHandlers: ["waiting"])))
                    nextNodeName += 1
                }
            case 6:
                if !lateResults.isEmpty {
                    let late = lateResults.remove(at: roll(lateResults.count))
                    if nodes[late.node].alive {
                        _ = try? core.report(node: nodes[late.node].announcement, results: [late.outcome], now: now)
                    }
                }
            default:
                if let failure = pull(roll(nodes.count), finishing: false) { return failure }
            }
            _ = core.tick(now: now)
            collect()
            // The job recount walks every task and kept result: every 16th step, and at the end.
            if let problem = core.invariantViolations(jobs: step % 16 == 0).first { return "invariant: \(problem)" }
            for limit in core.allLimits where limit.inUse > limit.size { return "limit \(limit.name) over its size" }
        }
        // Drain: live nodes finish everything; time runs on past every back-off and timeout.
        for _ in 0..<200 {
            now += 1
            for index in nodes.indices where nodes[index].alive {
                if let failure = pull(index, finishing: true) { return failure }
            }
            _ = core.tick(now: now)
            collect()
            if let problem = core.invariantViolations().first { return "invariant (drain): \(problem)" }
        }
        // Tasks needing a label that no live node has may stay queued; cancel those.
        _ = core.cancel(session: "s", now: now)
        collect()
        for id in submitted where finishedCount[id] != 1 {
            return "task \(id) finished \(finishedCount[id] ?? 0) times"
        }
        if core.counter("c") != succeededIncrements {
            return "counter c = \(core.counter("c")), increments of succeeded tasks = \(succeededIncrements)"
        }
        for limit in core.allLimits where limit.highWater > limit.size {
            return "limit \(limit.name) reached \(limit.highWater) with size \(limit.size)"
        }
        return nil
    }
}

/// The core at scale: many nodes of many slots, mixed task lengths, nodes dying and joining.
/// (Its cost per task is a benchmark: `colony bench --workloads scale`.)
final class ScaleSimulationTests: XCTestCase {
    func testManyNodesWithChurnKeepEveryRule() {
        for (nodes, seed) in [(10, UInt64(1)), (200, 2), (1000, 3)] {
            let report = ScaleSimulation(nodes: nodes, slotsPerNode: 64, tasksPerSlot: nodes >= 1000 ? 1 : 3, seed: seed,
                                         churnEverySeconds: 0.05, checkEverySteps: nodes >= 1000 ? 2000 : 200).run()
            XCTAssertNil(report.violation, "\(nodes) nodes, seed \(seed)")
            XCTAssertGreaterThanOrEqual(report.dispatched, report.tasks)
            XCTAssertGreaterThan(report.nodesLost, 0, "churn happened")
        }
    }

    func testTasksWithResourcesKeepEveryRuleUnderChurn() {
        for (nodes, seed) in [(10, UInt64(4)), (100, 5)] {
            var simulation = ScaleSimulation(nodes: nodes, slotsPerNode: 16, tasksPerSlot: 3, seed: seed, churnEverySeconds: 0.05,
                                             checkEverySteps: 100)
            simulation.withResources = true
            let report = simulation.run()
            XCTAssertNil(report.violation, "\(nodes) nodes, seed \(seed)")
            XCTAssertGreaterThanOrEqual(report.dispatched, report.tasks)
        }
    }
}
