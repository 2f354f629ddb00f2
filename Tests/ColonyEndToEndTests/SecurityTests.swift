import Colony
import Foundation
import XCTest

/// The shared token: required beyond loopback, checked on every request, refused with one
/// clear line and no state change.
final class SecurityTests: ClusterTestCase {
    private var environment: [String: String] {
        ProcessInfo.processInfo.environment.filter { $0.key != "COLONY_TOKEN" }
    }

    /// A client with `token`, once the coordinator listens.
    private func client(token: String) async throws -> ColonyClient {
        var options = ColonyClient.Options()
        options.token = token
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                return try ColonyClient(connect: cluster.url, options: options)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    func testEveryRequestMustCarryTheTokenAndAWrongOneChangesNothing() async throws {
        var withToken = environment
        withToken["COLONY_TOKEN"] = "s3cret-token"
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"], environment: withToken)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"], environment: withToken)
        // `connect` polls status without a token until the node joined: wait with one instead.
        let good = try await client(token: "s3cret-token")
        let deadline = ContinuousClock.now + .seconds(20)
        while (try? await good.status().nodes.count) ?? 0 < 1 {
            guard ContinuousClock.now < deadline else { throw CLIFailure("the node (with the token) did not join") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let added = try await good.counter("c").add(1)
        XCTAssertEqual(added, 1)
        let echoed = try await good.run("echo", input: "hi", as: String.self)
        XCTAssertEqual(echoed, "hi", "the node's pulls carry the token")

        for token in ["wrong", ""] {
            let bad = try await client(token: token)
            do {
                _ = try await bad.counter("c").add(100)
                XCTFail("a request with token '\(token)' was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains("wrong or missing token"), "\(error)")
            }
            do {
                _ = try await bad.submit("echo", input: "sneaky")
                XCTFail("a submit with token '\(token)' was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains("wrong or missing token"), "\(error)")
            }
            await bad.close()
        }
        let counter = try await good.counter("c").get()
        XCTAssertEqual(counter, 1, "refused requests changed nothing")
        let status = try await good.status()
        XCTAssertEqual(status.succeeded, 1, "no refused task was queued")
        await good.close()

        var wrong = environment
        wrong["COLONY_TOKEN"] = "nope"
        let run = try ClusterHarness.run(["counter", "get", "c", "--coordinator", cluster.url], environment: wrong)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("wrong or missing token"), run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
    }

    func testACoordinatorBeyondLoopbackRefusesToStartWithoutAToken() throws {
        let port = try ClusterHarness.freePort()
        let run = try ClusterHarness.run(["coordinator", "--listen", "tcp://0.0.0.0:\(port)", "--state", ":memory:"],
                                         environment: environment, timeout: .seconds(30))
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("needs a shared token"), run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
    }

    func testATokenFileWorksForTheCoordinatorAndTheClients() async throws {
        let file = NSTemporaryDirectory() + "colony-token-\(UUID().uuidString)"
        try "from-a-file\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let port = try ClusterHarness.freePort()
        try cluster.start(["coordinator", "--listen", "tcp://0.0.0.0:\(port)", "--state", ":memory:", "--token-file", file],
                          environment: environment)
        let url = "tcp://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(20)
        var run = try ClusterHarness.run(["counter", "add", "f", "2", "--coordinator", url, "--token-file", file], environment: environment)
        while run.status != 0 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            run = try ClusterHarness.run(["counter", "add", "f", "2", "--coordinator", url, "--token-file", file], environment: environment)
        }
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "2")
        let missing = try ClusterHarness.run(["counter", "get", "f", "--coordinator", url, "--token-file", "/nonexistent/token"],
                                             environment: environment)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("cannot read the token file /nonexistent/token"), missing.stderr)
    }
}
