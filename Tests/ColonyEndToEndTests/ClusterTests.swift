import Colony
import ColonyModel
import ColonyNode
import ColonyWire
import NNG
import Foundation
import XCTest

/// A coordinator and node processes on tcp loopback, driven by the Swift client.
final class ClusterTests: ClusterTestCase {
    func testTenThousandTasksOnTwoNodesAllCompleteWithCorrectResults() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 2)
        try cluster.startNode(name: "n2", threads: 2)
        let colony = try await cluster.connect(waitingForNodes: 2)
        let inputs = Array(0..<10_000)
        let outputs = try await colony.map("echo", inputs, as: Int.self)
        XCTAssertEqual(outputs, inputs)
        let status = try await colony.status()
        XCTAssertEqual(status.succeeded, 10_000)
        XCTAssertEqual(status.queued, 0)
        XCTAssertEqual(status.running, 0)
        XCTAssertEqual(status.resultsWaiting, 0)
        await colony.close()
    }

    func testASlowNodeWithOneSlotGetsFarFewerTasksThanANodeWithFour() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "one-slot", threads: 1)
        try cluster.startNode(name: "four-slots", threads: 4)
        let colony = try await cluster.connect(waitingForNodes: 2)
        let results = try await colony.mapResults("sleep", Array(repeating: 0.05, count: 100))
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        let perNode = Dictionary(grouping: results, by: \.node).mapValues(\.count)
        let slow = perNode["one-slot", default: 0]
        let fast = perNode["four-slots", default: 0]
        XCTAssertEqual(slow + fast, 100)
        // Pull-based: each node asks only for its free slots, so the split follows 1:4.
        XCTAssertLessThan(slow * 2, fast, "split was \(perNode)")
        await colony.close()
    }

    func testAThrowingHandlerFailsItsTaskAndTheNodeKeepsWorking() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 2)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let failed = try await colony.result(of: colony.submit("fail", input: "disk on fire"))
        XCTAssertFalse(failed.succeeded)
        XCTAssertEqual(failed.error, "disk on fire")
        XCTAssertEqual(failed.failure, .error)
        XCTAssertEqual(failed.node, "n1")
        do {
            _ = try failed.value(as: String.self)
            XCTFail("value of a failed task returned")
        } catch {
            XCTAssertEqual("\(error)", "task \(failed.id) failed on n1: disk on fire")
            guard case .taskFailed(_, _, _, let failure) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(failure, .error)
        }
        // The node says the kind: a handler's error that reads like a timeout is an error.
        let wordy = try await colony.result(of: colony.submit("fail", input: "upstream timed out after 5 s"))
        XCTAssertEqual(wordy.failure, .error, wordy.error)
        let after = try await colony.map("echo", Array(0..<100), as: Int.self)
        XCTAssertEqual(after, Array(0..<100))
        await colony.close()
    }

    /// A handler no node has: the task waits, counted unplaceable (it would fail on every
    /// node that has not got it), and a client that waits for it is told which handler.
    func testATaskForAHandlerNoNodeHasWaitsAndTheWaitingClientIsToldWhy() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let id = try await colony.submit("no-such-handler", input: 1)
        try await eventually(timeout: .seconds(10), "the task counted unplaceable", { try await colony.status().unplaceable }, until: { $0 >= 1 })
        let status = try await colony.status()
        XCTAssertEqual(status.queued, 1)
        XCTAssertEqual(status.failed, 0)
        XCTAssertEqual(status.whyNoNodeCanTake(handler: "no-such-handler", options: TaskOptions()),
                       "no connected node has the handler 'no-such-handler' (1 node(s) connected)")
        let cancelled = try await colony.cancel([id])
        XCTAssertEqual(cancelled, 1)
        let result = try await colony.result(of: id)
        XCTAssertFalse(result.succeeded)
        await colony.close()
    }

    func testBadInputForAHandlerFailsTheTaskWithTheExpectedType() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let result = try await colony.result(of: colony.submit("primes", input: "not a range"))
        XCTAssertFalse(result.succeeded)
        XCTAssertTrue(result.error.contains("bad input for handler 'primes'"), result.error)
        await colony.close()
    }

    func testPrimesMapCountsTheSeedsExample() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 2)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ranges = stride(from: 0, to: 100_000, by: 10_000).map { PrimesHandler.Range(lo: $0, hi: $0 + 10_000) }
        let counts = try await colony.map(PrimesHandler.self, ranges)
        XCTAssertEqual(counts.reduce(0, +), 9592)
        await colony.close()
    }

    func testMalformedBytesGetAnErrorReplyAndTheCoordinatorKeepsServing() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let raw = try NNG.Socket(.req)
        try raw.dial(cluster.url)
        let context = try raw.openContext()
        for garbage: [UInt8] in [[0xFF, 0x00, 0x13], [], Array("hello".utf8)] {
            let reply = try await context.request(garbage, timeout: .seconds(5))
            let decoded = try ColonyWire.Wire.decode(reply)
            guard case .error(let refusal) = decoded.body else { return XCTFail("expected an error reply, got \(decoded)") }
            XCTAssertFalse(refusal.message.isEmpty)
        }
        let echoed = try await colony.run("echo", input: "still here", as: String.self)
        XCTAssertEqual(echoed, "still here")
        await colony.close()
    }

    func testAUsersOwnNodeExecutableRunsItsHandlersAndTheBuiltIns() async throws {
        try cluster.startCoordinator()
        let example = ClusterHarness.colonyExecutable.deletingLastPathComponent().appendingPathComponent("colony-square-node")
        let node = Process()
        node.executableURL = example
        node.arguments = ["--coordinator", cluster.url, "--threads", "1", "--name", "squares"]
        node.standardError = FileHandle.nullDevice
        try node.run()
        defer { node.terminate(); node.waitUntilExit() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        let squared = try await colony.run("square", input: 7, as: Int.self)
        XCTAssertEqual(squared, 49)
        let echoed = try await colony.run("echo", input: "built-in", as: String.self)
        XCTAssertEqual(echoed, "built-in")
        await colony.close()
    }

    func testAnOversizedInputIsRefusedWithAReasonAndTheClientCarriesOn() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        do {
            _ = try await colony.submit("echo", rawInput: [UInt8](repeating: 0x31, count: 17 << 20))
            XCTFail("a 17 MiB input was accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("exceeds the 16 MiB message limit"), "\(error)")
        }
        let echoed = try await colony.run("echo", input: 5, as: Int.self)
        XCTAssertEqual(echoed, 5)
        await colony.close()
    }

    func testTasksOfANodeKilledWithSIGKILLRunElsewhereAndAllFinishOnce() async throws {
        try cluster.startCoordinator()
        let doomed = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "4", "--name", "doomed"])
        try cluster.startNode(name: "survivor", threads: 4)
        let colony = try await cluster.connect(waitingForNodes: 2)
        let ids = try await colony.submit((0..<40).map { _ in TaskSubmission(handler: "sleep", input: Array("0.2".utf8)) })
        // Kill it while it holds tasks.
        try await eventually(poll: .milliseconds(10), "the doomed node running tasks", {
            try await colony.status().nodes.first(where: { $0.announcement.name == "doomed" })?.running ?? 0
        }, until: { $0 > 0 })
        kill(doomed.processIdentifier, SIGKILL)
        let results = try await colony.results(of: ids)
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        XCTAssertEqual(Set(results.map(\.id)).count, 40)
        XCTAssertTrue(results.contains { $0.node == "survivor" && $0.attempt == 2 }, "a task of the killed node ran again elsewhere")
        let status = try await colony.status()
        XCTAssertEqual(status.succeeded, 40)
        XCTAssertEqual(status.nodes.map(\.announcement.name), ["survivor"])
        await colony.close()
    }
}
