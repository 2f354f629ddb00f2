import Colony
import ColonyNode
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// Resources per task with a real coordinator and real node processes: ids handed to one
/// task at a time and told to its command, cpus held as slots, refusals in one line.
final class ResourceTests: ClusterTestCase {
    private var folder: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        folder = NSTemporaryDirectory() + "colony-resources-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() {
        // Lets any command still waiting end at once.
        for name in ["a", "b", "c", "x", "y"] { _ = FileManager.default.createFile(atPath: "\(folder!)/release-\(name)", contents: nil) }
        super.tearDown()
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// A command that marks itself started (with the gpus it was told), waits until released
    /// (20 s at most), then prints its CUDA_VISIBLE_DEVICES.
    private func holding(_ name: String) -> ExecHandler.Input {
        let script = """
            echo "$CUDA_VISIBLE_DEVICES $COLONY_RESOURCE_GPUS" > "$0/started-$1"
            i=0; while [ ! -e "$0/release-$1" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
            printf %s "$CUDA_VISIBLE_DEVICES"
            """
        return ExecHandler.Input(argv: ["sh", "-c", script, folder, name])
    }

    private func started(_ name: String) -> Bool { FileManager.default.fileExists(atPath: "\(folder!)/started-\(name)") }

    private func release(_ name: String) { _ = FileManager.default.createFile(atPath: "\(folder!)/release-\(name)", contents: nil) }

    /// Waits until `condition` holds, or fails after `limit`.
    private func waitUntil(_ what: String, limit: Duration = .seconds(15), _ condition: () -> Bool) async throws {
        try await eventually(timeout: limit, what) { condition() }
    }

    /// Fails if `condition` comes true within `window` (what must not happen while it holds).
    private func assertStaysFalse(_ what: String, for window: Duration = .seconds(1), _ condition: () -> Bool) async throws {
        let until = ContinuousClock.now + window
        while ContinuousClock.now < until {
            if condition() { return XCTFail(what) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func testTwoOneGPUTasksRunAtOnceOnDifferentGPUsAndAThirdWaits() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "4", "--processes", "4", "--allow-exec",
                           "--name", "gpu-node", "--resource", "gpus=0,1"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        var options = TaskOptions()
        options.resources = [ResourceVariant(amounts: ["gpus": ResourceAmount.one])]
        let ids = try await colony.submit(try ["a", "b", "c"].map {
            TaskSubmission(handler: "exec", input: Array(try JSONEncoder().encode(holding($0))), options: options)
        })
        try await waitUntil("the first two started") { started("a") && started("b") }
        let told = try ["a", "b"].map { try String(contentsOfFile: "\(folder!)/started-\($0)", encoding: .utf8) }
        XCTAssertEqual(Set(told), ["0 0\n", "1 1\n"], "each told its own gpu, in CUDA_VISIBLE_DEVICES and COLONY_RESOURCE_GPUS")
        try await assertStaysFalse("the third started while both gpus were taken") { started("c") }
        let status = try await colony.status()
        XCTAssertEqual(status.nodes.first?.resourceColumn, "gpus 2/2")

        release("a")
        try await waitUntil("the third started once a gpu was free") { started("c") }
        release("b")
        release("c")
        let outputs = try await colony.results(of: ids).map { try $0.value(as: ExecHandler.Output.self).stdout }
        XCTAssertEqual(Set(outputs.prefix(2)), ["0", "1"])
        XCTAssertEqual(outputs[2], outputs[0], "the third got the gpu the first let go of")
    }

    func testATwoCPUTaskRunsAloneOnATwoSlotNode() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--allow-exec", "--name", "two-slots"])
        _ = try await cluster.connect(waitingForNodes: 1)
        let input = { (name: String) in String(decoding: try JSONEncoder().encode(self.holding(name)), as: UTF8.self) }
        let big = try ClusterHarness.run(["submit", "--coordinator", cluster.url, "--cpus", "2", "exec", try input("x")])
        XCTAssertEqual(big.status, 0, big.stderr)
        let small = try ClusterHarness.run(["submit", "--coordinator", cluster.url, "exec", try input("y")])
        XCTAssertEqual(small.status, 0, small.stderr)
        try await waitUntil("the 2-cpu task started") { started("x") }
        try await assertStaysFalse("the 1-cpu task overlapped the 2-cpu task on 2 slots") { started("y") }
        release("x")
        try await waitUntil("the 1-cpu task started once the slots were free") { started("y") }
    }

    func testATwoCPUTaskHoldsTwoProcessPoolSlots() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "0", "--processes", "2", "--allow-exec", "--name", "two-children"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        var big = TaskOptions(pool: .process)
        big.resources = [ResourceVariant(cpus: 2)]
        let ids = try await colony.submit([
            TaskSubmission(handler: "exec", input: Array(try JSONEncoder().encode(holding("x"))), options: big),
            TaskSubmission(handler: "exec", input: Array(try JSONEncoder().encode(holding("y"))), options: TaskOptions(pool: .process)),
        ])
        try await waitUntil("the 2-cpu task started") { started("x") }
        try await assertStaysFalse("the 1-cpu task overlapped the 2-cpu task on 2 children") { started("y") }
        release("x")
        try await waitUntil("the 1-cpu task started once the children were free") { started("y") }
        release("y")
        let results = try await colony.results(of: ids)
        XCTAssertEqual(results.filter(\.succeeded).count, 2, "\(results.map(\.error))")
    }

