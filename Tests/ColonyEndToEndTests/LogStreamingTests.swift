import Colony
import ColonyCoordinator
import ColonyNode
import Foundation
import XCTest

/// Tasks' live output: exec commands' stdout and stderr and handlers' log lines reach the
/// coordinator while the tasks run, bounded, and `colony logs` reads them.
final class LogStreamingTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    private func execNode() async throws -> ColonyClient {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--name", "log-node", "--allow-exec"])
        return try await cluster.connect(waitingForNodes: 1)
    }

    private func logs(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try ClusterHarness.run(["logs", "--coordinator", cluster.url] + arguments, timeout: .seconds(60))
    }

    /// Runs `colony logs` until `done` accepts its output, or fails after 20 s.
    private func logs(_ arguments: [String], until done: (String) -> Bool) throws -> String {
        try eventuallyBlocking("colony logs \(arguments) showing what was expected", {
            let run = try logs(arguments)
            XCTAssertEqual(run.status, 0, run.stderr)
            return run.stdout
        }, until: done)
    }

    private func waitingCommand(for file: String) -> [String] {
        ["sh", "-c", "echo first; while [ ! -e '\(file)' ]; do sleep 0.05; done; echo second"]
    }

    func testTheFirstLineIsReadableWhileTheTaskWaitsAndFollowEndsWithTheTask() async throws {
        let colony = try await execNode()
        for pool in [TaskPool.process, .thread] {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-logs-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            let id = try await colony.submit(ExecHandler.name, input: ExecHandler.Input(argv: waitingCommand(for: file)),
                                             options: TaskOptions(pool: pool))
            let early = try logs(["\(id)"]) { $0 == "first\n" }
            XCTAssertEqual(early, "first\n", "\(pool)")
            let running = try await colony.tasks(in: .running).map(\.id)
            XCTAssertEqual(running, [id], "the task still waits for its file (\(pool))")
            let url = cluster.url
            let follower = Task.detached { try ClusterHarness.run(["logs", "--coordinator", url, "\(id)", "--follow"], timeout: .seconds(60)) }
            // The follower has printed the first line and waits for more before the file exists.
            XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: nil))
            let followed = try await follower.value
            XCTAssertEqual(followed.status, 0, followed.stderr)
            XCTAssertEqual(followed.stdout, "first\nsecond\n", "\(pool)")
            let result = try await colony.result(of: id).value(as: ExecHandler.Output.self)
            XCTAssertEqual(result.stdout, "first\nsecond\n", "the task's own output is unchanged")
        }
        await colony.close()
    }

    func testStderrIsASeparateStream() async throws {
        let colony = try await execNode()
        let id = try await colony.submit(ExecHandler.name, input: ExecHandler.Input(argv: ["sh", "-c", "echo out; echo err >&2; echo out2"]))
        _ = try await colony.result(of: id)
        let both = try logs(["\(id)"])
        XCTAssertEqual(both.status, 0, both.stderr)
        XCTAssertEqual(both.stdout, "out\nout2\n")
        XCTAssertEqual(both.stderr, "err\n")
        let errOnly = try logs(["\(id)", "--stream", "stderr"])
        XCTAssertEqual(errOnly.stdout, "")
        XCTAssertEqual(errOnly.stderr, "err\n")
        let outOnly = try logs(["\(id)", "--stream", "stdout"])
        XCTAssertEqual(outOnly.stdout, "out\nout2\n")
        XCTAssertEqual(outOnly.stderr, "")
        await colony.close()
    }

    func testAMebibyteOfOutputKeepsItsEndAfterADropMarker() async throws {
        let colony = try await execNode()
        let id = try await colony.submit(ExecHandler.name, input: ExecHandler.Input(
            argv: ["sh", "-c", "yes x | head -c 1048576; echo the-last-line"], outputBytesMax: 1000))
        let result = try await colony.result(of: id).value(as: ExecHandler.Output.self)
        XCTAssertEqual(result.stdout.count, 1000, "the task's own output is as before (bounded by outputBytesMax)")
        let run = try logs(["\(id)"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.hasPrefix("[colony: "), String(run.stdout.prefix(100)))
        XCTAssertEqual(run.stdout.split(separator: "\n", maxSplits: 1).first?.hasSuffix(" bytes dropped]"), true, String(run.stdout.prefix(100)))
        XCTAssertTrue(run.stdout.hasSuffix("x\nthe-last-line\n"))
        XCTAssertLessThanOrEqual(run.stdout.utf8.count, (64 << 10) + 200, "kept: the last 64 KiB and the marker")
        XCTAssertGreaterThan(run.stdout.utf8.count, 60_000)
        await colony.close()
    }

    func testAnUnknownTaskIsOneLine() async throws {
        let colony = try await execNode()
        let run = try logs(["987654"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertEqual(run.stdout, "")
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("task 987654 is not known"), run.stderr)
        await colony.close()
    }

    func testAHandlersLogLinesStreamOnStderr() async throws {
        var configuration = NodeConfiguration(coordinatorURL: cluster.url, name: "handler-node", threads: 1)
        configuration.ioSlots = 0
        let node = NodeAgent(configuration: configuration, handlers: .builtIn(plus: [AnyTaskHandler(LoggingHandler())]))
        let running = Task { try await node.run() }
        defer { running.cancel() }
        let colony = try await cluster.connect(waitingForNodes: 1)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("colony-logs-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let id = try await colony.submit(LoggingHandler.name, input: file)
        try await eventually(poll: .zero, "the handler's log line", { try logs(["\(id)"]).stderr }, until: { $0.contains("waiting for the file\n") })
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: nil))
        let output = try await colony.result(of: id).value(as: String.self)
        XCTAssertEqual(output, "done")
        XCTAssertEqual(try logs(["\(id)"]).stderr, "waiting for the file\nthe file is there\n")
        await colony.close()
    }

    // MARK: The bounds, on the coordinator's own type

    func testTheOldestTasksLogsGoFirstPastTheTotalBound() {
        var bounds = TaskLogs.Bounds()
        bounds.streamBytesMax = 100
        bounds.totalBytesMax = 250
        var logs = TaskLogs(bounds: bounds)
        for task in UInt64(1)...3 {
            logs.append(taskID: task, attempt: 1, stream: .stdout, offset: 0, bytes: Array(repeating: UInt8(ascii: "a"), count: 100))
        }
        XCTAssertLessThanOrEqual(logs.totalBytes, 250)
        let oldest = logs.read(taskID: 1, stream: .stdout, from: 0, bytesMax: 1000)
        XCTAssertEqual(oldest?.bytes, [])
        XCTAssertEqual(oldest?.dropped, 100, "a reader learns what it missed")
        XCTAssertEqual(logs.read(taskID: 3, stream: .stdout, from: 0, bytesMax: 1000)?.bytes.count, 100)
        XCTAssertNil(logs.read(taskID: 4, stream: .stdout, from: 0, bytesMax: 1000))
    }

    func testAStreamKeepsItsLatestBytesAndMarksGapsAndAttempts() {
        var bounds = TaskLogs.Bounds()
        bounds.streamBytesMax = 10
        var logs = TaskLogs(bounds: bounds)
        logs.append(taskID: 1, attempt: 1, stream: .stderr, offset: 0, bytes: Array("0123456789abc".utf8))
        let read = logs.read(taskID: 1, stream: .stderr, from: 0, bytesMax: 100)
        XCTAssertEqual(read.map { String(decoding: $0.bytes, as: UTF8.self) }, "3456789abc")
        XCTAssertEqual(read?.dropped, 3)
        XCTAssertEqual(read?.offset, 3)
        bounds.streamBytesMax = 1000
        logs = TaskLogs(bounds: bounds)
        logs.append(taskID: 1, attempt: 1, stream: .stdout, offset: 0, bytes: Array("ab".utf8))
        logs.append(taskID: 1, attempt: 1, stream: .stdout, offset: 1, bytes: Array("bc".utf8))
        logs.append(taskID: 1, attempt: 1, stream: .stdout, offset: 7, bytes: Array("h\n".utf8))
        logs.append(taskID: 1, attempt: 2, stream: .stdout, offset: 0, bytes: Array("again\n".utf8))
        logs.append(taskID: 1, attempt: 1, stream: .stdout, offset: 9, bytes: Array("stale".utf8))
        let text = logs.read(taskID: 1, stream: .stdout, from: 0, bytesMax: 1000).map { String(decoding: $0.bytes, as: UTF8.self) }
        XCTAssertEqual(text, "abc[colony: 4 bytes dropped]\nh\n[colony: attempt 2]\nagain\n")
    }
}

/// Logs a line, waits for the file named by its input, logs another.
private struct LoggingHandler: TaskHandler {
    static let name = "log-and-wait"

    func run(_ input: String, context: TaskContext) async throws -> String {
        context.log("waiting for the file")
        while !FileManager.default.fileExists(atPath: input) {
            try await Task.sleep(for: .milliseconds(20))
        }
        context.log("the file is there")
        return "done"
    }
}
