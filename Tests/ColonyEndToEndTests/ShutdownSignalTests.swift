import Colony
import ColonyNode
import Foundation
import XCTest

/// The processes' SIGTERM/SIGINT paths (swift-service-lifecycle service groups).
final class ShutdownSignalTests: ClusterTestCase {
    private func exited(_ process: Process, within seconds: Double) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    func testASecondSignalStopsADrainingNodeAtOnce() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url])
        let node = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0",
                                      "--io-slots", "0", "--drain-timeout", "60"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        _ = try await colony.submit(SleepHandler.name, input: 30.0)
        let deadline = ContinuousClock.now + .seconds(20)
        while try await colony.status().running < 1 {
            guard ContinuousClock.now < deadline else { return XCTFail("the task never started") }
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(node.processIdentifier, SIGTERM)
        let drained = try await exited(node, within: 1)
        XCTAssertFalse(drained, "the first signal drains: the node waits for its 30 s task")
        kill(node.processIdentifier, SIGINT)
        let stopped = try await exited(node, within: 10)
        XCTAssertTrue(stopped, "a second signal stops the node at once")
        await colony.close()
    }

    func testUpStopsCleanlyOnSIGINT() async throws {
        let port = try ClusterHarness.freePort()
        let up = try cluster.start(["up", "--listen", "tcp://127.0.0.1:\(port)", "--threads", "1", "--processes", "1",
                                    "--limit", "1000", "--tasks", "2", "--keep-running"])
        let deadline = ContinuousClock.now + .seconds(30)
        var connected: ColonyClient?
        while connected == nil {
            connected = try? ColonyClient(connect: "tcp://127.0.0.1:\(port)")
            guard ContinuousClock.now < deadline else { return XCTFail("colony up never listened") }
            if connected == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let colony = try XCTUnwrap(connected)
        while try await colony.status().succeeded < 2 {
            guard ContinuousClock.now < deadline else { return XCTFail("the demo did not finish") }
            try await Task.sleep(for: .milliseconds(50))
        }
        await colony.close()
        kill(up.processIdentifier, SIGINT)
        let stopped = try await exited(up, within: 15)
        XCTAssertTrue(stopped, "colony up stops on SIGINT")
        XCTAssertEqual(up.terminationStatus, 0)
    }
}