    /// Short tasks are prefetched to a node while a 2-cpu task holds both its slots: the node
    /// queues them and starts none until the 2-cpu task ends.
    func testPrefetchedTasksDoNotStartInTheSlotsATwoCPUTaskHolds() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--allow-exec", "--name", "two-slots"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        // Measured short: the coordinator sends echo tasks beyond the free slots from now on.
        _ = try await colony.results(of: try await colony.submit((0..<300).map { _ in TaskSubmission(handler: "echo", input: Array("1".utf8)) }))
        var options = TaskOptions()
        options.resources = [ResourceVariant(cpus: 2)]
        let big = try await colony.submit([TaskSubmission(handler: "exec", input: Array(try JSONEncoder().encode(holding("x"))), options: options)])
        try await waitUntil("the 2-cpu task started") { started("x") }
        let before = try await colony.status().succeeded
        let echoes = try await colony.submit((0..<50).map { _ in TaskSubmission(handler: "echo", input: Array("1".utf8)) })
        let until = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < until {
            let status = try await colony.status()
            XCTAssertEqual(status.succeeded, before, "a task ran in a slot the 2-cpu task holds")
            if status.succeeded != before { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        release("x")
        let results = try await colony.results(of: big + echoes)
        XCTAssertEqual(results.filter(\.succeeded).count, 51, "\(Set(results.map(\.error)))")
    }

    func testTheHTTPAPITakesResourcesAndStatusShowsThemHeld() async throws {
        let port = try ClusterHarness.freePort()
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--metrics-listen", "127.0.0.1:\(port)"])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0", "--allow-exec", "--name", "gpu-node",
                           "--resource", "gpus=0,1"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let body = #"{"handler": "exec", "input": \#(String(decoding: try JSONEncoder().encode(holding("a")), as: UTF8.self)), "resources": ["gpus=2,cpus=2"]}"#
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/v1/tasks")!)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 202, String(decoding: data, as: UTF8.self))
        try await waitUntil("the task started") { started("a") }
        XCTAssertEqual(try String(contentsOfFile: "\(folder!)/started-a", encoding: .utf8), "0,1 0,1\n")
        let status = try await colony.status()
        XCTAssertEqual(status.nodes.first?.resourceColumn, "gpus 2/2")
        let top = try ClusterHarness.run(["top", "--once", "--coordinator", cluster.url])
        XCTAssertTrue(top.stdout.contains("gpus 2/2"), top.stdout)
        request.httpBody = Data(#"{"handler": "echo", "input": 1, "resources": ["gpus"]}"#.utf8)
        let (_, refused) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((refused as? HTTPURLResponse)?.statusCode, 400)
    }

    func testGPUAutoWithoutNvidiaSMIIsRefusedInOneLine() throws {
        let refused = try ClusterHarness.run(["node", "--coordinator", cluster.url, "--threads", "1", "--resource", "gpus=auto"],
                                             environment: ["PATH": folder])
        XCTAssertNotEqual(refused.status, 0)
        let lines = refused.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("nvidia-smi"), refused.stderr)
    }

    func testARequestNoNodeCanSatisfyIsRefusedAndBadValuesSubmitNothing() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--name", "gpu-node", "--resource", "gpus=0,1"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        for (arguments, expected) in [(["--resource", "gpus=3"], "no live node could ever give the resources cpus=1,gpus=3"),
                                      (["--cpus", "3"], "no live node could ever give the resources cpus=3"),
                                      (["--resource", "gpus=1.5"], "must be whole"),
                                      (["--resource", "gpus"], "--resource is NAME=AMOUNT"),
                                      (["--resource-variant", "gpus=x"], "--resource-variant is NAME=AMOUNT")] {
            let refused = try ClusterHarness.run(["submit", "--coordinator", cluster.url] + arguments + ["echo", "1"])
            XCTAssertNotEqual(refused.status, 0, "\(arguments)")
            XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(expected), "\(arguments): \(refused.stderr)")
        }
        let status = try await colony.status()
        XCTAssertEqual(status.queued + status.running + Int(status.succeeded), 0, "refused means nothing was submitted")
        // A variant that fits is taken.
        let fits = try ClusterHarness.run(["submit", "--coordinator", cluster.url, "--resource", "gpus=3", "--resource-variant", "gpus=1",
                                           "--wait", "echo", "1"])
        XCTAssertEqual(fits.status, 0, fits.stderr)
    }
}
