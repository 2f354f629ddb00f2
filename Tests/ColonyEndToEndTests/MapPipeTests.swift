import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// `colony map --pipe`: chunks of the input on a command's stdin, with real coordinator and
/// node processes.
final class MapPipeTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    /// Starts an exec node and waits until it has joined.
    private func startNode() async throws {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "2", "--allow-exec", "--name", "pipe-node"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        await colony.close()
    }

    private func file(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("colony-pipe-\(UUID().uuidString).txt")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Lines of varied lengths, with multi-byte UTF-8, tabs and an empty line; the last one
    /// without its newline.
    private var sample: String {
        (1...500).map { "\($0)\t" + String(repeating: "é✓x", count: $0 % 17) }.joined(separator: "\n") + "\n\nlast line without newline"
    }

    /// The chunks a `cat; echo @@@` command printed.
    private func chunks(_ stdout: String) -> [String] {
        var parts = stdout.components(separatedBy: "@@@\n")
        XCTAssertEqual(parts.last, "")
        parts.removeLast()
        return parts
    }

    func testPipeWithLinesFeedsEveryByteInChunkOrder() async throws {
        try await startNode()
        let input = try file(Array(sample.utf8))
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "-N", "7", "--inputs", input.path,
                                          "--", "sh", "-c", "cat; echo; echo @@@"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let parts = chunks(run.stdout)
        XCTAssertEqual(parts.count, 72)  // 502 lines in sevens
        // Each chunk got its 7 lines (the `echo` marks where a chunk's input ended).
        XCTAssertEqual(parts.dropLast().map { $0.filter { $0 == "\n" }.count }, Array(repeating: 8, count: 71))
        XCTAssertEqual(parts.map { String($0.dropLast()) }.joined(), sample)
    }

    func testPipeWithBlockCutsAtLineEndsWithinTheSize() async throws {
        try await startNode()
        let input = try file(Array(sample.utf8))
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "--block", "1K", "--inputs", input.path,
                                          "--", "sh", "-c", "cat; echo @@@"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let parts = chunks(run.stdout)
        XCTAssertGreaterThan(parts.count, 10)
        for part in parts.dropLast() {
            XCTAssertLessThanOrEqual(part.utf8.count, 1024)
            XCTAssertGreaterThan(part.utf8.count, 1024 - 100, "a chunk is cut only at the last line end that fits")
            XCTAssertTrue(part.hasSuffix("\n"))
        }
        XCTAssertEqual(parts.joined(), sample)
    }

    func testPipeRepeatsTheHeaderLinesInEveryChunk() async throws {
        try await startNode()
        let body = (1...10).map { "row \($0)\n" }.joined()
        let input = try file(Array(("name,value\nunits,s\n" + body).utf8))
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "-N", "4", "--header", "2", "--inputs", input.path,
                                          "--", "sh", "-c", "cat; echo @@@"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(chunks(run.stdout), [
            "name,value\nunits,s\nrow 1\nrow 2\nrow 3\nrow 4\n",
            "name,value\nunits,s\nrow 5\nrow 6\nrow 7\nrow 8\n",
            "name,value\nunits,s\nrow 9\nrow 10\n",
        ])
    }

    func testPipeFeedsBinaryBytesUnchanged() async throws {
        try await startNode()
        var bytes: [UInt8] = Array(0...255) + [10]
        bytes += Array(repeating: 0, count: 5) + [0xFF, 0xFE, 10]
        let input = try file(bytes)
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "-N", "1000", "--inputs", input.path,
                                          "--", "od", "-An", "-v", "-tx1"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let seen = run.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }
        XCTAssertEqual(seen, bytes)
    }

    func testExecStdinBytesTravelUnescapedAndNeverTwice() async throws {
        try await startNode()
        let colony = try await cluster.connect(waitingForNodes: 1)
        let chunk = Array("a\"b\\c\n\u{1}".utf8)
        let command = ExecHandler.Input(argv: ["cat"])
        let input = try ExecHandler.encode(command, stdin: chunk)
        XCTAssertEqual(input.count, try JSONEncoder().encode(command).count + 1 + chunk.count)
        let fed = try await colony.result(of: colony.submit(ExecHandler.name, rawInput: input))
        XCTAssertEqual(try fed.value(as: ExecHandler.Output.self).stdout, "a\"b\\c\n\u{1}")
        let twice = try ExecHandler.encode(.init(argv: ["cat"], stdin: "x"), stdin: chunk)
        let refused = try await colony.result(of: colony.submit(ExecHandler.name, rawInput: twice))
        XCTAssertFalse(refused.succeeded)
        XCTAssertEqual(refused.error, "exec: give stdin in the JSON or as bytes after it, not both")
        await colony.close()
    }

    func testACommandThatReadsNoneOfItsChunkSucceeds() async throws {
        try await startNode()
        // Chunks far larger than a pipe's buffer, so that feeding them meets a closed pipe.
        let input = try file(Array(String(repeating: "0123456789abcdef\n", count: 60_000).utf8))
        for pool in ["process", "thread"] {
            let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "--block", "512K", "--pool", pool,
                                              "--inputs", input.path, "--", "sh", "-c", "echo done"])
            XCTAssertEqual(run.status, 0, "\(pool): \(run.stderr)")
            XCTAssertEqual(run.stdout, String(repeating: "done\n", count: 2), pool)
        }
    }

    func testTheSeedsChunkedMean() async throws {
        try await startNode()
        let input = try file(Array((1...1_000_000).map { "\($0)\n" }.joined().utf8))
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "-N", "100000", "--inputs", input.path,
                                          "--", "awk", "{s+=$1} END {print s/NR}"])
        XCTAssertEqual(run.status, 0, run.stderr)
        // awk prints 6 significant digits, as %.6g does.
        XCTAssertEqual(run.stdout, (0..<10).map { String(format: "%.6g\n", Double($0 * 100_000) + 50_000.5) }.joined())
    }

    func testAChunkOverTheMessageCapIsRefusedInOneLineAndNothingRuns() async throws {
        var bytes = Array("short\n".utf8)
        bytes += Array(repeating: UInt8(ascii: "x"), count: 17 << 20)
        bytes.append(10)
        let input = try file(bytes)
        let run = try ClusterHarness.run(["map", "--coordinator", cluster.url, "--pipe", "--block", "1M", "--inputs", input.path, "--", "wc", "-c"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertEqual(run.stdout, "")
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("chunk 2 (line 2) is 17825793 bytes, over the"), run.stderr)
        let colony = try await cluster.connect(waitingForNodes: 0)
        let status = try await colony.status()
        XCTAssertEqual(status.queued, 0)
        await colony.close()
    }

    func testPipeOptionsAreCheckedBeforeAnythingRuns() throws {
        for (arguments, message) in [
            (["--block", "1M", "--", "cat"], "--block, -N and --header go with --pipe"),
            (["--pipe", "--block", "1M", "-N", "3", "--", "cat"], "give --block or -N, not both"),
            (["--pipe", "--block", "1T", "--", "cat"], "--block takes a number of bytes"),
            (["--pipe", "--block", "64M", "--", "cat"], "--block must be at most"),
            (["--pipe", "-N", "0", "--", "cat"], "-N must be 1 to"),
            (["--pipe", "--handler", "echo"], "--pipe feeds a command's stdin"),
        ] {
            let run = try ClusterHarness.run(["map", "--coordinator", cluster.url] + arguments)
            XCTAssertNotEqual(run.status, 0, "\(arguments)")
            XCTAssertTrue(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
    }
}
