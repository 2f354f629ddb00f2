import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// Pull-based balancing: a node that prefetched tasks longer than it expected hands back what
/// it cannot start soon, so another node with free slots runs them.
final class BalancingTests: ClusterTestCase {
    func testLongTasksPrefetchedAfterABurstOfTinyOnesAreSharedBetweenNodes() async throws {
        try cluster.startCoordinator()
        for name in ["a", "b"] {
            try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", name])
        }
        let colony = try await cluster.connect(waitingForNodes: 2)
        // Tiny tasks teach both nodes to prefetch.
        let echoes: [String] = try await colony.map(EchoHandler.name, (0..<3000).map { "\($0)" })
        XCTAssertEqual(echoes.count, 3000)
        // Then 8 tasks of 1 s on 2 x 2 slots: before, one node took all 8 (4 s instead of 2).
        let results = try await colony.mapResults("sleep", Array(repeating: 1.0, count: 8))
        XCTAssertTrue(results.allSatisfy(\.succeeded), "\(results.map(\.error))")
        let perNode = Dictionary(grouping: results, by: \.node).mapValues(\.count)
        XCTAssertEqual(perNode.count, 2, "both nodes ran some: \(perNode)")
        XCTAssertTrue(perNode.values.allSatisfy { $0 >= 3 }, "shared, not hoarded: \(perNode)")
        await colony.close()
    }

    /// A task goes only to a node that has its handler; one no node has waits, counted as
    /// unplaceable, until such a node comes.
    func testTasksGoOnlyToNodesWithTheirHandler() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", "stock1"])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", "stock2"])
        let colony = try await cluster.connect(waitingForNodes: 2)
        let ids = try await colony.submit((1...10).map { TaskSubmission(handler: "square", input: Array("\($0)".utf8)) })
        try await eventually(timeout: .seconds(10), "the square tasks counted unplaceable", { try await colony.status() }, until: { $0.unplaceable >= 10 })
        let waiting = try await colony.status()
        XCTAssertEqual(waiting.queued, 10, "they wait instead of failing on nodes without the handler")
        XCTAssertEqual(waiting.failed, 0)

        let example = ClusterHarness.colonyExecutable.deletingLastPathComponent().appendingPathComponent("colony-square-node")
        let node = Process()
        node.executableURL = example
        node.arguments = ["--coordinator", cluster.url, "--threads", "1", "--name", "squares"]
        node.standardError = FileHandle.nullDevice
        try node.run()
        defer { node.terminate(); node.waitUntilExit() }
        let results = try await colony.results(of: ids)
        XCTAssertEqual(try results.map { try $0.value(as: Int.self) }, (1...10).map { $0 * $0 })
        XCTAssertEqual(Set(results.map(\.node)), ["squares"])
        await colony.close()
    }
}
