import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// The process pool with real child processes of a real node process.
final class ProcessPoolTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
    }

    @discardableResult
    private func startNode(processes: Int, extra: [String] = []) throws -> Process {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "\(processes)", "--name", "pool-node"] + extra)
    }

    /// Live (not zombie) processes whose parent is `parent`.
    private func children(of parent: Int32) -> Set<Int32> {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: Set<Int32> = []
        for entry in entries {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, fields[0] != "Z", Int32(fields[1]) == parent { found.insert(pid) }
        }
        return found
    }

    private func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// The pid a command wrote to `path`, once the whole line is there (the shell creates the
    /// file before it writes the pid).
    private func writtenPid(at path: String) async throws -> Int32 {
        try await eventually("a pid line in \(path)", firstOf: {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            return text.hasSuffix("\n") ? Int32(text.dropLast()) : nil
        })
    }

    func testACrashingHandlerCostsOneChildAndTheNodeCarriesOn() async throws {
        let node = try startNode(processes: 2)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let before = try await eventually("two children", { children(of: node.processIdentifier) }, until: { $0.count == 2 })

        let crashed = try await colony.result(of: colony.submit(CrashHandler.name, input: "boom"))
        XCTAssertFalse(crashed.succeeded)
        XCTAssertTrue(crashed.error.hasPrefix("crashed: signal"), crashed.error)
        XCTAssertEqual(crashed.failure, .crashed)
        XCTAssertTrue(crashed.error.contains("Fatal error: boom"), crashed.error)

        let echoes = try await colony.mapResults(EchoHandler.name, Array(0..<100), options: TaskOptions(pool: .process))
        XCTAssertEqual(echoes.filter(\.succeeded).count, 100, "\(echoes.first { !$0.succeeded }?.error ?? "")")
        XCTAssertTrue(node.isRunning, "the node survived its child's crash")
        let after = try await eventually("two children again", { children(of: node.processIdentifier) }, until: { $0.count == 2 })
        XCTAssertNotEqual(after, before, "the crashed child was replaced")

        let refused = try await colony.result(of: colony.submit(CrashHandler.name, input: "boom", options: TaskOptions(pool: .thread)))
        XCTAssertEqual(refused.error, "crash runs only in the process pool")
        XCTAssertEqual(refused.failure, .error)
        XCTAssertTrue(node.isRunning)
        await colony.close()
    }

    func testATimedOutTaskIsKilledWithItsChild() async throws {
        let node = try startNode(processes: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let first = try await eventually("one child", { children(of: node.processIdentifier) }, until: { $0.count == 1 })
        let result = try await colony.result(of: colony.submit(SleepHandler.name, input: 60.0, options: TaskOptions(timeoutSeconds: 1, pool: .process)))
        XCTAssertEqual(result.error, "timed out after 1 s")
        XCTAssertEqual(result.failure, .timeout)
        for pid in first { XCTAssertFalse(isAlive(pid), "the child running the task was killed") }
        let after = try await colony.result(of: colony.submit(EchoHandler.name, input: "still here", options: TaskOptions(pool: .process)))
        XCTAssertEqual(try after.value(as: String.self), "still here")
        await colony.close()
    }

    /// A command that starts its own children (`sleep &`), timed out: every process it started
    /// dies with it, in the process pool (the child's group is killed) and in the thread pool
    /// (the command's group is killed). Failed before: the background `sleep` lived on.
    func testATimedOutCommandTakesEverythingItStartedWithIt() async throws {
        try startNode(processes: 1, extra: ["--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        for pool in [TaskPool.process, .thread] {
            let pidFile = NSTemporaryDirectory() + "colony-grandchild-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: pidFile) }
            let command = ExecHandler.Input(argv: ["sh", "-c", "sleep 300 & echo $! > \(pidFile); wait"],
                                            timeoutSeconds: pool == .thread ? 1 : nil)
            let options = TaskOptions(timeoutSeconds: pool == .process ? 1 : nil, pool: pool)
            let result = try await colony.result(of: colony.submit(ExecHandler.name, input: command, options: options))
            if pool == .process {
                XCTAssertEqual(result.error, "timed out after 1 s", "the task's timeout kills the child")
            } else {
                XCTAssertEqual(try result.value(as: ExecHandler.Output.self).timedOut, true, "exec's own timeout")
            }
            let grandchild = try await writtenPid(at: pidFile)
            try await eventually("the \(pool) pool's background sleep \(grandchild) is gone") { !isAlive(grandchild) }
        }
        let after = try await colony.result(of: colony.submit(EchoHandler.name, input: "still here", options: TaskOptions(pool: .process)))
        XCTAssertEqual(try after.value(as: String.self), "still here")
        await colony.close()
    }

    func testATaskPastTheMemoryLimitFailsWithTheMemoryReason() async throws {
        try startNode(processes: 1, extra: ["--child-memory-limit", "768M"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let big = try await colony.result(of: colony.submit(AllocateHandler.name, input: 4 << 30))
        XCTAssertFalse(big.succeeded)
        XCTAssertTrue(big.error.contains("memory limit of 805306368 bytes"), big.error)
        XCTAssertEqual(big.failure, .memory)
        let small = try await colony.result(of: colony.submit(AllocateHandler.name, input: 16 << 20))
        XCTAssertEqual(try small.value(as: Int.self), 16 << 20, "the replacement child works")
        await colony.close()
    }

    func testChildrenAreReplacedAfterMaxTasksPerChild() async throws {
        try startNode(processes: 1, extra: ["--max-tasks-per-child", "5", "--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        // The shell's parent is the child that ran the exec task.
        let input = ExecHandler.Input(argv: ["sh", "-c", "echo $PPID"])
        let results = try await colony.mapResults(ExecHandler.name, Array(repeating: input, count: 20))
        let parents = try results.map { try $0.value(as: ExecHandler.Output.self).stdout }
        XCTAssertEqual(Set(parents).count, 4, "20 tasks, 5 per child: 4 children, got \(parents)")
        await colony.close()
    }

    func testKillingTheNodeLeavesNoChildAlive() async throws {
        let node = try startNode(processes: 2, extra: ["--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        try await eventually("two children", { children(of: node.processIdentifier) }, until: { $0.count == 2 })
        // One child busy in a long command (which started a process of its own), one idle:
        // all must go.
        let pidFile = NSTemporaryDirectory() + "colony-orphan-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        _ = try await colony.submit(ExecHandler.name, input: ExecHandler.Input(argv: ["sh", "-c", "sleep 300 & echo $! > \(pidFile); wait"]),
                                    options: TaskOptions(pool: .process))
        let grandchild = try await writtenPid(at: pidFile)
        let kids = children(of: node.processIdentifier)
        XCTAssertEqual(kids.count, 2)
        kill(node.processIdentifier, SIGKILL)
        try await eventually("no child alive", { kids.filter(isAlive) }, until: \.isEmpty)
        try await eventually("the command's own process gone too") { !isAlive(grandchild) }
        await colony.close()
    }
}
