import Colony
import ColonyModel
import ColonyNode
import Foundation
import XCTest

/// A coordinator's state folder under faults: a second coordinator on it, a full disk, a
/// journal whose WAL was deleted after a crash. Real processes, a real tmpfs.
final class StateFolderFaultTests: ClusterTestCase {
    private var stateDirectory: String!
    private var mountPoint: String?

    override func setUpWithError() throws {
        try super.setUpWithError()
        stateDirectory = NSTemporaryDirectory() + "colony-faults-\(UUID().uuidString)"
    }

    override func tearDown() {
        super.tearDown()
        if let mountPoint {
            _ = try? ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/umount"), [mountPoint], timeout: .seconds(30))
            try? FileManager.default.removeItem(atPath: mountPoint)
        }
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    private func echoTask(_ text: String) -> TaskSubmission {
        TaskSubmission(handler: EchoHandler.name, input: Array((try? JSONEncoder().encode(text)) ?? Data()))
    }

    private func waitForExit(_ process: Process, within seconds: Int = 20) async throws {
        try await process.waitForExit(within: .seconds(seconds), "process \(process.processIdentifier) exiting")
    }

    func testASecondCoordinatorOnTheSameStateFolderRefusesToStartNamingThePid() async throws {
        let first = try cluster.startCoordinator(stateDirectory: stateDirectory)
        let colony = try await cluster.connect(waitingForNodes: 0)
        _ = try await colony.submit([echoTask("first")])
        _ = try await colony.counter("c").add(5)
        await colony.close()

        let otherURL = "tcp://127.0.0.1:\(try ClusterHarness.freePort())"
        let second = try ClusterHarness.run(["coordinator", "--listen", otherURL, "--state", stateDirectory], timeout: .seconds(30))
        XCTAssertNotEqual(second.status, 0, "a second coordinator on the folder must not run")
        XCTAssertEqual(second.stderr.split(separator: "\n").count, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains(stateDirectory), second.stderr)
        XCTAssertTrue(second.stderr.contains("pid \(first.processIdentifier)"), second.stderr)

        // Deleting the pid file does not open the folder to a second coordinator.
        try FileManager.default.removeItem(atPath: stateDirectory + "/colony.lock")
        let third = try ClusterHarness.run(["coordinator", "--listen", otherURL, "--state", stateDirectory], timeout: .seconds(30))
        XCTAssertNotEqual(third.status, 0, "the lock is on the folder, not on a file that can be deleted")

        // kill -9 releases the lock: a restart after a crash is never blocked.
        kill(first.processIdentifier, SIGKILL)
        try await waitForExit(first)
        try cluster.startCoordinator(stateDirectory: stateDirectory)
        let again = try await cluster.connect(waitingForNodes: 0)
        let counter = try await again.counter("c").get()
        XCTAssertEqual(counter, 5)
        let status = try await again.status()
        XCTAssertEqual(status.queued, 1, "the first coordinator's task is still there")
        await again.close()
    }

    func testADeletedWALAfterACrashIsRefusedUntilTheLossIsAccepted() async throws {
        let coordinator = try cluster.startCoordinator(stateDirectory: stateDirectory)
        let colony = try await cluster.connect(waitingForNodes: 0)
        var before: [UInt64] = []
        for index in 0..<20 { before += try await colony.submit([echoTask("task \(index)")]) }
        _ = try await colony.counter("c").add(7)
        await colony.close()
        kill(coordinator.processIdentifier, SIGKILL)
        try await waitForExit(coordinator)
        let wal = stateDirectory + "/colony.db-wal"
        XCTAssertTrue(FileManager.default.fileExists(atPath: wal), "the crash leaves the WAL with the commits in it")
        try FileManager.default.removeItem(atPath: wal)

        let refused = try ClusterHarness.run(["coordinator", "--listen", cluster.url, "--state", stateDirectory], timeout: .seconds(30))
        XCTAssertNotEqual(refused.status, 0, "a journal that lost history must not start silently")
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("lost committed history"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--accept-journal-loss"), refused.stderr)

        try cluster.start(["coordinator", "--listen", cluster.url, "--state", stateDirectory, "--accept-journal-loss"])
        let accepted = try await cluster.connect(waitingForNodes: 0)
        let status = try await accepted.status()
        XCTAssertLessThan(status.queued, 20, "it runs with what the journal held")
        // Ids handed out before the loss are not handed out again: clients may still hold them.
        let after = try await accepted.submit([echoTask("after the loss")])
        XCTAssertGreaterThan(after[0], before.max() ?? 0)
        await accepted.close()
    }

    /// A full disk refuses the changes of the failed commit and those after it (in memory
    /// and on disk), reads go on, and writes come back by themselves once there is room.
    func testAFullDiskRefusesChangesKeepsReadsAndRecoversByItself() async throws {
        guard geteuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let mountPoint = NSTemporaryDirectory() + "colony-tmpfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/mount"),
                                           ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint], timeout: .seconds(30))
        guard mount.status == 0 else {
            try? FileManager.default.removeItem(atPath: mountPoint)
            throw XCTSkip("cannot mount a tmpfs here: \(mount.stderr)")
        }
        self.mountPoint = mountPoint
        let state = mountPoint + "/state"
        let log = stateDirectory + ".log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        var coordinator = try cluster.start(["coordinator", "--listen", cluster.url, "--state", state], stderrFile: log)
        let probe = try await cluster.connect(waitingForNodes: 0)
        await probe.close()
        // A client asks again while the coordinator answers UNAVAILABLE, up to its patience:
        // a short one here, so that a refusal comes back within the test.
        var options = ColonyClient.Options()
        options.patience = .seconds(1)
        var colony = try ColonyClient(connect: cluster.url, options: options)
        _ = try await colony.counter("c").add(3)

