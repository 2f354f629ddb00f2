import Colony
import ColonyModel
import Foundation
import XCTest

/// A `colony map` killed mid-run leaves no work running and no results piling up, once its
/// session has not been heard from for the session timeout; detached work stays.
final class AbandonedSessionTests: ClusterTestCase {
    func testAKilledMapsWorkIsCancelledAfterTheSessionTimeoutAndDetachedWorkStays() async throws {
        let log = NSTemporaryDirectory() + "colony-sessions-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--session-timeout", "2"], stderrFile: log)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let colony = try await cluster.connect(waitingForNodes: 1)

        // Detached: `colony submit` without --wait; its result is fetched later, by id.
        let submitted = try ClusterHarness.run(["submit", "--coordinator", cluster.url, "sleep", "0.1"], timeout: .seconds(30))
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let detachedID = try XCTUnwrap(UInt64(submitted.stdout.split(whereSeparator: \.isWhitespace).last { UInt64($0) != nil } ?? ""),
                                       submitted.stdout)

        let map = Process()
        map.executableURL = ClusterHarness.colonyExecutable
        map.arguments = ["map", "--coordinator", cluster.url, "--handler", "sleep"]
        let input = Pipe()
        map.standardInput = input
        map.standardOutput = FileHandle.nullDevice
        map.standardError = FileHandle.nullDevice
        try map.run()
        try input.fileHandleForWriting.write(contentsOf: Data(String(repeating: "0.3\n", count: 200).utf8))
        try input.fileHandleForWriting.close()
        try await eventually("the map started (4 succeeded)", { try await colony.status().succeeded }, until: { $0 >= 4 })
        kill(map.processIdentifier, SIGKILL)
        map.waitUntilExit()
        let during = try await colony.status()
        XCTAssertTrue(during.sessions.contains { !$0.detached && $0.unfinished > 0 }, "status lists the map's session: \(during.sessions)")

        try await eventually("the killed map's work gone (nothing queued or running, no attached session)", {
            let status = try await colony.status()
            return (queued: status.queued, running: status.running, sessions: status.sessions)
        }, until: { $0.queued + $0.running == 0 && !$0.sessions.contains(where: { !$0.detached }) })
        let status = try await colony.status()
        XCTAssertLessThan(status.succeeded, 150, "most of the map's tasks were cancelled, not run")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("session abandoned"), text)

        // The detached task outlived the timeout: its result is still there.
        let result = try ClusterHarness.run(["result", "--coordinator", cluster.url, "\(detachedID)"], timeout: .seconds(30))
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "0.1")
        await colony.close()
    }
}
