import Foundation
import XCTest

extension XCTestCase {
    /// Runs `colony map -- sh -c 'echo {}'` over `count` inputs on `cluster` (a coordinator
    /// with `stateDirectory` and a node with process slots already running), kills the
    /// coordinator with SIGKILL once `killAfter` outputs are printed, starts it again on the
    /// same state (after `downFor`), and checks that the map still prints every output once,
    /// in input order.
    func checkMapRidesThroughACoordinatorRestart(_ cluster: ClusterHarness, coordinator: Process, stateDirectory: String,
                                                 count: Int, killAfter: Int, downFor: Duration = .zero) async throws {
        let outputPath = stateDirectory + "-map.out"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let map = Process()
        map.executableURL = ClusterHarness.colonyExecutable
        map.arguments = ["map", "--coordinator", cluster.url, "--", "sh", "-c", "echo {}"]
        let input = Pipe()
        map.standardInput = input
        map.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        map.standardError = FileHandle.nullDevice
        try map.run()
        try input.fileHandleForWriting.write(contentsOf: Data((1...count).map(String.init).joined(separator: "\n").utf8 + [10]))
        try input.fileHandleForWriting.close()

        // Kill the coordinator once some outputs are out, then start it again on the same state.
        let printed = { (try? String(contentsOfFile: outputPath, encoding: .utf8))?.split(separator: "\n").count ?? 0 }
        try await eventually(timeout: .seconds(60), "\(killAfter) outputs printed (or the map ended)", { (printed: printed(), running: map.isRunning) },
                             until: { $0.printed >= killAfter || !$0.running })
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        let printedAtCrash = printed()
        // The fault window: clients and the node meet a coordinator that is not there.
        if downFor > .zero { try await Task.sleep(for: downFor) }
        try cluster.startCoordinator(stateDirectory: stateDirectory)
        do {
            try await map.waitForExit(within: .seconds(120), "colony map finishing after the restart")
        } catch {
            map.terminate()
            throw error
        }
        XCTAssertEqual(map.terminationStatus, 0)
        XCTAssertLessThan(printedAtCrash, count, "the crash came mid-run")
        let lines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, (1...count).map(String.init), "every output once, in input order")
    }
}
