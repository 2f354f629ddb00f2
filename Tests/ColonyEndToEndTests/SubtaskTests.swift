import Colony
@testable import ColonyNode
import Foundation
import XCTest

/// Tasks submitting tasks: a handler submits tasks into its own job through its context and
/// waits for them without holding its slot, so a tree of tasks runs on one node of one slot.
final class SubtaskTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    private func startNode(threads: Int, ioSlots: Int = 0) -> Task<Void, any Error> {
        startAgent(threads: threads, ioSlots: ioSlots).running
    }

    private func startAgent(threads: Int, ioSlots: Int = 0) -> (agent: NodeAgent, running: Task<Void, any Error>) {
        var configuration = NodeConfiguration(coordinatorURL: cluster.url, name: "tree-node", threads: threads)
        configuration.ioSlots = ioSlots
        let node = NodeAgent(configuration: configuration, handlers: .builtIn(plus: [AnyTaskHandler(TreeSum()), AnyTaskHandler(WaitForSleep()), AnyTaskHandler(FireAndForget())]))
        return (node, Task { try await node.run() })
    }

    /// Depth 3: 15 tasks, 7 of them parents waiting at once, on a node with one thread slot.
    /// Before parents gave their slot back, the root held the only slot for ever.
    func testATreeOfTasksRunsOnOneSlotAndEveryTaskIsInTheRootsJob() async throws {
        let node = startNode(threads: 1)
        defer { node.cancel() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        let (job, ids) = try await colony.submit([TaskSubmission(handler: TreeSum.name, input: Array(#"{"depth":3,"value":1}"#.utf8))],
                                                 job: .named("tree"))
        let done = try await eventually(timeout: .seconds(30), "the tree's 15 tasks finish", { try await colony.job(job) },
                                        until: { $0.counts.succeeded == 15 })
        XCTAssertEqual(done.state, .succeeded)
        XCTAssertEqual(done.counts.failed, 0)
        let sum = try await colony.result(of: ids[0]).value(as: Int.self)
        XCTAssertEqual(sum, 8, "eight leaves of value 1")
        let status = try await colony.status()
        XCTAssertEqual(status.running, 0)
        await colony.close()
    }

    /// A handler that submits tasks and ends without waiting for them: a later wait on the
    /// node (whose fetch brings every result of the node's session) keeps none of their
    /// results. Before, the node's client kept them for the life of the node.
    func testResultsOfSubtasksNobodyWaitsForAreNotKept() async throws {
        let (agent, node) = startAgent(threads: 1)
        defer { node.cancel() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        let (fired, _) = try await colony.submit([TaskSubmission(handler: FireAndForget.name, input: Array("20".utf8))], job: .named("fire"))
        try await eventually(timeout: .seconds(30), "the 21 tasks finish", { try await colony.job(fired) }, until: { $0.counts.succeeded == 21 })
        let (tree, _) = try await colony.submit([TaskSubmission(handler: TreeSum.name, input: Array(#"{"depth":1,"value":1}"#.utf8))], job: .named("tree"))
        try await eventually(timeout: .seconds(30), "the tree finishes", { try await colony.job(tree) }, until: { $0.counts.succeeded == 3 })
        let held = await agent.subtasks
        let link = try XCTUnwrap(held)
        try await eventually(timeout: .seconds(5), "the node's client keeps no result", { await link.resultsHeld() == 0 })
        await colony.close()
    }

    /// The io pool gives its slots back the same way.
    func testATreeRunsInTheIOPoolToo() async throws {
        let node = startNode(threads: 0, ioSlots: 1)
        defer { node.cancel() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        var options = TaskOptions()
        options.pool = .io
        let id = try await colony.submit(TreeSum.name, input: TreeSum.Input(depth: 2, value: 3, pool: "io"), options: options)
        let result = try await eventually(timeout: .seconds(30), "the io tree finishes", firstOf: { try await colony.fetchResult(of: id) })
        XCTAssertEqual(try result.value(as: Int.self), 12)
        await colony.close()
    }

    /// A parent stopped while it waits (here its timeout) stops waiting at once: it fails with
    /// the stop's reason, and its worker does not hang on the wait; its subtask goes on.
    func testAParentStoppedWhileItWaitsEndsWithTheStopsReason() async throws {
        let (agent, node) = startAgent(threads: 2)
        defer { node.cancel() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        var options = TaskOptions()
        options.timeoutSeconds = 1
        let parent = try await colony.submit(WaitForSleep.name, input: 30.0, options: options)
        let result = try await colony.result(of: parent)
        XCTAssertFalse(result.succeeded)
        XCTAssertEqual(result.failure, .timeout, result.error)
        XCTAssertTrue(result.error.contains("timed out after 1 s"), result.error)
        // The node ended the parent itself (before, its handler waited out the 30 s sleep and
        // only the coordinator's timeout grace failed it).
        try await eventually(timeout: .seconds(10), "only the subtask runs on the node") { await agent.stats().running == 1 }
        let child = try await eventually("the subtask still runs", firstOf: { try await colony.tasks(in: .running).first })
        XCTAssertEqual(child.handler, "sleep")
        await colony.close()
    }

    /// An exec command knows its task and job and where its coordinator is, so `colony submit
    /// --job "$COLONY_JOB_ID"` in it adds to its own job (in the process pool and on threads).
    func testACommandAddsTasksToItsOwnJob() async throws {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "1", "--name", "exec-node", "--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let script = #""$0" submit --job "$COLONY_JOB_ID" echo '"from the command"' >/dev/null && echo "$COLONY_TASK_ID $COLONY_ATTEMPT""#
        for pool in [TaskPool.process, .thread] {
            var options = TaskOptions()
            options.pool = pool
            let input = try JSONSerialization.data(withJSONObject: ["argv": ["sh", "-c", script, ClusterHarness.colonyExecutable.path],
                                                                    "failUnlessZero": true])
            let (job, ids) = try await colony.submit([TaskSubmission(handler: "exec", input: Array(input), options: options)], job: .new)
            let report = try await colony.result(of: ids[0])
            XCTAssertTrue(report.succeeded, report.error)
            XCTAssertTrue(report.outputText.contains(#""stdout":"\#(ids[0]) 1\n""#), report.outputText)
            let done = try await eventually("the command's task joins its job and runs", { try await colony.job(job) },
                                            until: { $0.counts.succeeded == 2 })
            XCTAssertEqual(done.counts.total, 2, "\(pool)")
        }
        await colony.close()
    }

    /// A context made outside a node (or in a process-pool child) cannot submit: one clear line.
    func testAContextWithoutANodeRefusesToSubmitInOneLine() async throws {
        let context = TaskContext(taskID: 7, attempt: 1, nodeName: "none", pool: .process)
        do {
            _ = try await context.submit([TaskSubmission(handler: "echo", input: [])])
            XCTFail("submitted without a node")
        } catch {
            XCTAssertEqual("\(error)".split(separator: "\n").count, 1)
            XCTAssertTrue("\(error)".contains("only handlers in a node's thread or io pool can"), "\(error)")
        }
    }
}

/// Sums `value` over the leaves of a binary tree of tasks `depth` levels deep.
private struct TreeSum: TaskHandler {
    static let name = "tree-sum"
    struct Input: Codable, Sendable {
        var depth: Int
        var value: Int
        var pool: String?
    }

    func run(_ input: Input, context: TaskContext) async throws -> Int {
        guard input.depth > 0 else { return input.value }
        let child = Input(depth: input.depth - 1, value: input.value, pool: input.pool)
        var options = TaskOptions()
        if input.pool == "io" { options.pool = .io }
        let sums = try await context.map(Self.name, [child, child], as: Int.self, options: options)
        return sums.reduce(0, +)
    }
}

/// Submits `input` echo tasks and ends without waiting for them.
private struct FireAndForget: TaskHandler {
    static let name = "fire-and-forget"

    func run(_ input: Int, context: TaskContext) async throws -> Int {
        try await context.submit((0..<input).map { TaskSubmission(handler: "echo", input: Array("\($0)".utf8)) }).count
    }
}

/// Submits one `sleep` of `input` seconds and waits for it.
private struct WaitForSleep: TaskHandler {
    static let name = "wait-for-sleep"

    func run(_ input: Double, context: TaskContext) async throws -> Double {
        try await context.map("sleep", [input], as: Double.self)[0]
    }
}
