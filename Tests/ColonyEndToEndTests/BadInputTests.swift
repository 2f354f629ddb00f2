import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// Bad input at the command line and in names: one line saying what is wrong, a plain
/// non-zero exit (never a crash), and nothing changed at the coordinator.
final class BadInputTests: ClusterTestCase {
    /// How `colony ARGS` ended: by exiting (with its status) or by a signal.
    private struct Ended {
        var exited: Bool
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `colony ARGS` to its end, its output going to files (no pipe can fill up).
    private func colony(_ arguments: [String]) throws -> Ended {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("colony-bad-input-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("stdout")
        let err = folder.appendingPathComponent("stderr")
        guard FileManager.default.createFile(atPath: out.path, contents: nil),
              FileManager.default.createFile(atPath: err.path, contents: nil) else { throw CLIFailure("cannot create files in \(folder.path)") }
        let process = Process()
        process.executableURL = ClusterHarness.colonyExecutable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        do {
            try eventuallyBlocking(timeout: .seconds(60), poll: .milliseconds(10), "colony \(arguments.joined(separator: " ")) finishing",
                                   { process.isRunning }, until: { !$0 })
        } catch {
            kill(process.processIdentifier, SIGKILL)
            throw error
        }
        process.waitUntilExit()
        return Ended(exited: process.terminationReason == .exit, status: process.terminationStatus,
                     stdout: String(decoding: try Data(contentsOf: out), as: UTF8.self),
                     stderr: String(decoding: try Data(contentsOf: err), as: UTF8.self))
    }

    private func assertRefusedInOneLine(_ arguments: [String], naming flag: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ended = try colony(arguments)
        let shown = "colony \(arguments.joined(separator: " ")): \(ended.stderr)"
        XCTAssertTrue(ended.exited, "ended by signal \(ended.status): \(shown)", file: file, line: line)
        XCTAssertNotEqual(ended.status, 0, shown, file: file, line: line)
        let lines = ended.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, shown, file: file, line: line)
        XCTAssertTrue(ended.stderr.contains(flag), shown, file: file, line: line)
    }

    func testNonFiniteAndOutOfRangeDurationsAreRefusedWithOneLineAndNoCrash() async throws {
        // A live coordinator, so that a value that got through would reach the conversion
        // that trapped (SIGILL) once connected.
        try cluster.startCoordinator()
        let client = try await cluster.connect(waitingForNodes: 0)
        let live = ["--coordinator", cluster.url]
        for value in ["inf", "1e300", "nan", "-1", "0", "-inf"] {
            try assertRefusedInOneLine(["submit", "echo", "1", "--timeout", value] + live, naming: "--timeout")
            try assertRefusedInOneLine(["submit", "echo", "1", "--wait", "--timeout", value] + live, naming: "--timeout")
            try assertRefusedInOneLine(["map", "--timeout", value] + live + ["--", "true"], naming: "--timeout")
        }
        let tasks = try await client.tasks()
        XCTAssertEqual(tasks.count, 0, "nothing was submitted")
        await client.close()
        // Nodes are refused before they connect: a node that started would run until killed.
        let nowhere = ["--coordinator", "tcp://127.0.0.1:1"]
        for value in ["inf", "1e300", "nan", "-1"] {
            try assertRefusedInOneLine(["result", "1", "--wait", value] + live, naming: "--wait")
            try assertRefusedInOneLine(["drain", "n1", "--deadline", value] + live, naming: "--deadline")
            try assertRefusedInOneLine(["top", "--once", "--interval", value] + live, naming: "--interval")
            try assertRefusedInOneLine(["node", "--drain-timeout", value] + nowhere, naming: "--drain-timeout")
            try assertRefusedInOneLine(["node", "--child-start-timeout", value] + nowhere, naming: "--child-start-timeout")
        }
    }

    func testTheSwiftAPIRefusesNonFiniteAndHugeDurations() async throws {
        try cluster.startCoordinator()
        let client = try await cluster.connect(waitingForNodes: 0)
        for timeout in [Double.infinity, .nan, 1e300, -1, 0] {
            var refusal = ""
            do {
                _ = try await client.submit("echo", input: 1, options: TaskOptions(timeoutSeconds: timeout))
            } catch {
                refusal = "\(error)"
            }
            XCTAssertTrue(refusal.contains("timeoutSeconds must be a number of seconds from 0.001 to 2592000"), "\(timeout): \(refusal)")
        }
        for (name, call) in [("drain deadline", { try await client.drain(node: "n", deadline: .seconds(Int64.max)) as Any }),
                             ("drain deadline", { try await client.drain(node: "n", deadline: .seconds(-1)) as Any }),
                             ("result wait", { try await client.fetchResult(of: 1, wait: .seconds(Int64.max)) as Any })] {
            var refusal = ""
            do {
                _ = try await call()
            } catch {
                refusal = "\(error)"
            }
            XCTAssertTrue(refusal.contains("\(name) must be a number of seconds"), refusal)
        }
        let tasks = try await client.tasks()
        XCTAssertEqual(tasks.count, 0)
        await client.close()
    }

