import Colony
import Foundation
import XCTest

/// `colony job logs`: the live output of a job's tasks, all or one.
final class JobLogsTests: ClusterTestCase {
    func testAJobsLogsAreItsTasksOutputAndOneTaskCanBeChosen() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "1", "--allow-exec"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let input = Pipe()
        let map = Process()
        map.executableURL = ClusterHarness.colonyExecutable
        map.arguments = ["map", "--coordinator", cluster.url, "--detach", "--job", "logged", "--", "sh", "-c", "echo out-{}; echo err-{} >&2"]
        map.standardInput = input
        map.standardOutput = FileHandle.nullDevice
        try map.run()
        input.fileHandleForWriting.write(Data("a\nb\n".utf8))
        try input.fileHandleForWriting.close()
        map.waitUntilExit()
        XCTAssertEqual(map.terminationStatus, 0)
        let waited = try ClusterHarness.run(["job", "wait", "logged", "--coordinator", cluster.url], timeout: .seconds(60))
        XCTAssertEqual(waited.status, 0, waited.stderr)

        let all = try ClusterHarness.run(["job", "logs", "logged", "--coordinator", cluster.url], timeout: .seconds(30))
        XCTAssertEqual(all.status, 0, all.stderr)
        let lines = all.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.filter { !$0.hasPrefix("==> task ") }, ["out-a", "out-b"], "stdout of every task, in input order: \(lines)")
        XCTAssertEqual(lines.filter { $0.hasPrefix("==> task ") }.count, 2, "a header per task, as colony logs prints them")
        XCTAssertEqual(all.stderr, "err-a\nerr-b\n")
        let second = try ClusterHarness.run(["job", "logs", "logged", "--task", "1", "--stream", "stdout", "--coordinator", cluster.url],
                                            timeout: .seconds(30))
        XCTAssertEqual(second.stdout, "out-b\n")
        let beyond = try ClusterHarness.run(["job", "logs", "logged", "--task", "5", "--coordinator", cluster.url], timeout: .seconds(30))
        XCTAssertNotEqual(beyond.status, 0)
        XCTAssertTrue(beyond.stderr.contains("--task must be 0 to 1, not 5"), beyond.stderr)
        let unknown = try ClusterHarness.run(["job", "logs", "nope", "--coordinator", cluster.url], timeout: .seconds(30))
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertEqual(unknown.stderr.split(separator: "\n").count, 1, unknown.stderr)
        await colony.close()
    }
}
