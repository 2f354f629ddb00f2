import ColonyCore
import ColonyModel
import XCTest

/// Resources per task: counted per node at dispatch, never over-committed, ids never shared
/// beyond one whole, released however a lease ends, large requests not starved.
final class ResourceRulesTests: XCTestCase {
    private let one = ResourceAmount.one

    private func gpuNode(_ name: String = "n", slots: Int = 8, gpus: [String] = ["0", "1"]) -> NodeAnnouncement {
        var node = NodeAnnouncement(name: name, host: "h", threadSlots: slots)
        node.resources = ["gpus": .ids(gpus), "mem": .amount(ResourceAmount.parse("16G")!)]
        return node
    }

    private func task(_ variants: [ResourceVariant], priority: Int32 = 0) -> TaskSubmission {
        var options = TaskOptions(priority: priority)
        options.resources = variants
        return TaskSubmission(handler: "work", input: [], options: options)
    }

    private func gpus(_ amount: Double, cpus: Int = 1) -> ResourceVariant {
        ResourceVariant(cpus: cpus, amounts: ["gpus": UInt64(amount * Double(ResourceAmount.one))])
    }

    private func assertSound(_ core: CoordinatorCore, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(core.invariantViolations(), [], file: file, line: line)
    }

    func testAmountsParseWithUnitsAndFractions() {
        XCTAssertEqual(ResourceAmount.parse("2"), 2 * one)
        XCTAssertEqual(ResourceAmount.parse("0.5"), one / 2)
        XCTAssertEqual(ResourceAmount.parse("8G"), 8 << 30 * one)
        XCTAssertEqual(ResourceAmount.parse("1.5k"), 1536 * one)
        for bad in ["", "0", "-1", "1.", ".5", "1.23456", "x", "1Q", "99999999999999999999"] {
            XCTAssertNil(ResourceAmount.parse(bad), bad)
        }
        XCTAssertEqual(ResourceAmount.format(one / 4), "0.25")
        XCTAssertEqual(ResourceVariant.parse("gpus=1,cpus=4"), ResourceVariant(cpus: 4, amounts: ["gpus": one]))
        XCTAssertNil(ResourceVariant.parse("cpus=0"))
        XCTAssertNil(ResourceVariant.parse("gpus"))
        XCTAssertNil(ResourceVariant.parse("cpus=2,cpus=3"), "a key given twice is refused, cpus too")
    }

