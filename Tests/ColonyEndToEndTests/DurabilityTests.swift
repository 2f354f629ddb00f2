import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// A coordinator with a state folder, killed with SIGKILL mid-run and started again.
final class DurabilityTests: ClusterTestCase {
    private var stateDirectory: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        stateDirectory = NSTemporaryDirectory() + "colony-durability-\(UUID().uuidString)"
    }

    override func tearDown() {
        super.tearDown()
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    /// Waits until a coordinator answers at `cluster.url` again.
    private func reconnect() async throws -> ColonyClient {
        try await cluster.connect(waitingForNodes: 0)
    }

    /// The result of `id`, whichever session submitted it, waiting up to a minute.
    private func waitForResult(_ colony: ColonyClient, _ id: UInt64) async throws -> TaskResult {
        // Each observation is itself a long poll, so there is no pause between them.
        try await eventually(timeout: .seconds(60), poll: .zero, "the result of task \(id)", firstOf: {
            try await colony.fetchResult(of: id, wait: .seconds(5))
        })
    }

    func testAKilledCoordinatorRestartsWithEveryTaskCounterAndLimitAndEachTaskFinishesOnce() async throws {
        let coordinator = try cluster.startCoordinator(stateDirectory: stateDirectory)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        var colony = try await cluster.connect(waitingForNodes: 1)
        try await colony.setLimit("db", size: 2)
        _ = try await colony.counter("before").add(41)
        // 2,000 tasks, each adding 5,000 to a counter with its success (a few ms each, so
        // most are still queued when the coordinator dies); some use the limit.
        let count = 2000
        let times = 5000
        var submissions: [TaskSubmission] = []
        for index in 0..<count {
            let input = Array(try JSONEncoder().encode(CountHandler.Input(counter: "done", times: times)))
            submissions.append(TaskSubmission(handler: CountHandler.name, input: input,
                                              options: TaskOptions(uses: index % 10 == 0 ? ["db"] : [])))
        }
        let ids = try await colony.submit(submissions)
        XCTAssertEqual(ids.count, count)
        // Take some results (by id: a client's session pump would also take results it has
        // not been asked for yet, and they would leave with this client), then kill the
        // coordinator while the rest are queued or running.
        var seen: [UInt64: Int] = [:]
        for id in ids.prefix(50) {
            let result = try await waitForResult(colony, id)
            XCTAssertTrue(result.succeeded, result.error)
            seen[id, default: 0] += 1
        }
        let beforeCrash = try await colony.status()
        XCTAssertGreaterThan(beforeCrash.queued + beforeCrash.running, 0, "the crash comes mid-run")
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        await colony.close()

        try cluster.startCoordinator(stateDirectory: stateDirectory)
        colony = try await reconnect()
        let before = try await colony.counter("before").get()
        XCTAssertEqual(before, 41, "a counter set before the crash survives it")
        let limit = try await colony.limits().first { $0.name == "db" }
        XCTAssertEqual(limit?.size, 2, "so does a limit")
        // The node rides through on its own (its pulls fail, then reach the new coordinator).
        for id in ids.dropFirst(50) {
            let result = try await waitForResult(colony, id)
            XCTAssertTrue(result.succeeded, "task \(id): \(result.error)")
            seen[id, default: 0] += 1
        }
        XCTAssertEqual(seen.count, count)
        XCTAssertTrue(seen.values.allSatisfy { $0 == 1 }, "every task's result came back exactly once")
        let done = try await colony.counter("done").get()
        XCTAssertEqual(done, Int64(count * times), "each task's increments applied exactly once")
        let status = try await colony.status()
        XCTAssertEqual(status.queued + status.running + status.waiting, 0)
        XCTAssertLessThanOrEqual(status.limits.first { $0.name == "db" }?.highWater ?? 0, 2)
        // Results handed out before the crash were handed out for good.
        do {
            _ = try await colony.fetchResult(of: ids[0])
            XCTFail("a result fetched before the crash came back")
        } catch {
            // A typed answer (the wire's CODE_NOT_FOUND), not a refusal to be read as text.
            guard case .notFound = error else { return XCTFail("expected notFound, got \(error)") }
        }
        await colony.close()
    }

    func testColonyMapRidesThroughACoordinatorKilledAndRestarted() async throws {
        let coordinator = try cluster.startCoordinator(stateDirectory: stateDirectory)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "2", "--allow-exec", "--name", "n1"])
        let probe = try await cluster.connect(waitingForNodes: 1)
        await probe.close()
        try await checkMapRidesThroughACoordinatorRestart(cluster, coordinator: coordinator, stateDirectory: stateDirectory, count: 3000, killAfter: 200,
                                                         downFor: .milliseconds(300))
    }

    func testSIGTERMStopsTheCoordinatorCleanlyWithItsStateKept() async throws {
        let coordinator = try cluster.startCoordinator(stateDirectory: stateDirectory)
        var colony = try await reconnect()
        let ids = try await colony.submit([TaskSubmission(handler: EchoHandler.name, input: Array("\"kept\"".utf8))])
        _ = try await colony.counter("kept").add(3)
        await colony.close()
        kill(coordinator.processIdentifier, SIGTERM)
        try await coordinator.waitForExit(within: .seconds(20), "the coordinator stopping after SIGTERM")
        XCTAssertEqual(coordinator.terminationStatus, 0)
        try cluster.startCoordinator(stateDirectory: stateDirectory)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        colony = try await reconnect()
        let kept = try await colony.counter("kept").get()
        XCTAssertEqual(kept, 3)
        let result = try await waitForResult(colony, ids[0])
        XCTAssertEqual(try result.value(as: String.self), "kept")
        await colony.close()
    }

    func testAStateFolderOfAnotherFormatIsRefusedWithOneLine() throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        try Data("not a database at all, just bytes".utf8 + [UInt8](repeating: 7, count: 4096)).write(to: URL(fileURLWithPath: stateDirectory + "/colony.db"))
        let run = try ClusterHarness.run(["coordinator", "--listen", cluster.url, "--state", stateDirectory], timeout: .seconds(30))
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("is not a Colony state file"), run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
    }
}
