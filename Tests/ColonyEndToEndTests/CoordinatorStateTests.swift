import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// The seed's shared-state examples, over tcp with real node processes.
final class CoordinatorStateTests: ClusterTestCase {
    func testCounterIncrementsFromTasksOnTwoNodesAreExact() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 2)
        try cluster.startNode(name: "n2", threads: 2)
        let colony = try await cluster.connect(waitingForNodes: 2)
        // The seed's example, scaled: 40 workers x 100 increments.
        let inputs = Array(repeating: CountHandler.Input(counter: "hits", times: 100), count: 40)
        _ = try await colony.map(CountHandler.self, inputs)
        let value = try await colony.counter("hits").get()
        XCTAssertEqual(value, 4000)
        // And from clients, concurrently.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 {
                group.addTask { for _ in 0..<20 { try await colony.counter("hits").add(1) } }
            }
            try await group.waitForAll()
        }
        let afterClients = try await colony.counter("hits").get()
        XCTAssertEqual(afterClients, 4200)
        let swapped = try await colony.counter("hits").compareAndSet(expected: 4200, new: 0)
        XCTAssertTrue(swapped)
        let notSwapped = try await colony.counter("hits").compareAndSet(expected: 4200, new: 1)
        XCTAssertFalse(notSwapped)
        await colony.close()
    }

    func testALimitOfTwoIsNeverExceededAcrossNodes() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 4)
        try cluster.startNode(name: "n2", threads: 4)
        let colony = try await cluster.connect(waitingForNodes: 2)
        try await colony.setLimit("db", size: 2)
        // The seed's example: 5 workers x 3 uses of a resource limited to 2.
        let results = try await colony.mapResults("sleep", Array(repeating: 0.05, count: 15), options: TaskOptions(uses: ["db"]))
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        let limits = try await colony.limits()
        let db = try XCTUnwrap(limits.first { $0.name == "db" })
        XCTAssertEqual(db.highWater, 2, "measured at dispatch: at most 2 at once, and 2 were reached")
        XCTAssertEqual(db.inUse, 0)
        await colony.close()
    }

    func testHigherPriorityTasksRunFirst() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let blocker = try await colony.submit("sleep", input: 0.3)
        try await eventually("the blocker running", { try await colony.tasks(in: .running).map(\.id) }, until: { $0 == [blocker] })
        var low: [TaskID] = []
        for _ in 0..<3 { low.append(try await colony.submit("sleep", input: 0.2, options: TaskOptions(priority: 0))) }
        var high: [TaskID] = []
        for _ in 0..<3 { high.append(try await colony.submit("sleep", input: 0.2, options: TaskOptions(priority: 5))) }
        _ = try await colony.results(of: [blocker] + high)
        let lowTasks = try await colony.tasks().filter { low.contains($0.id) }
        XCTAssertEqual(lowTasks.filter { $0.phase == .succeeded }.count, 0, "no low-priority task finished before the high ones: \(lowTasks)")
        _ = try await colony.results(of: low)
        await colony.close()
    }

    func testDependentsSeeTheirDependenciesOutputsAndFailWithThem() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 2)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let a = try await colony.submit("echo", input: 1)
        let b = try await colony.submit("echo", input: "two")
        let c = try await colony.submit("collect", input: 0, options: TaskOptions(after: [a, b]))
        let collected = try await colony.result(of: c)
        XCTAssertEqual(collected.outputText, #"[1,"two"]"#)
        let failing = try await colony.submit("fail", input: "no")
        let dependent = try await colony.submit("echo", input: 3, options: TaskOptions(after: [failing]))
        let result = try await colony.result(of: dependent)
        XCTAssertFalse(result.succeeded)
        XCTAssertEqual(result.error, "dependency \(failing) failed")
        await colony.close()
    }

    func testCancellingARunningTaskStopsItAndTheNodeCarriesOn() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let long = try await colony.submit("sleep", input: 30.0)
        try await eventually("the long task running", { try await colony.tasks(in: .running).map(\.id) }, until: { $0 == [long] })
        let cancelled = try await colony.cancel([long])
        XCTAssertEqual(cancelled, 1)
        let result = try await colony.result(of: long)
        XCTAssertTrue(result.cancelled)
        // The slot comes back once the node stopped the sleep.
        let echoed = try await colony.run("echo", input: "after", as: String.self)
        XCTAssertEqual(echoed, "after")
        await colony.close()
    }

    func testATaskTimeoutStopsTheAttemptWithAClearReason() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let id = try await colony.submit("sleep", input: 30.0, options: TaskOptions(timeoutSeconds: 0.5))
        let result = try await colony.result(of: id)
        XCTAssertFalse(result.succeeded)
        XCTAssertEqual(result.error, "timed out after 0.5 s")
        XCTAssertEqual(result.failure, .timeout, "stopped by the node's watchdog")
        await colony.close()
    }

    func testRetriesRunAFailingTaskAgainOnlyWhenAsked() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let retried = try await colony.result(of: colony.submit("fail", input: "x", options: TaskOptions(maxAttempts: 3, retryOnError: true)))
        XCTAssertEqual(retried.attempt, 3)
        let once = try await colony.result(of: colony.submit("fail", input: "x"))
        XCTAssertEqual(once.attempt, 1)
        await colony.close()
    }

    func testATaskNeedingALabelRunsOnlyOnANodeThatHasIt() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "plain", threads: 2)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--name", "gpu-node", "--label", "gpu=1"])
        let colony = try await cluster.connect(waitingForNodes: 2)
        let results = try await colony.mapResults("echo", Array(0..<10), options: TaskOptions(requiredLabels: ["gpu": "1"]))
        XCTAssertEqual(Set(results.map(\.node)), ["gpu-node"])
        await colony.close()
    }

    func testCounterAndLimitCommandsFromTheCLI() async throws {
        try cluster.startCoordinator()
        let colony = try await cluster.connect(waitingForNodes: 0)
        let added = try ClusterHarness.run(["counter", "add", "jobs", "5", "--coordinator", cluster.url])
        XCTAssertEqual(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5", added.stderr)
        let read = try ClusterHarness.run(["counter", "get", "jobs", "--coordinator", cluster.url])
        XCTAssertEqual(read.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5", read.stderr)
        let limit = try ClusterHarness.run(["limit", "set", "db", "2", "--coordinator", cluster.url])
        XCTAssertEqual(limit.status, 0, limit.stderr)
        let limits = try await colony.limits()
        XCTAssertEqual(limits.map(\.size), [2])
        let unknown = try ClusterHarness.run(["submit", "echo", "1", "--uses", "nope", "--coordinator", cluster.url])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown limit 'nope'"), unknown.stderr)
        await colony.close()
    }
}