    /// `Duration.seconds(1e300)` traps: one such task killed every thread-pool node it was
    /// retried on.
    func testAHugeSleepFailsItsTaskAndTheNodeLives() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let client = try await cluster.connect(waitingForNodes: 1)
        let ended = try colony(["submit", "sleep", "1e300", "--wait", "--pool", "thread", "--coordinator", cluster.url])
        XCTAssertTrue(ended.exited && ended.status == 1, "\(ended.status): \(ended.stderr)")
        XCTAssertTrue(ended.stderr.contains("sleep takes a number of seconds from 0 to 2592000"), ended.stderr)
        let after = try colony(["submit", "echo", "2", "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(after.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "2", after.stderr)
        let nodes = try await client.status().nodes
        XCTAssertEqual(nodes.map(\.announcement.name), ["n1"])
        await client.close()
    }

    func testMapHelpPrintsUsageAndSubmitsNothing() async throws {
        try cluster.startCoordinator()
        let client = try await cluster.connect(waitingForNodes: 0)
        for help in [["--help"], ["-h"], ["--timeout", "5", "--help"], ["--help", "--", "echo"]] {
            let ended = try colony(["map", "--coordinator", cluster.url] + help)
            XCTAssertTrue(ended.exited && ended.status == 0, "\(help): \(ended.status) \(ended.stderr)")
            XCTAssertTrue(ended.stdout.contains("USAGE: colony map"), "\(help): \(ended.stdout)")
        }
        let tasks = try await client.tasks()
        XCTAssertEqual(tasks.count, 0, "help submitted \(tasks)")
        await client.close()
    }

    func testNegativeNumbersParseAsValues() async throws {
        try cluster.startCoordinator()
        let client = try await cluster.connect(waitingForNodes: 0)
        let submitted = try colony(["submit", "echo", "1", "--priority", "-2", "--coordinator", cluster.url])
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let id = try XCTUnwrap(TaskID(submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), submitted.stdout)
        let task = try await client.tasks().first { $0.id == id }
        XCTAssertEqual(task?.priority, -2)

        let set = try colony(["counter", "set", "x", "10", "--coordinator", cluster.url])
        XCTAssertEqual(set.status, 0, set.stderr)
        let added = try colony(["counter", "add", "x", "-5", "--coordinator", cluster.url])
        XCTAssertEqual(added.status, 0, added.stderr)
        XCTAssertEqual(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5")
        let afterAdd = try await client.counter("x").get()
        XCTAssertEqual(afterAdd, 5)
        let swapped = try colony(["counter", "cas", "x", "5", "-7", "--coordinator", cluster.url])
        XCTAssertEqual(swapped.status, 0, swapped.stderr)
        let afterSwap = try await client.counter("x").get()
        XCTAssertEqual(afterSwap, -7)
        await client.close()
    }

    func testALimitOfSizeZeroIsRefusedByEveryWayIn() async throws {
        try cluster.startCoordinator()
        let client = try await cluster.connect(waitingForNodes: 0)
        let refused = try colony(["limit", "set", "db", "0", "--coordinator", cluster.url])
        XCTAssertTrue(refused.exited && refused.status != 0, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("limit size must be 1 to 1000000"), refused.stderr)
        let negative = try colony(["limit", "set", "db", "-3", "--coordinator", cluster.url])
        XCTAssertNotEqual(negative.status, 0, negative.stderr)
        XCTAssertEqual(negative.stderr.split(separator: "\n").count, 1, negative.stderr)
        var refusal = ""
        do {
            try await client.setLimit("db", size: 0)
        } catch {
            refusal = "\(error)"
        }
        XCTAssertTrue(refusal.contains("limit size must be 1 to 1000000"), "the Swift API: \(refusal)")
        let limits = try await client.limits()
        XCTAssertEqual(limits.count, 0, "nothing changed")
        await client.close()
    }

    func testAnErrorWithANewlineStaysOnOneLogLine() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("colony-coordinator-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"], stderrFile: log.path)
        try cluster.startNode(name: "n1", threads: 1)
        let client = try await cluster.connect(waitingForNodes: 1)
        let result = try await client.runResult("fail", rawInput: Array(#""first line\nsecond line""#.utf8))
        XCTAssertFalse(result.succeeded)
        await client.close()
        let text = try await eventually("'task failed' in the coordinator's log", {
            String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self)
        }, until: { $0.contains("task failed") })
        for line in text.split(separator: "\n") {
            XCTAssertNotNil(line.range(of: #"^\d{4}-\d{2}-\d{2}T"#, options: .regularExpression), "a line that is not an event: \(line)")
        }
        XCTAssertTrue(text.contains(#"first line\nsecond line"#), text)
    }

    func testCoordinatorAndMapFlagsOutOfRangeAreOneLine() throws {
        try assertRefusedInOneLine(["coordinator", "--listen", cluster.url, "--node-timeout", "-1"], naming: "--node-timeout")
        try assertRefusedInOneLine(["coordinator", "--listen", cluster.url, "--session-timeout", "inf"], naming: "--session-timeout")
        try assertRefusedInOneLine(["map", "--coordinator", cluster.url, "--retries", "5000", "--", "true"], naming: "--retries")
        try assertRefusedInOneLine(["map", "--coordinator", cluster.url, "--chunk-size", "0", "--", "true"], naming: "--chunk-size")
    }

    /// A negative number reaches the flag's own check (one line naming it) instead of being
    /// read as a flag (`Missing value for '--cpus <cpus>'` and the usage, as `--cpus -1` got).
    func testNegativeCountsAreRefusedInOneLineNamingTheFlag() throws {
        let url = cluster.url
        for (arguments, flag) in [(["submit", "echo", "1", "--cpus", "-1"], "--cpus"), (["submit", "echo", "1", "--retries", "-1"], "--retries"),
                                  (["node", "--threads", "-1"], "--threads"), (["node", "--io-slots", "-2"], "--io-slots"),
                                  (["node", "--processes", "-1"], "--processes"), (["node", "--max-tasks-per-child", "-1"], "--max-tasks-per-child"),
                                  (["map", "--pipe", "-N", "-3", "--", "cat"], "-N"), (["up", "--tasks", "-1"], "--tasks"),
                                  (["coordinator", "--listen", url, "--contexts", "-1"], "--contexts")] {
            let withURL = arguments[0] == "coordinator" || arguments[0] == "up" ? arguments : arguments + ["--coordinator", url]
            try assertRefusedInOneLine(withURL, naming: flag)
        }
    }

    func testNamesWithControlCharactersAreRefusedAndTheLogStaysOneLinePerEvent() async throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("colony-coordinator-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: log) }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"], stderrFile: log.path)
        let client = try await cluster.connect(waitingForNodes: 0)

        let counter = try colony(["counter", "add", "a\nb", "1", "--coordinator", cluster.url])
        XCTAssertTrue(counter.exited && counter.status != 0, counter.stderr)
        XCTAssertEqual(counter.stderr.split(separator: "\n").count, 1, counter.stderr)
        XCTAssertTrue(counter.stderr.contains(#"counter name 'a\nb' contains a control character"#), counter.stderr)
        let handler = try colony(["submit", "evil\u{1B}[2J", "1", "--coordinator", cluster.url])
        XCTAssertEqual(handler.stderr.split(separator: "\n").count, 1, handler.stderr)
        XCTAssertTrue(handler.stderr.contains(#"handler name 'evil\u{1B}[2J' contains a control character"#), handler.stderr)
        let cliNode = try colony(["node", "--name", "evil\nnode", "--coordinator", cluster.url])
        XCTAssertTrue(cliNode.exited && cliNode.status != 0, cliNode.stderr)
        XCTAssertEqual(cliNode.stderr.split(separator: "\n").count, 1, cliNode.stderr)

        // A node that gets past its own command line (here: in this process) is refused by
        // the coordinator; before, it joined and its name split the "node joined" log line.
        let refusals = Refusals()
        var configuration = NodeConfiguration(coordinatorURL: cluster.url, name: "evil\nnode", host: "h", threads: 1)
        configuration.log = { line in if line.contains("coordinator refused pull") { refusals.note(line) } }
        let node = NodeAgent(configuration: configuration, handlers: .builtIn(plus: [], allowExec: false))
        let running = Task { try await node.run() }
        defer { running.cancel() }
        try await eventually("the node refused", firstOf: {
            let nodes = try await client.status().nodes
            XCTAssertTrue(nodes.isEmpty, "the coordinator took a node named 'evil\\nnode'")
            return refusals.first
        })
        XCTAssertTrue(refusals.first?.contains(#"node name 'evil\nnode' contains a control character"#) ?? false, refusals.first ?? "")
        running.cancel()
        _ = try? await running.value

        // A real event (a node joining) is logged after all that, one line per event.
        try cluster.startNode(name: "good", threads: 1)
        let text = try await eventually("'node joined' in the coordinator's log", {
            String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self)
        }, until: { $0.contains("node joined") })
        for line in text.split(separator: "\n") {
            // Every event line starts with its ISO 8601 time, e.g. 2025-01-31T12:00:00.000Z.
            XCTAssertNotNil(line.range(of: #"^\d{4}-\d{2}-\d{2}T"#, options: .regularExpression), "a line that is not an event: \(line)")
            XCTAssertFalse(line.contains("evil"), String(line))
        }
        await client.close()
    }
}

/// Log lines a node reported, from its log closure (any thread).
private final class Refusals: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func note(_ line: String) { lock.withLock { lines.append(line) } }
    var first: String? { lock.withLock { lines.first } }
}
