import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// Nodes leaving: gracefully (SIGTERM, `colony drain`) or killed (their connection closes).
final class NodeRemovalTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    private func node(_ name: String, extra: [String] = []) throws -> Process {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", name] + extra)
    }

    /// The results of `ids` (any session), failing after 30 s instead of hanging the suite.
    private func results(_ colony: ColonyClient, _ ids: [UInt64]) async throws -> [TaskResult] {
        var results: [TaskResult] = []
        let deadline = ContinuousClock.now + .seconds(30)
        for id in ids {
            // Each observation is itself a long poll, so there is no pause between them.
            results.append(try await eventually(timeout: deadline - ContinuousClock.now, poll: .zero, "the result of task \(id)", firstOf: {
                try await colony.fetchResult(of: id, wait: .seconds(1))
            }))
        }
        return results
    }

    private func waitForExit(_ process: Process, within seconds: Int = 30) async throws {
        try await process.waitForExit(within: .seconds(seconds), "the node exiting")
    }

    func testSIGTERMLetsRunningTasksFinishThenTheNodeLeavesAndExitsZero() async throws {
        let worker = try node("worker", extra: ["--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        // Each task marks that it started, then runs 1.5 s more.
        let marks = NSTemporaryDirectory() + "colony-drain-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: marks, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: marks) }
        let inputs = (0..<2).map { ExecHandler.Input(argv: ["sh", "-c", "touch \(marks)/\($0); sleep 1.5"], failUnlessZero: true) }
        var ids: [UInt64] = []
        for input in inputs { ids.append(try await colony.submit(ExecHandler.name, input: input, options: TaskOptions(pool: .thread))) }
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "both tasks started on the worker") {
            (try? FileManager.default.contentsOfDirectory(atPath: marks).count) == 2
        }
        kill(worker.processIdentifier, SIGTERM)
        try await waitForExit(worker)
        XCTAssertEqual(worker.terminationStatus, 0)
        for result in try await results(colony, ids) {
            XCTAssertTrue(result.succeeded, result.error)
            XCTAssertEqual(result.node, "worker", "a started task finishes where it runs")
            XCTAssertEqual(result.attempt, 1)
        }
        let status = try await colony.status()
        XCTAssertTrue(status.nodes.isEmpty, "the node said it left: no wait for its timeout")
        await colony.close()
    }

    func testAKilledNodesTasksMoveAtOnceWhenItsConnectionCloses() async throws {
        // A node timeout of a minute: only the closed connection can move the task in time.
        cluster.stopAll()
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--node-timeout", "60"])
        let victim = try node("victim")
        let colony = try await cluster.connect(waitingForNodes: 1)
        let id = try await colony.submit(SleepHandler.name, input: 1.0)
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "the task leased to the victim") { try await colony.status().running == 1 }
        _ = try node("survivor")
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "the survivor joined") { try await colony.status().nodes.count == 2 }
        kill(victim.processIdentifier, SIGKILL)
        let result = try await results(colony, [id])[0]
        XCTAssertTrue(result.succeeded, result.error)
        XCTAssertEqual(result.node, "survivor")
        await colony.close()
    }

    func testColonyDrainHandsBackWhatStillRunsAtTheDeadlineAndOtherNodesFinishIt() async throws {
        let first = try node("first")
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ids = try await colony.submit(Array(repeating: TaskSubmission(handler: SleepHandler.name, input: Array("3".utf8)), count: 2))
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "both tasks running") { try await colony.status().running == 2 }
        _ = try node("second")
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "the second node joined") { try await colony.status().nodes.count == 2 }
        let run = try ClusterHarness.run(["drain", "first", "--deadline", "0.5", "--coordinator", cluster.url])
        XCTAssertEqual(run.status, 0, run.stderr)
        try await waitForExit(first)
        XCTAssertEqual(first.terminationStatus, 0)
        let results = try await results(colony, ids)
        for result in results {
            XCTAssertTrue(result.succeeded, result.error)
            XCTAssertEqual(result.node, "second")
            XCTAssertEqual(result.attempt, 2)
        }
        let unknown = try ClusterHarness.run(["drain", "nobody", "--coordinator", cluster.url])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("no node named 'nobody'"), unknown.stderr)
        await colony.close()
    }

    /// A node told to stop while its coordinator is down exits at its drain deadline (plus
    /// the hand-back time), non-zero, saying what it could not hand back, instead of retrying
    /// until a supervisor kills it.
    func testADrainingNodeWhoseCoordinatorIsDownExitsAtItsDeadlineSayingWhatItKept() async throws {
        let log = NSTemporaryDirectory() + "colony-drain-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let worker = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", "w",
                                        "--drain-timeout", "1"], stderrFile: log)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ids = try await colony.submit([TaskSubmission(handler: "sleep", input: Array("30".utf8))])
        try await eventually(timeout: .seconds(30), poll: .milliseconds(10), "the task runs") { try await colony.status().running == 1 }
        await colony.close()
        _ = ids
        let coordinator = cluster.processes[0]
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        let stopped = ContinuousClock.now
        kill(worker.processIdentifier, SIGTERM)
        try await waitForExit(worker, within: 15)
        let took = ContinuousClock.now - stopped
        XCTAssertLessThan(took, .seconds(8), "deadline 1 s + hand-back 2 s, not minutes")
        XCTAssertNotEqual(worker.terminationStatus, 0, "work was left behind")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("without handing back 1 task(s)"), text)
    }

    /// A draining node with nothing to hand back does not wait for a coordinator that is down,
    /// nor for the long poll that coordinator will never answer (it waited 15 s for it once).
    func testAnIdleNodeWhoseCoordinatorIsDownLeavesAtOnceAndCleanly() async throws {
        let worker = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "idle",
                                        "--drain-timeout", "30"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        await colony.close()
        let coordinator = cluster.processes[0]
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        let stopped = ContinuousClock.now
        kill(worker.processIdentifier, SIGTERM)
        try await waitForExit(worker, within: 20)
        XCTAssertLessThan(ContinuousClock.now - stopped, .seconds(5), "not the 30 s drain deadline nor the 15 s pull timeout")
        XCTAssertEqual(worker.terminationStatus, 0, "nothing was left behind")
    }
}