    func testWholeGPUsAreNeverHandedToTwoTasksAndAThirdWaits() throws {
        var core = CoordinatorCore()
        let ids = try core.submit((0..<3).map { _ in task([gpus(1)]) }, session: "s")
        _ = try core.report(node: gpuNode(), results: [], now: 0)
        let first = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(first.map(\.id), Array(ids.prefix(2)))
        XCTAssertEqual(Set(first.flatMap { $0.resources.flatMap(\.ids) }), ["0", "1"])
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0), [], "the third waits for a gpu")
        assertSound(core)
        _ = try core.report(node: gpuNode(), results: [TaskOutcome(id: first[1].id, attempt: 1, succeeded: true, node: "n")], now: 1)
        let third = core.dispatch(toNode: "n", now: 1)
        XCTAssertEqual(third.map(\.id), [ids[2]])
        XCTAssertEqual(third[0].resources, first[1].resources, "it gets the gpu that was freed")
        assertSound(core)
    }

    func testFractionsShareOneIDAndNeverBeyondAWhole() throws {
        var core = CoordinatorCore()
        _ = try core.submit((0..<5).map { _ in task([gpus(0.5)]) }, session: "s")
        _ = try core.report(node: gpuNode(), results: [], now: 0)
        let handed = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(handed.count, 4, "two halves per gpu, two gpus")
        var perID: [String: Int] = [:]
        for task in handed { perID[task.resources[0].ids[0], default: 0] += 1 }
        XCTAssertEqual(perID, ["0": 2, "1": 2])
        assertSound(core)
    }

    func testCpusTakeSlotsAndAreNeverOverCommitted() throws {
        var core = CoordinatorCore()
        let ids = try core.submit([task([ResourceVariant(cpus: 3)]), task([ResourceVariant(cpus: 3)]), TaskSubmission(handler: "work", input: [])],
                                  session: "s")
        _ = try core.report(node: NodeAnnouncement(name: "n", host: "h", threadSlots: 4, prefetch: 4), results: [], now: 0)
        let handed = core.dispatch(toNode: "n", now: 0)
        // Once the first is handed out, the second is the oldest: its 3 cpus are reserved, so
        // the 1-cpu task neither takes the last slot nor goes to the prefetch.
        XCTAssertEqual(handed.map(\.id), [ids[0]])
        XCTAssertEqual(handed[0].cpus, 3)
        assertSound(core)
    }

    func testFungibleAmountsAreCounted() throws {
        var core = CoordinatorCore()
        let mem = ResourceVariant(amounts: ["mem": ResourceAmount.parse("6G")!])
        _ = try core.submit((0..<3).map { _ in task([mem]) }, session: "s")
        _ = try core.report(node: gpuNode(), results: [], now: 0)
        let handed = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(handed.count, 2, "two of 6G fit in 16G")
        XCTAssertEqual(handed[0].resources, [AssignedResource(name: "mem", amount: ResourceAmount.parse("6G")!)])
        assertSound(core)
    }

    func testTheFirstVariantThatFitsIsUsed() throws {
        var core = CoordinatorCore()
        let ids = try core.submit([task([gpus(2)]), task([gpus(1, cpus: 2), ResourceVariant(cpus: 4)])], session: "s")
        _ = try core.report(node: gpuNode(slots: 8), results: [], now: 0)
        let handed = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(handed.map(\.id), ids)
        XCTAssertEqual(handed[1].cpus, 4, "the gpus are taken: the cpu-only variant")
        XCTAssertEqual(handed[1].resources, [])
        assertSound(core)
    }

    func testAFourCPUTaskIsNotStarvedByOneCPUTasksThatKeepArriving() throws {
        var core = CoordinatorCore()
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4)
        _ = try core.report(node: node, results: [], now: 0)
        _ = try core.submit((0..<4).map { _ in TaskSubmission(handler: "work", input: []) }, session: "s")
        var running = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(running.count, 4)
        let big = try core.submit([task([ResourceVariant(cpus: 4)])], session: "s")[0]
        var got: Int?
        for step in 1...50 {
            // One small task ends and two more arrive, every step.
            _ = try core.submit((0..<2).map { _ in TaskSubmission(handler: "work", input: []) }, session: "s")
            let done = running.removeFirst()
            _ = try core.report(node: node, results: [TaskOutcome(id: done.id, attempt: done.attempt, succeeded: true, node: "n")], now: Double(step))
            let handed = core.dispatch(toNode: "n", now: Double(step))
            assertSound(core)
            if handed.contains(where: { $0.id == big }) {
                got = step
                XCTAssertEqual(handed.count, 1, "it runs alone")
                break
            }
            running += handed
        }
        // The four small ones that held the node end in four steps.
        XCTAssertEqual(got, 4, "the 4-cpu task waited for the slots held when it arrived, no longer")
    }

    func testAReservationAlsoStopsPrefetchIntoItsPool() throws {
        var core = CoordinatorCore()
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4, prefetch: 8)
        _ = try core.report(node: node, results: [], now: 0)
        _ = try core.submit((0..<4).map { _ in TaskSubmission(handler: "work", input: []) }, session: "s")
        var running = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(running.count, 4, "not measured yet: no prefetch")
        // One ends after 10 µs: the handler is short, its tasks may now be prefetched.
        let done = running.removeFirst()
        _ = try core.report(node: node, results: [TaskOutcome(id: done.id, attempt: 1, succeeded: true, node: "n", runMicros: 10)], now: 1)
        let big = try core.submit([task([ResourceVariant(cpus: 4)])], session: "s")[0]
        _ = try core.submit((0..<10).map { _ in TaskSubmission(handler: "work", input: []) }, session: "s")
        XCTAssertEqual(core.dispatch(toNode: "n", now: 1), [], "short tasks would start in the slots reserved for the 4-cpu task")
        assertSound(core)
        _ = try core.report(node: node, results: running.map { TaskOutcome(id: $0.id, attempt: 1, succeeded: true, node: "n", runMicros: 10) }, now: 2)
        let handed = core.dispatch(toNode: "n", now: 2)
        XCTAssertEqual(handed.first?.id, big, "then it goes first (short tasks may queue behind it)")
        XCTAssertEqual(handed.first?.cpus, 4)
        assertSound(core)
    }

    func testResourcesAreReleasedOnEveryWayALeaseEnds() throws {
        func setUp() throws -> (CoordinatorCore, DispatchedTask) {
            var core = CoordinatorCore()
            var options = TaskOptions(timeoutSeconds: 1)
            options.resources = [gpus(2, cpus: 2)]
            _ = try core.submit([TaskSubmission(handler: "work", input: [], options: options)], session: "s")
            _ = try core.report(node: gpuNode(), results: [], now: 0)
            let handed = core.dispatch(toNode: "n", now: 0)
            XCTAssertEqual(handed.count, 1)
            XCTAssertEqual(core.heldResources(node: "n"), ["cpus": 2, "gpus": 2 * one])
            return (core, handed[0])
        }
        let released: [String: UInt64] = ["cpus": 0]
        // A result.
        var (core, task) = try setUp()
        _ = try core.report(node: gpuNode(), results: [TaskOutcome(id: task.id, attempt: 1, succeeded: false, node: "n")], now: 1)
        XCTAssertEqual(core.heldResources(node: "n"), released)
        assertSound(core)
        // A hand-back (draining).
        (core, task) = try setUp()
        var draining = gpuNode()
        draining.draining = true
        _ = try core.report(node: draining, results: [], now: 1, returned: [task.id])
        XCTAssertEqual(core.heldResources(node: "n"), released)
        assertSound(core)
        // A node that leaves.
        (core, task) = try setUp()
        _ = try core.report(node: gpuNode("other"), results: [], now: 0)
        _ = try core.report(node: gpuNode(), results: [], now: 1, leaving: true)
        XCTAssertNil(core.heldResources(node: "n"))
        XCTAssertEqual(core.dispatch(toNode: "other", now: 1).map(\.id), [task.id], "requeued with its resources free elsewhere")
        assertSound(core)
        // A lost node.
        (core, task) = try setUp()
        _ = core.tick(now: 100)
        XCTAssertNil(core.heldResources(node: "n"))
        assertSound(core)
        // A cancel: held until the node lets go of the attempt.
        (core, task) = try setUp()
        _ = core.cancel([task.id], now: 0.5)
        XCTAssertEqual(core.heldResources(node: "n"), ["cpus": 2, "gpus": 2 * one], "the node may still be using them")
        assertSound(core)
        _ = try core.report(node: gpuNode(), results: [TaskOutcome(id: task.id, attempt: 1, succeeded: false, node: "n")], now: 0.6)
        XCTAssertEqual(core.heldResources(node: "n"), released)
        assertSound(core)
        // A timeout: the same.
        (core, task) = try setUp()
        _ = try core.report(node: gpuNode(), results: [], now: 3.5)
        _ = core.tick(now: 3.5)
        XCTAssertEqual(core.heldResources(node: "n"), ["cpus": 2, "gpus": 2 * one])
        _ = try core.report(node: gpuNode(), results: [], now: 3.6, returned: [task.id])
        XCTAssertEqual(core.heldResources(node: "n"), released)
        assertSound(core)
    }

    func testARequestNoLiveNodeCanSatisfyIsRefusedAtSubmitAndReportedWhenNoNodeWasThere() throws {
        var core = CoordinatorCore()
        // No node yet: accepted, it waits.
        _ = try core.submit([task([gpus(4)])], session: "s")
        _ = try core.report(node: gpuNode(), results: [], now: 0)
        XCTAssertEqual(core.status(now: 0).unplaceableReasons.map(\.reason), ["no node offers the resources cpus=1,gpus=4"])
        XCTAssertThrowsError(try core.submit([task([gpus(3)])], session: "s")) { error in
            XCTAssertTrue("\(error)".contains("no live node could ever give the resources cpus=1,gpus=3"), "\(error)")
        }
        XCTAssertThrowsError(try core.submit([task([gpus(1.5)])], session: "s")) { error in
            XCTAssertTrue("\(error)".contains("must be whole"), "\(error)")
        }
        XCTAssertEqual(core.queuedCount, 1, "refused means nothing was queued")
        // A variant that fits makes it acceptable.
        XCTAssertNoThrow(try core.submit([task([gpus(3), gpus(1)])], session: "s"))
    }
}