        // No node: every accepted task stays queued, so the journal only grows.
        let big = String(repeating: "x", count: 100_000)
        var accepted = 0
        var refusal: String?
        for index in 0..<100 {
            do {
                _ = try await colony.submit([echoTask("\(index) \(big)")])
                accepted += 1
            } catch {
                refusal = "\(error)"
                break
            }
        }
        XCTAssertNotNil(refusal, "the 2 MiB disk fills up")
        XCTAssertTrue(refusal?.contains("journal") == true, refusal ?? "")
        XCTAssertTrue(refusal?.contains("for now") == true, "a refusal the client may retry: \(refusal ?? "")")
        var refused = 1
        for index in 0..<3 {
            do {
                _ = try await colony.submit([echoTask("more \(index) \(big)")])
                accepted += 1
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, 1, "the disk is still full")
        // A small change may fit once the probe finds room again; whatever happens, the
        // counter holds exactly the acknowledged changes.
        var expectedCounter: Int64 = 3
        if (try? await colony.counter("c").add(100)) != nil { expectedCounter += 100 }

        // Reads go on, and show nothing refused.
        let status = try await colony.status()
        XCTAssertEqual(status.queued, accepted, "refused tasks are not in memory")
        let counter = try await colony.counter("c").get()
        XCTAssertEqual(counter, expectedCounter)

        // A map started now rides through: its submits are refused for now and asked again.
        let mapOutput = stateDirectory + ".map.out"
        let mapErrors = stateDirectory + ".map.err"
        _ = FileManager.default.createFile(atPath: mapOutput, contents: nil)
        _ = FileManager.default.createFile(atPath: mapErrors, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: mapOutput)
            try? FileManager.default.removeItem(atPath: mapErrors)
        }
        let map = Process()
        map.executableURL = ClusterHarness.colonyExecutable
        map.arguments = ["map", "--coordinator", cluster.url, "--handler", "echo"]
        let mapInput = Pipe()
        map.standardInput = mapInput
        map.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: mapOutput))
        map.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: mapErrors))
        try map.run()
        try mapInput.fileHandleForWriting.write(contentsOf: Data((0..<3).map { "\"\($0) \(big)\"\n" }.joined().utf8))
        try mapInput.fileHandleForWriting.close()
        let told = try await eventually(poll: .milliseconds(50), "the map saying it waits (or ending)", {
            (errors: (try? String(contentsOfFile: mapErrors, encoding: .utf8)) ?? "", running: map.isRunning)
        }, until: { $0.errors.contains("takes no changes for now") || !$0.running })
        guard told.errors.contains("takes no changes for now") else { throw CLIFailure("the map did not say it waits: \(told.errors)") }

        // Room again: writes come back by themselves.
        let grow = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/mount"),
                                          ["-o", "remount,size=64m", mountPoint], timeout: .seconds(30))
        XCTAssertEqual(grow.status, 0, grow.stderr)
        try await eventually(poll: .milliseconds(100), "writes accepted again", { () -> Result<Void, any Error> in
            do {
                _ = try await colony.submit([echoTask("after")])
                return .success(())
            } catch {
                return .failure(error)
            }
        }, until: { if case .success = $0 { true } else { false } })
        accepted += 1
        await colony.close()
        // Its submits went through once there was room (no node here: they stay queued), and
        // it did not give up meanwhile.
        let reader = try await cluster.connect(waitingForNodes: 0)
        let arrived = try await eventually(timeout: .seconds(30), poll: .milliseconds(50), "the map's tasks queued once the disk had room (or the map ending)", {
            (queued: try await reader.status().queued, running: map.isRunning)
        }, until: { $0.queued >= accepted + 3 || !$0.running })
        await reader.close()
        guard arrived.queued >= accepted + 3 else {
            throw CLIFailure("the map's tasks did not arrive once the disk had room: \((try? String(contentsOfFile: mapErrors, encoding: .utf8)) ?? "")")
        }
        XCTAssertTrue(map.isRunning, "the map waits for its results, it did not give up")
        map.terminate()
        map.waitUntilExit()
        accepted += 3

        // After a crash, exactly the accepted tasks come back: none of the refused ones.
        kill(coordinator.processIdentifier, SIGKILL)
        try await waitForExit(coordinator)
        coordinator = try cluster.start(["coordinator", "--listen", cluster.url, "--state", state])
        colony = try await cluster.connect(waitingForNodes: 0)
        let restarted = try await colony.status()
        XCTAssertEqual(restarted.queued, accepted, "a refused change never reaches the disk")
        let counterAfter = try await colony.counter("c").get()
        XCTAssertEqual(counterAfter, expectedCounter)
        await colony.close()

        let logged = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(logged.contains("journal write failed"), logged)
        XCTAssertTrue(logged.contains("full"), "the log names the cause: \(logged)")
        XCTAssertTrue(logged.contains("journal writable again"), logged)
    }
}
