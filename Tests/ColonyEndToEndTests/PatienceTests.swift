import Colony
import ColonyModel
import Foundation
import XCTest

/// How long a client keeps trying a coordinator that does not answer: one setting
/// (`--patience`, `COLONY_PATIENCE`), and a map that gives up leaves no work behind.
final class PatienceTests: ClusterTestCase {
    func testTheDefaultPatienceRidesThroughAMinute() {
        XCTAssertGreaterThanOrEqual(ColonyClient.Options().patience, .seconds(60))
    }

    func testAMapThatGivesUpSaysSoInOneLineAndItsTasksCanBeCancelledBySession() async throws {
        let coordinator = try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let probe = try await cluster.connect(waitingForNodes: 1)

        let map = Process()
        map.executableURL = ClusterHarness.colonyExecutable
        map.arguments = ["map", "--coordinator", cluster.url, "--handler", "sleep"]
        map.environment = ProcessInfo.processInfo.environment.merging(["COLONY_PATIENCE": "2"]) { $1 }
        let input = Pipe()
        let errors = Pipe()
        map.standardInput = input
        map.standardOutput = FileHandle.nullDevice
        map.standardError = errors
        try map.run()
        try input.fileHandleForWriting.write(contentsOf: Data(String(repeating: "0.2\n", count: 100).utf8))
        try input.fileHandleForWriting.close()
        try await eventually("the map started (3 succeeded)", { try await probe.status().succeeded }, until: { $0 >= 3 })
        await probe.close()

        kill(coordinator.processIdentifier, SIGSTOP)
        do {
            try await map.waitForExit(within: .seconds(30), "the map giving up with a patience of 2 s")
        } catch {
            kill(coordinator.processIdentifier, SIGCONT)
            map.terminate()
            throw error
        }
        kill(coordinator.processIdentifier, SIGCONT)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(map.terminationStatus, 1, stderr)
        let lines = stderr.split(separator: "\n").filter { !$0.hasPrefix("progress") }
        XCTAssertEqual(lines.count, 1, stderr)
        XCTAssertTrue(stderr.contains("within 2 s"), stderr)

        // The tasks it left: cancelled by it, or by session as its line says.
        let colony = try await cluster.connect(waitingForNodes: 0)
        if let range = stderr.range(of: "colony cancel --session ") {
            let session = String(stderr[range.upperBound...].prefix { $0 != "'" && !$0.isWhitespace })
            let run = try ClusterHarness.run(["cancel", "--coordinator", cluster.url, "--session", session], timeout: .seconds(30))
            XCTAssertEqual(run.status, 0, run.stderr)
        } else {
            XCTAssertTrue(stderr.contains("cancelled its"), stderr)
        }
        try await eventually(timeout: .seconds(10), "no task left queued or running", {
            let status = try await colony.status()
            return (queued: status.queued, running: status.running)
        }, until: { $0.queued + $0.running == 0 })
        let status = try await colony.status()
        XCTAssertLessThan(status.succeeded, 100, "the map's remaining tasks were cancelled, not run")
        await colony.close()
    }

    func testANonsensePatienceIsRefusedInOneLine() throws {
        for value in ["inf", "nan", "0", "-1", "1e300"] {
            let run = try ClusterHarness.run(["status", "--coordinator", cluster.url, "--patience", value], timeout: .seconds(30))
            XCTAssertNotEqual(run.status, 0, value)
            XCTAssertTrue(run.stderr.contains("--patience"), run.stderr)
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        }
    }
}
