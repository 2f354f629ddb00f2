import Colony
import ColonyModel
import Foundation
import XCTest

/// A client that waits for work no node can take says so once, instead of waiting in silence.
final class WaitingNoticeTests: ClusterTestCase {
    /// Starts `colony ARGS` with stderr in a file; returns the process and the file's path.
    private func startClient(_ arguments: [String], stdin: String? = nil) throws -> (Process, String) {
        let path = NSTemporaryDirectory() + "colony-notice-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let process = Process()
        process.executableURL = ClusterHarness.colonyExecutable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let input = Pipe()
        process.standardInput = input
        try process.run()
        if let stdin { try input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        return (process, path)
    }

    private func waitForLine(containing text: String, in path: String) async throws -> String {
        let contents = try await eventually(timeout: .seconds(15), "a line with '\(text)' in \(path)", {
            (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        }, until: { $0.split(separator: "\n").contains { $0.contains(text) } })
        return String(contents.split(separator: "\n").first { $0.contains(text) }!)
    }

    func testSubmitWaitWithNoNodeSaysSoOnceAndFinishesWhenANodeComes() async throws {
        try cluster.startCoordinator()
        // The client is started once the coordinator answers: what it says then is the notice.
        try await cluster.connect(waitingForNodes: 0).close()
        let (submit, log) = try startClient(["submit", "--coordinator", cluster.url, "echo", "\"late\"", "--wait"])
        defer { try? FileManager.default.removeItem(atPath: log) }
        _ = try await waitForLine(containing: "no node is connected to \(cluster.url); waiting", in: log)
        try cluster.startNode(name: "n1", threads: 1)
        try await submit.waitForExit(within: .seconds(20), "the submit finishing once a node came")
        XCTAssertEqual(submit.terminationStatus, 0)
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.contains("no node is connected") }.count, 1, "said once")
    }

    func testAMapOfAHandlerNoNodeHasNamesTheHandler() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let probe = try await cluster.connect(waitingForNodes: 1)
        await probe.close()
        let (map, log) = try startClient(["map", "--coordinator", cluster.url, "--handler", "square"], stdin: "7\n")
        defer {
            map.terminate()
            try? FileManager.default.removeItem(atPath: log)
        }
        let line = try await waitForLine(containing: "waiting", in: log)
        XCTAssertTrue(line.contains("no connected node has the handler 'square'"), line)
    }

    func testTheReasonNamesAMissingLabelAndPool() {
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 2, handlers: ["echo"], labels: ["zone": "a"])
        let status = ClusterStatus(nodes: [ClusterStatus.Node(announcement: node, running: 0, completed: 0, failed: 0, lastSeenSecondsAgo: 0)],
                                   queued: 1, running: 0, succeeded: 0, failed: 0, resultsWaiting: 0, staleResultsDropped: 0)
        XCTAssertNil(status.whyNoNodeCanTake(handler: "echo", options: TaskOptions()))
        XCTAssertEqual(status.whyNoNodeCanTake(handler: "echo", options: TaskOptions(requiredLabels: ["gpu": "1"])),
                       "no connected node with the handler 'echo' has the label(s) gpu=1")
        XCTAssertEqual(status.whyNoNodeCanTake(handler: "echo", options: TaskOptions(pool: .process)),
                       "no connected node that can take it has process-pool slots (--pool process)")
    }
}
