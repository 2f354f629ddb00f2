import Colony
import ColonyNode
import Foundation
import XCTest

/// The processes' SIGTERM/SIGINT paths (swift-service-lifecycle service groups).
final class ShutdownSignalTests: ClusterTestCase {
    func testASecondSignalStopsADrainingNodeAtOnce() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url])
        let node = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0",
                                      "--io-slots", "0", "--drain-timeout", "60"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        _ = try await colony.submit(SleepHandler.name, input: 30.0)
        try await eventually("the 30 s task running") { try await colony.status().running == 1 }
        kill(node.processIdentifier, SIGTERM)
        // The first signal drains: the node waits for its 30 s task (a second here is plenty
        // to see it has not stopped).
        let stoppedEarly: Void? = try? await eventually(timeout: .seconds(1), "the node stopping at the first signal") { !node.isRunning }
        XCTAssertNil(stoppedEarly, "the first signal drains, it does not stop the node")
        kill(node.processIdentifier, SIGINT)
        try await node.waitForExit(within: .seconds(10), "the node stopping at a second signal")
        await colony.close()
    }

    func testUpStopsCleanlyOnSIGINT() async throws {
        let port = try ClusterHarness.freePort()
        let up = try cluster.start(["up", "--listen", "tcp://127.0.0.1:\(port)", "--threads", "1", "--processes", "1",
                                    "--limit", "1000", "--tasks", "2", "--keep-running"])
        let colony = try await eventually(timeout: .seconds(30), "colony up listening") {
            try? ColonyClient(connect: "tcp://127.0.0.1:\(port)")
        }
        try await eventually(timeout: .seconds(30), "the demo finished") { try await colony.status().succeeded >= 2 }
        await colony.close()
        kill(up.processIdentifier, SIGINT)
        try await up.waitForExit(within: .seconds(15), "colony up stopping on SIGINT")
        XCTAssertEqual(up.terminationStatus, 0)
    }
}
