import ColonyCore
import ColonyModel
import XCTest

final class CoordinatorCoreTests: XCTestCase {
    private func node(_ name: String, slots: Int) -> NodeAnnouncement {
        NodeAnnouncement(name: name, host: "h", threadSlots: slots)
    }

    private func tasks(_ count: Int, handler: String = "echo") -> [TaskSubmission] {
        (0..<count).map { TaskSubmission(handler: handler, input: [UInt8(truncatingIfNeeded: $0)]) }
    }

    private func success(_ task: DispatchedTask, node: String) -> TaskOutcome {
        TaskOutcome(id: task.id, attempt: task.attempt, succeeded: true, output: task.input, node: node)
    }

    func testTasksAreDispatchedFirstInFirstOut() throws {
        var core = CoordinatorCore()
        let ids = try core.submit(tasks(5), session: "s")
        _ = try core.report(node: node("a", slots: 3), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "a").map(\.id), Array(ids[0..<3]))
    }

    func testANodeNeverHoldsMoreTasksThanItHasSlots() throws {
        var core = CoordinatorCore()
        _ = try core.submit(tasks(10), session: "s")
        _ = try core.report(node: node("a", slots: 2), results: [], now: 0)
        let first = core.dispatch(toNode: "a")
        XCTAssertEqual(first.count, 2)
        // A second pull before any result comes back gets nothing: the slots are taken.
        _ = try core.report(node: node("a", slots: 2), results: [], now: 1)
        XCTAssertEqual(core.dispatch(toNode: "a").count, 0)
        // One result frees one slot.
        _ = try core.report(node: node("a", slots: 2), results: [success(first[0], node: "a")], now: 2)
        XCTAssertEqual(core.dispatch(toNode: "a").count, 1)
    }

    func testResultsAreKeptForTheirSessionUntilFetched() throws {
        var core = CoordinatorCore()
        let mine = try core.submit(tasks(2), session: "mine")
        _ = try core.submit(tasks(1), session: "other")
        _ = try core.report(node: node("a", slots: 8), results: [], now: 0)
        let running = core.dispatch(toNode: "a")
        let touched = try core.report(node: node("a", slots: 8), results: running.map { success($0, node: "a") }, now: 1)
        XCTAssertEqual(touched, ["mine", "other"])
        let fetched = core.takeResults(session: "mine", max: 10)
        XCTAssertEqual(Set(fetched.results.map(\.id)), Set(mine))
        XCTAssertEqual(fetched.unfinished, 0)
        XCTAssertTrue(core.takeResults(session: "mine", max: 10).results.isEmpty, "a result is handed out once")
        XCTAssertEqual(core.takeResults(session: "other", max: 10).results.count, 1)
        XCTAssertEqual(core.status(now: 2).resultsWaiting, 0)
    }

    func testDuplicateAndForeignResultsAreDroppedAndCounted() throws {
        var core = CoordinatorCore()
        _ = try core.submit(tasks(1), session: "s")
        _ = try core.report(node: node("a", slots: 1), results: [], now: 0)
        let task = try XCTUnwrap(core.dispatch(toNode: "a").first)
        _ = try core.report(node: node("a", slots: 1), results: [success(task, node: "a")], now: 1)
        // The same result again, and a claim from a node that never held the task.
        _ = try core.report(node: node("a", slots: 1), results: [success(task, node: "a")], now: 2)
        _ = try core.report(node: node("b", slots: 1), results: [success(task, node: "b")], now: 2)
        let status = core.status(now: 3)
        XCTAssertEqual(status.succeeded, 1)
        XCTAssertEqual(status.staleResultsDropped, 2)
        XCTAssertEqual(core.takeResults(session: "s", max: 10).results.count, 1)
    }

    func testFailedOutcomesAreResultsToo() throws {
        var core = CoordinatorCore()
        _ = try core.submit(tasks(1, handler: "fail"), session: "s")
        _ = try core.report(node: node("a", slots: 1), results: [], now: 0)
        let task = try XCTUnwrap(core.dispatch(toNode: "a").first)
        let failure = TaskOutcome(id: task.id, attempt: task.attempt, succeeded: false, error: "boom", node: "a")
        _ = try core.report(node: node("a", slots: 1), results: [failure], now: 1)
        let result = try XCTUnwrap(core.takeResults(session: "s", max: 1).results.first)
        XCTAssertFalse(result.succeeded)
        XCTAssertEqual(result.error, "boom")
        XCTAssertEqual(core.status(now: 1).failed, 1)
    }

    func testInvalidSubmitsChangeNothing() throws {
        var core = CoordinatorCore()
        XCTAssertThrowsError(try core.submit([TaskSubmission(handler: "", input: [])], session: "s"))
        XCTAssertThrowsError(try core.submit(tasks(1), session: ""))
        XCTAssertThrowsError(try core.submit(tasks(1) + [TaskSubmission(handler: String(repeating: "x", count: 300), input: [])], session: "s"))
        XCTAssertEqual(core.queuedCount, 0)
    }

    func testStatusCountsNodesAndTasks() throws {
        var core = CoordinatorCore()
        _ = try core.submit(tasks(5), session: "s")
        _ = try core.report(node: node("a", slots: 2), results: [], now: 0)
        _ = core.dispatch(toNode: "a")
        let status = core.status(now: 1.5)
        XCTAssertEqual(status.queued, 3)
        XCTAssertEqual(status.running, 2)
        XCTAssertEqual(status.nodes.map(\.announcement.name), ["a"])
        XCTAssertEqual(status.nodes[0].lastSeenSecondsAgo, 1.5, accuracy: 1e-9)
    }

    /// Random pulls, results, duplicates and fetches: every task finishes exactly once and
    /// no node ever holds more than its slots.
    func testRandomInterleavingsLoseNothingAndFinishEachTaskOnce() throws {
        for seed in 1...50 {
            var random = SeededRandom(seed: UInt64(seed))
            var core = CoordinatorCore()
            let nodes = (0..<3).map { NodeAnnouncement(name: "n\($0)", host: "h", threadSlots: 1 + $0) }
            var running: [String: [DispatchedTask]] = [:]
            var submitted: Set<TaskID> = []
            var finished: [TaskID: Int] = [:]
            for step in 0..<400 {
                switch random.next() % 4 {
                case 0:
                    for id in try core.submit(tasks(Int(random.next() % 5)), session: "s") { submitted.insert(id) }
                default:
                    let n = nodes[Int(random.next() % UInt64(nodes.count))]
                    var done = running[n.name, default: []]
                    let keep = done.isEmpty ? 0 : Int(random.next() % UInt64(done.count + 1))
                    let still = Array(done.prefix(keep))
                    done.removeFirst(keep)
                    var outcomes = done.map { success($0, node: n.name) }
                    if let duplicate = outcomes.first, random.next() % 3 == 0 { outcomes.append(duplicate) }
                    _ = try core.report(node: n, results: outcomes, now: Double(step))
                    running[n.name] = still + core.dispatch(toNode: n.name)
                    XCTAssertLessThanOrEqual(running[n.name]!.count, n.threadSlots, "seed \(seed): node over its slots")
                }
                for outcome in core.takeResults(session: "s", max: 1000).results { finished[outcome.id, default: 0] += 1 }
            }
            // Drain.
            for _ in 0..<1000 where finished.count < submitted.count {
                for n in nodes {
                    _ = try core.report(node: n, results: running[n.name, default: []].map { success($0, node: n.name) }, now: 1e6)
                    running[n.name] = core.dispatch(toNode: n.name)
                }
                for outcome in core.takeResults(session: "s", max: 1000).results { finished[outcome.id, default: 0] += 1 }
            }
            XCTAssertEqual(Set(finished.keys), submitted, "seed \(seed): a task was lost")
            XCTAssertTrue(finished.values.allSatisfy { $0 == 1 }, "seed \(seed): a task finished twice")
        }
    }
}

/// SplitMix64: a tiny deterministic generator, so a failing seed replays exactly.
struct SeededRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
