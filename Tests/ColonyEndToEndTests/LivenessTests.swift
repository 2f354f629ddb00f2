import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// A node is alive while its pulls reach the coordinator: long polls parked by many nodes
/// must never keep another node's pull waiting until it is declared lost.
final class LivenessTests: ClusterTestCase {
    func testSixtyFourNodesAndAHundredLongPollingClientsOnSixteenContextsAreNeverDeclaredLost() async throws {
        let log = NSTemporaryDirectory() + "colony-liveness-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--contexts", "16"], stderrFile: log)
        let nodes = 64
        for index in 0..<nodes {
            try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n\(index)"])
        }
        let colony = try await cluster.connect(waitingForNodes: nodes)
        // 100 clients long-polling for results that never come (a handler no node has):
        // each holds a context at the coordinator for up to 5 s at a time.
        let never = try await colony.submit((0..<100).map { _ in TaskSubmission(handler: "nobody-has-this", input: [0x31]) })
        let url = cluster.url
        let waiters = Task {
            await withTaskGroup(of: Void.self) { group in
                for id in never {
                    group.addTask {
                        guard let client = try? ColonyClient(connect: url) else { return }
                        while !Task.isCancelled { _ = try? await client.fetchResult(of: id, wait: .seconds(5)) }
                        await client.close()
                    }
                }
            }
        }
        defer { waiters.cancel() }
        let count = 5000
        let inputs = (0..<count).map { "\($0)" }
        let outputs: [String] = try await colony.map(EchoHandler.name, inputs)
        XCTAssertEqual(outputs, inputs)
        // Every node idles on a parked pull for a few node timeouts (2.5 s): 64 long polls on
        // 16 contexts starved the rest before.
        let idleUntil = ContinuousClock.now + .seconds(6)
        while ContinuousClock.now < idleUntil {
            let status = try await colony.status()
            XCTAssertEqual(status.nodes.count, nodes, "a node was declared lost")
            try await Task.sleep(for: .milliseconds(500))
        }
        let status = try await colony.status()
        XCTAssertEqual(status.failed, 0)
        await colony.close()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(text.contains("node lost"), text.split(separator: "\n").filter { $0.contains("node lost") }.prefix(3).joined(separator: "\n"))
    }
}

/// A coordinator that was stopped (SIGSTOP, a paused VM) does not count its own pause against
/// the nodes it could not hear meanwhile.
final class PausedCoordinatorTests: ClusterTestCase {
    func testAStoppedCoordinatorDoesNotDeclareItsNodesLostWhenItResumes() async throws {
        let log = NSTemporaryDirectory() + "colony-paused-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let coordinator = try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"], stderrFile: log)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", "n1"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ids = try await colony.submit(Array(repeating: TaskSubmission(handler: "sleep", input: Array("6".utf8)), count: 2))
        try await eventually("the two sleepers running", { try await colony.status().running }, until: { $0 >= 2 })
        kill(coordinator.processIdentifier, SIGSTOP)
        // The pause itself (longer than the 2.5 s node timeout), not a wait for an event.
        try await Task.sleep(for: .seconds(4))
        kill(coordinator.processIdentifier, SIGCONT)
        // Bounded: a livelock here once kept CI waiting for ever.
        try await eventually(timeout: .seconds(30), "the two sleepers finished", { try await colony.tasks() },
                             until: { $0.filter { $0.phase == .succeeded || $0.phase == .failed }.count >= 2 })
        let results = try await colony.results(of: ids)
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        XCTAssertEqual(results.map(\.attempt), [1, 1], "not run a second time")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(text.contains("node lost"), text)
        await colony.close()
    }
}

/// A node declared lost while it still ran its tasks (stopped, or cut off) comes back: the
/// coordinator has leased those tasks again, to it. The new attempts supersede the old ones on
/// the node. Before, the node held both under one id, handed the new ones back as stranded
/// and dropped them from its books, so the coordinator re-sent them for ever.
final class ReturningNodeTests: ClusterTestCase {
    func testANodeDeclaredLostWhileRunningComesBackAndItsTasksFinish() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"])
        let node = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--name", "n1"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ids = try await colony.submit(Array(repeating: TaskSubmission(handler: "sleep", input: Array("3".utf8)), count: 2))
        try await eventually("the two sleepers running", { try await colony.status().running }, until: { $0 >= 2 })
        kill(node.processIdentifier, SIGSTOP)
        // Past the 2.5 s node timeout: the coordinator declares the node lost and queues its tasks.
        try await eventually("the stopped node declared lost", { try await colony.status().nodes.map(\.announcement.name) }, until: \.isEmpty)
        kill(node.processIdentifier, SIGCONT)
        try await eventually(timeout: .seconds(30), "the tasks finished after the node came back", { try await colony.tasks() },
                             until: { $0.filter { $0.phase == .succeeded }.count >= 2 })
        let results = try await colony.results(of: ids)
        XCTAssertTrue(results.allSatisfy(\.succeeded), "\(results.map(\.error))")
        XCTAssertEqual(results.map(\.attempt), [2, 2], "run again once, not re-sent for ever")
        await colony.close()
    }
}
