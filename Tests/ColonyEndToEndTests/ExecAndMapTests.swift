import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// `exec` tasks and `colony map`, with real commands on a real node process.
final class ExecAndMapTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    private func execNode(allow: Bool = true) throws {
        var arguments = ["node", "--coordinator", cluster.url, "--threads", "2", "--name", "exec-node"]
        if allow { arguments.append("--allow-exec") }
        try cluster.start(arguments)
    }

    /// Waits until the coordinator listens and the node has joined, for tests that then run
    /// the CLI against them.
    private func waitForNode() async throws {
        let colony = try await cluster.connect(waitingForNodes: 1)
        await colony.close()
    }

    private func exec(_ colony: ColonyClient, _ input: ExecHandler.Input) async throws -> TaskResult {
        try await colony.result(of: colony.submit(ExecHandler.name, input: input))
    }

    func testExecReportsExitCodesOutputAndStdin() async throws {
        try execNode()
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ok = try await exec(colony, .init(argv: ["sh", "-c", "echo out; echo err >&2; exit 3"])).value(as: ExecHandler.Output.self)
        XCTAssertEqual(ok.exitCode, 3)
        XCTAssertEqual(ok.stdout, "out\n")
        XCTAssertEqual(ok.stderr, "err\n")
        XCTAssertFalse(ok.truncated)
        let piped = try await exec(colony, .init(argv: ["cat"], stdin: "fed through stdin")).value(as: ExecHandler.Output.self)
        XCTAssertEqual(piped.stdout, "fed through stdin")
        let env = try await exec(colony, .init(argv: ["sh", "-c", "echo $COLONY_TEST_VALUE; pwd"], env: ["COLONY_TEST_VALUE": "42"], cwd: "/tmp"))
            .value(as: ExecHandler.Output.self)
        XCTAssertEqual(env.stdout, "42\n/tmp\n")
        let missing = try await exec(colony, .init(argv: ["no-such-command-colony"]))
        XCTAssertFalse(missing.succeeded)
        XCTAssertTrue(missing.error.contains("command not found"), missing.error)
        await colony.close()
    }

    func testExecOutputIsBoundedAndMarkedTruncated() async throws {
        try execNode()
        let colony = try await cluster.connect(waitingForNodes: 1)
        let output = try await exec(colony, .init(argv: ["sh", "-c", "head -c 100000 /dev/zero | tr '\\\\0' x"], outputBytesMax: 1000))
            .value(as: ExecHandler.Output.self)
        XCTAssertEqual(output.stdout.count, 1000)
        XCTAssertTrue(output.truncated)
        XCTAssertEqual(output.exitCode, 0)
        await colony.close()
    }

    func testExecIsKilledAtItsTimeout() async throws {
        try execNode()
        let colony = try await cluster.connect(waitingForNodes: 1)
        let clock = ContinuousClock()
        let start = clock.now
        let output = try await exec(colony, .init(argv: ["sleep", "30"], timeoutSeconds: 0.3)).value(as: ExecHandler.Output.self)
        XCTAssertTrue(output.timedOut)
        XCTAssertEqual(output.signal, SIGKILL)
        XCTAssertLessThan(clock.now - start, .seconds(20))
        await colony.close()
    }

    func testANodeWithoutAllowExecRefusesCommands() async throws {
        try execNode(allow: false)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let refused = try await exec(colony, .init(argv: ["true"]))
        XCTAssertFalse(refused.succeeded)
        XCTAssertEqual(refused.error, "exec is disabled on node exec-node (start it with --allow-exec)")
        await colony.close()
    }

    func testMapPrintsAThousandOutputsInInputOrder() async throws {
        try execNode()
        try await waitForNode()
        let inputs = (1...1000).map(String.init).joined(separator: "\n") + "\n"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-map-\(UUID().uuidString).txt")
        try Data(inputs.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--inputs", file.path, "--", "sh", "-c", "echo {}"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, inputs)
    }

    func testAFailingInputMakesMapFailAndShowsInTheJoblogAndSummary() async throws {
        try execNode()
        try await waitForNode()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-map-\(UUID().uuidString).txt")
        let joblog = FileManager.default.temporaryDirectory.appendingPathComponent("colony-joblog-\(UUID().uuidString).tsv")
        try Data("1\n2\nbad\n4\n".utf8).write(to: file)
        defer {
            try? FileManager.default.removeItem(at: file)
            try? FileManager.default.removeItem(at: joblog)
        }
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--inputs", file.path, "--joblog", joblog.path,
                                          "--", "sh", "-c", "test {} != bad && echo ok-{}"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stdout, "ok-1\nok-2\nok-4\n")
        XCTAssertTrue(run.stderr.contains("1 of 4 input(s) failed"), run.stderr)
        XCTAssertTrue(run.stderr.contains("input 3 'bad': exit status 1"), run.stderr)
        let log = try String(contentsOf: joblog, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 5)
        XCTAssertTrue(log[3].hasPrefix("bad\texec-node\t1\texit status 1\t"), String(log[3]))
    }

    func testMapWithAHandlerMapsJSONLines() async throws {
        try execNode()
        try await waitForNode()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-map-\(UUID().uuidString).txt")
        try Data("{\"lo\": 0, \"hi\": 100000}\n{\"lo\": 0, \"hi\": 10}\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--inputs", file.path, "--handler", "primes"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, "9592\n4\n")
    }

    func testMapWithChunksKeepsOutputsAndFailuresPerInput() async throws {
        try execNode()
        try await waitForNode()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-map-\(UUID().uuidString).txt")
        try Data(((1...99).map(String.init) + ["bad"]).joined(separator: "\n").utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--inputs", file.path, "--chunk-size", "7",
                                          "--", "sh", "-c", "test {} != bad && echo {}"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stdout, (1...99).map { "\($0)\n" }.joined())
        XCTAssertTrue(run.stderr.contains("1 of 100 input(s) failed"), run.stderr)
        XCTAssertTrue(run.stderr.contains("input 100 'bad': exit status 1"), run.stderr)
    }

    func testSwiftMapWithChunksReturnsOneResultPerInputInOrder() async throws {
        try execNode()
        let colony = try await cluster.connect(waitingForNodes: 1)
        let echoed = try await colony.map("echo", Array(0..<1000), as: Int.self, chunkSize: 64)
        XCTAssertEqual(echoed, Array(0..<1000))
        let mixed = try await colony.mapResults("primes", [PrimesHandler.Range(lo: 0, hi: 100), PrimesHandler.Range(lo: 5, hi: 1)], chunkSize: 2)
        XCTAssertEqual(mixed.map(\.succeeded), [true, false])
        XCTAssertEqual(mixed[0].outputText, "25")
        XCTAssertTrue(mixed[1].error.contains("lo <= hi"), mixed[1].error)
        // Counter changes of the inputs of a chunk that succeeded are applied, once.
        let counted = try await colony.mapResults(CountHandler.name, Array(repeating: CountHandler.Input(counter: "chunked", times: 10), count: 30), chunkSize: 8)
        XCTAssertTrue(counted.allSatisfy(\.succeeded))
        let value = try await colony.counter("chunked").get()
        XCTAssertEqual(value, 300)
        await colony.close()
    }
}
