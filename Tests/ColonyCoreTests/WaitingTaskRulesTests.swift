import ColonyCore
import ColonyModel
import XCTest

/// Tasks that wait for tasks they submitted: while the node says one waits, its slots are
/// free for other tasks (its subtasks among them); when it stops waiting it takes them back
/// without dispatch adding more; its named resources stay held; it stays in its job.
final class WaitingTaskRulesTests: XCTestCase {
    private func node(threads: Int = 1, waiting: Set<TaskID> = [], gpus: [String] = []) -> NodeAnnouncement {
        var node = NodeAnnouncement(name: "n", host: "h", threadSlots: threads)
        node.waiting = waiting
        if !gpus.isEmpty { node.resources = ["gpus": .ids(gpus)] }
        return node
    }

    private func tasks(_ count: Int, gpus: Int = 0, cpus: Int = 1) -> [TaskSubmission] {
        (0..<count).map { _ in
            var options = TaskOptions()
            if gpus > 0 || cpus > 1 {
                options.resources = [ResourceVariant(cpus: cpus, amounts: gpus > 0 ? ["gpus": UInt64(gpus) * ResourceAmount.one] : [:])]
            }
            return TaskSubmission(handler: "work", input: [], options: options)
        }
    }

    func testAWaitingTaskFreesItsSlotAndTakesItBackWithoutOverfilling() throws {
        var core = CoordinatorCore()
        let parent = try core.submit(tasks(1), session: "s")[0]
        _ = try core.report(node: node(), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [parent])
        let children = try core.submit(tasks(2), session: "s")
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0), [], "the parent holds the only slot")
        _ = try core.report(node: node(waiting: [parent]), results: [], now: 1)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 1).map(\.id), [children[0]], "its slot, given up while it waits")
        XCTAssertEqual(core.invariantViolations(), [])
        // The parent stops waiting before the second child could start: two hold one slot.
        _ = try core.report(node: node(), results: [TaskOutcome(id: children[0], attempt: 1, succeeded: true, node: "n")], now: 2)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 2), [], "the parent took its slot back")
        XCTAssertEqual(core.invariantViolations(), [])
        _ = try core.report(node: node(waiting: [parent]), results: [], now: 3)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 3).map(\.id), [children[1]])
        _ = try core.report(node: node(), results: [TaskOutcome(id: children[1], attempt: 1, succeeded: true, node: "n"),
                                                    TaskOutcome(id: parent, attempt: 1, succeeded: true, node: "n")], now: 4)
        XCTAssertEqual(core.invariantViolations(), [])
        XCTAssertEqual(core.queuedCount, 0)
    }

    func testIdsTheNodeDoesNotLeaseFreeNothing() throws {
        var core = CoordinatorCore()
        let ids = try core.submit(tasks(2), session: "s")
        _ = try core.report(node: node(), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [ids[0]])
        _ = try core.report(node: node(waiting: [ids[1], 999]), results: [], now: 1)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 1), [], "a queued task and an unknown id give up no slot")
        // A waiting task whose lease ends stops counting at once.
        _ = try core.report(node: node(waiting: [ids[0]]), results: [TaskOutcome(id: ids[0], attempt: 1, succeeded: true, node: "n")], now: 2)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 2).map(\.id), [ids[1]])
        XCTAssertEqual(core.dispatch(toNode: "n", now: 2), [], "one slot, one task")
        XCTAssertEqual(core.invariantViolations(), [])
    }

    func testAWaitingTaskKeepsItsGPUsAndFreesAllItsCpus() throws {
        var core = CoordinatorCore()
        let parent = try core.submit(tasks(1, gpus: 1, cpus: 2), session: "s")[0]
        _ = try core.report(node: node(threads: 3, gpus: ["0"]), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [parent])
        let plain = try core.submit(tasks(2), session: "s")
        let gpuChild = try core.submit(tasks(1, gpus: 1), session: "s")[0]
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [plain[0]], "one slot of three is free")
        _ = try core.report(node: node(threads: 3, waiting: [parent], gpus: ["0"]), results: [], now: 1)
        let handed = core.dispatch(toNode: "n", now: 1).map(\.id)
        XCTAssertEqual(handed, [plain[1]], "both of its cpus are free; its gpu is not")
        XCTAssertFalse(handed.contains(gpuChild))
        XCTAssertEqual(core.invariantViolations(), [])
    }

    func testTheJobOfADispatchedTaskTravelsWithIt() throws {
        var core = CoordinatorCore()
        let (job, ids) = try core.submit(tasks(1), session: "s", into: .named("outer"))
        _ = try core.report(node: node(), results: [], now: 0)
        let handed = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(handed.map(\.id), ids)
        XCTAssertEqual(handed.first?.job, job)
        XCTAssertNotEqual(job, 0)
    }
}
