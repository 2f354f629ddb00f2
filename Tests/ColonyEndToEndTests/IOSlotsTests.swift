import Colony
import ColonyModel
import Foundation
import NNG
import Synchronization
import XCTest

/// The io pool: handlers that wait (`sleep`, `fetch`) hold io slots, not threads, so a node
/// with 2 threads has hundreds of them waiting at once; stops reach them like any task.
final class IOSlotsTests: ClusterTestCase {
    private func startNode(threads: Int, ioSlots: Int) throws {
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "\(threads)", "--processes", "0",
                           "--io-slots", "\(ioSlots)", "--name", "io-node"])
    }

    /// `body`'s value, or a failure once `limit` has passed.
    private func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw CLIFailure("\(what): not within \(limit)") }
            return value
        }
    }

    func testTwoHundredWaitsOverlapOnANodeWithTwoThreads() async throws {
        try cluster.startCoordinator()
        try startNode(threads: 2, ioSlots: 256)
        let colony = try await cluster.connect(waitingForNodes: 1)
        let ids = try await colony.submit((0..<200).map { _ in TaskSubmission(handler: "sleep", input: Array("0.5".utf8)) })
        // Two at a time (on the 2 threads) they would take 50 s; overlapping, about one wait.
        let results = try await within(.seconds(5), "200 sleeps of 0.5 s on a node with 2 threads") {
            try await colony.results(of: ids)
        }
        XCTAssertEqual(results.filter(\.succeeded).count, 200, "\(Set(results.map(\.error)))")
        let node = try await colony.report().nodes.first
        XCTAssertEqual(node?.ioSlots, 256)
        XCTAssertEqual(node?.busyIO, 0, "every io slot is free again")
    }

    /// A node started under a low soft limit of open files (1024 is common) raises it to the
    /// hard limit, so its default 1024 io slots can each hold a socket, and says so when
    /// the hard limit is too low for its io slots.
    func testANodeRaisesItsOpenFilesLimitAndWarnsWhenItsIOSlotsDoNotFit() async throws {
        try cluster.startCoordinator()
        let log = NSTemporaryDirectory() + "colony-nofile-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let colony = ClusterHarness.colonyExecutable.path
        let node = Process()
        node.executableURL = URL(fileURLWithPath: "/bin/sh")
        node.arguments = ["-c", "ulimit -Sn 300 && ulimit -Hn 4096 && exec \"$0\" node --coordinator \"$1\" --threads 1 --processes 0 --name nofile --io-slots 3900 2>\"$2\"",
                          colony, cluster.url, log]
        try node.run()
        defer {
            kill(node.processIdentifier, SIGKILL)
            node.waitUntilExit()
        }
        let client = try await cluster.connect(waitingForNodes: 1)
        await client.close()
        let limits = try String(contentsOfFile: "/proc/\(node.processIdentifier)/limits", encoding: .utf8)
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }.map(String.init) ?? ""
        XCTAssertEqual(line.split(separator: " ", omittingEmptySubsequences: true).suffix(3).prefix(2), ["4096", "4096"], line)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(text.contains("--io-slots 3900 is more than the open files allow (the limit is 4096: ulimit -n): at most 3840 fetches connect at once"), text)
    }

    func testAWaitingFetchInTheIOPoolIsCancelledOrTimedOutAndFreesItsSlot() async throws {
        let server = try HTTPServer(url: "http://127.0.0.1:0")
        let (requests, requestArrived) = AsyncStream<Void>.makeStream()
        let released = Atomic(false)
        try server.route("/slow") { _ in
            requestArrived.yield()
            // Answers after 30 s, or as soon as the test ends (the server's stop waits for it).
            let deadline = ContinuousClock.now + .seconds(30)
            while !released.load(ordering: .acquiring) && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            return HTTPResponse(text: "late")
        }
        try server.route("/fast") { _ in HTTPResponse(text: "fast") }
        try server.start()
        defer {
            released.store(true, ordering: .releasing)
            server.stop()
        }
        let base = "http://127.0.0.1:\(try XCTUnwrap(server.boundPort))"
        try cluster.startCoordinator()
        try startNode(threads: 1, ioSlots: 8)
        let colony = try await cluster.connect(waitingForNodes: 1)

        let cancelled = try await colony.submit("fetch", input: ["url": "\(base)/slow"])
        let timed = try await colony.submit("fetch", input: ["url": "\(base)/slow"], options: TaskOptions(timeoutSeconds: 1))
        var arrivals = requests.makeAsyncIterator()
        for _ in 0..<2 { _ = await arrivals.next() }
        let node = try await colony.report().nodes.first
        XCTAssertEqual(node?.busyIO, 2, "both fetches wait in io slots")
        XCTAssertEqual(node?.busyThreads, 0)
        // The one thread slot is free while they wait.
        let echo = try await colony.submit("echo", rawInput: Array("meanwhile".utf8))
        let echoed = try await within(.seconds(10), "an echo beside two waiting fetches") { try await colony.result(of: echo) }
        XCTAssertEqual(echoed.output, Array("meanwhile".utf8))

        _ = try await colony.cancel([cancelled])
        let stopped = try await within(.seconds(10), "the cancelled fetch") { try await colony.result(of: cancelled) }
        XCTAssertTrue(stopped.cancelled, "\(stopped)")
        let timedOut = try await within(.seconds(10), "the fetch past its task timeout") { try await colony.result(of: timed) }
        XCTAssertEqual(timedOut.failure, .timeout, "\(timedOut)")
        XCTAssertEqual(timedOut.error, "timed out after 1 s")

        // Both slots were given back: the node takes io work again.
        let fast = try await colony.submit("fetch", input: ["url": "\(base)/fast"])
        let answered = try await within(.seconds(10), "a fetch after the stopped ones") { try await colony.result(of: fast) }
        XCTAssertTrue(answered.succeeded, answered.error)
        let after = try await colony.report().nodes.first
        XCTAssertEqual(after?.busyIO, 0)
    }
}
