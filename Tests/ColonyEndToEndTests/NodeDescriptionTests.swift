import Colony
import ColonyModel
import ColonyWire
import Foundation
import NNG
import XCTest

/// A node describes itself once per connection; later pulls carry only its name and what
/// changes. Spoken here in raw protocol over real nng sockets to a coordinator process.
final class NodeDescriptionTests: ClusterTestCase {
    private func pull(_ context: Context, brief: Bool, results: [Colony_V1_TaskResult] = [], waitMs: UInt32 = 0) async throws -> Colony_V1_PullReply {
        var info = Colony_V1_NodeInfo()
        info.name = "raw"
        if brief {
            info.brief = true
        } else {
            info.host = "h"
            info.threadSlots = 2
            info.handlers = ["echo", "square"]
        }
        var request = Colony_V1_PullRequest()
        request.node = info
        request.results = results
        request.waitMs = waitMs
        let reply = try Wire.decode(try await context.request(Wire.encode(.pull(request)), timeout: .seconds(10)))
        guard case .pullReply(let pull) = reply.body else { throw CLIFailure("not a pull reply: \(reply)") }
        return pull
    }

    func testABriefPullIsAnsweredWithTheKnownDescriptionOrAskedToDescribe() async throws {
        try cluster.startCoordinator()
        let colony = try await cluster.connect(waitingForNodes: 0)
        let ids = try await colony.submit((1...3).map { TaskSubmission(handler: "square", input: Array("\($0)".utf8)) })

        let socket = try Socket(.req)
        _ = try socket.dial(cluster.url)
        let context = try socket.openContext()
        let unknown = try await pull(context, brief: true)
        XCTAssertTrue(unknown.describe, "a node the coordinator does not know is asked for its description")
        XCTAssertTrue(unknown.tasks.isEmpty)

        let first = try await pull(context, brief: false)
        XCTAssertFalse(first.describe)
        XCTAssertEqual(first.tasks.count, 2, "two slots, as described: \(first.tasks.map(\.id))")
        var done = Colony_V1_TaskResult()
        done.id = first.tasks[0].id
        done.attempt = first.tasks[0].attempt
        done.ok = true
        done.output = Data("1".utf8)
        done.node = "raw"
        let second = try await pull(context, brief: true, results: [done])
        XCTAssertFalse(second.describe, "same connection: the description is known")
        XCTAssertEqual(second.tasks.map(\.id), [ids[2]], "the freed slot of the described node is refilled")
        let status = try await colony.status()
        XCTAssertEqual(status.nodes.first?.announcement.handlers, ["echo", "square"], "the brief pull kept the description")
        XCTAssertEqual(status.nodes.first?.announcement.threadSlots, 2)

        // Another connection: the coordinator asks again, and applies nothing of the pull.
        let other = try Socket(.req)
        _ = try other.dial(cluster.url)
        let otherContext = try other.openContext()
        var again = done
        again.id = first.tasks[1].id
        again.attempt = first.tasks[1].attempt
        let asked = try await pull(otherContext, brief: true, results: [again])
        XCTAssertTrue(asked.describe)
        let unfinished = try await colony.tasks(in: .running)
        XCTAssertTrue(unfinished.contains { $0.id == first.tasks[1].id }, "the result of a pull that was asked to describe is not applied")
        socket.close()
        other.close()
        await colony.close()
    }

    /// A pull parked at the coordinator is the coordinator's to answer: the node waits on it
    /// and is not silent. Seen failing before: a node long-polling for longer than the node
    /// timeout (the protocol allows 5 s, the default timeout is 2.5 s) was declared lost
    /// while its own pull waited, and so were nodes whose parked pulls a starved coordinator
    /// answered late (W7 lost up to 180 of 300 nodes with its state on one thread).
    func testANodeWhosePullIsParkedLongerThanTheNodeTimeoutIsNotLost() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--node-timeout", "1.5"])
        let colony = try await cluster.connect(waitingForNodes: 0)
        let socket = try Socket(.req)
        _ = try socket.dial(cluster.url)
        let context = try socket.openContext()
        let started = ContinuousClock.now
        let parked = try await pull(context, brief: false, waitMs: 4000)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(3500), "the pull was parked for its long poll")
        XCTAssertTrue(parked.tasks.isEmpty)
        let status = try await colony.status()
        XCTAssertEqual(status.nodes.map(\.announcement.name), ["raw"], "the node waited on its own parked pull and must not be lost")
        await colony.close()
    }
}

/// Two node processes under one name: the second is refused while the first lives, so they
/// do not take each other's leases (before, 20 short tasks took 47 s and some failed).
final class DuplicateNodeNameTests: ClusterTestCase {
    func testASecondNodeWithALiveNodesNameIsRefusedAndTheFirstKeepsWorking() async throws {
        let log = NSTemporaryDirectory() + "colony-duplicate-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "dup"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "dup"], stderrFile: log)
        try await eventually(poll: .milliseconds(50), "the second node refused (its log)", { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" },
                             until: { $0.contains("is in use by a live node") })
        let results = try await colony.mapResults("sleep", Array(repeating: 0.02, count: 20))
        XCTAssertTrue(results.allSatisfy(\.succeeded), "\(results.map(\.error))")
        XCTAssertEqual(Set(results.map(\.attempt)), [1], "no task was taken from one process by the other")
        await colony.close()
    }
}
