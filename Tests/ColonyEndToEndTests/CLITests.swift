import Foundation
import XCTest

/// The `colony` executable as a user runs it.
final class CLITests: XCTestCase {
    func testUpRunsTheDemoAndPrintsThePrimeCountBelowTwoMillion() throws {
        let port = try ClusterHarness.freePort()
        let run = try ClusterHarness.run(["up", "--listen", "tcp://127.0.0.1:\(port)"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("primes below 2000000: 148933"), run.stdout)
    }

    func testUpWithASmallerLimitCountsTheSeedsExample() throws {
        let port = try ClusterHarness.freePort()
        let run = try ClusterHarness.run(["up", "--listen", "tcp://127.0.0.1:\(port)", "--limit", "100000", "--tasks", "10",
                                          "--metrics-listen", "127.0.0.1:0"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("primes below 100000: 9592"), run.stdout)
        XCTAssertTrue(run.stderr.contains("colony up: dashboard, metrics and API on http://127.0.0.1:"), run.stderr)
    }

    func testABadListenURLPrintsOneClearLineAndFails() throws {
        let run = try ClusterHarness.run(["coordinator", "--listen", "localhost:7411"])
        XCTAssertNotEqual(run.status, 0)
        let lines = run.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("invalid URL 'localhost:7411'"), run.stderr)
    }

    func testAnUnknownSchemeIsNamed() throws {
        let run = try ClusterHarness.run(["coordinator", "--listen", "udp://127.0.0.1:7411"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("unknown scheme 'udp'"), run.stderr)
    }

    func testSubmittingToNothingSaysNothingIsListening() throws {
        let port = try ClusterHarness.freePort()
        let run = try ClusterHarness.run(["submit", "echo", "1", "--coordinator", "tcp://127.0.0.1:\(port)"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("nothing listening at tcp://127.0.0.1:\(port) (connection refused)"), run.stderr)
    }

    func testTheCoordinatorURLComesFromTheEnvironment() throws {
        let port = try ClusterHarness.freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["COLONY_COORDINATOR"] = "tcp://127.0.0.1:\(port)"
        let run = try ClusterHarness.run(["status"], environment: environment)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("tcp://127.0.0.1:\(port)"), run.stderr)
    }

    func testSubmitWaitPrintsTheOutputAndMalformedJSONIsRefused() throws {
        let cluster = try ClusterHarness()
        defer { cluster.stopAll() }
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        try eventuallyBlocking("n1 in colony status", { try ClusterHarness.run(["status", "--coordinator", cluster.url]) },
                               until: { $0.stdout.contains("n1") })

        let primes = try ClusterHarness.run(["submit", "primes", #"{"lo": 0, "hi": 100000}"#, "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(primes.status, 0, primes.stderr)
        XCTAssertEqual(primes.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "9592")

        let malformed = try ClusterHarness.run(["submit", "echo", "{not json", "--coordinator", cluster.url])
        XCTAssertNotEqual(malformed.status, 0)
        XCTAssertTrue(malformed.stderr.contains("input is not valid JSON"), malformed.stderr)

        // A handler no node has: queued, not failed on a node without it; status says so.
        let unknown = try ClusterHarness.run(["submit", "nope", "1", "--coordinator", cluster.url])
        XCTAssertEqual(unknown.status, 0, unknown.stderr)
        let warned = try ClusterHarness.run(["status", "--coordinator", cluster.url])
        XCTAssertTrue(warned.stdout.contains("warning: 1 queued task(s) cannot run anywhere: no node has the handler 'nope'"), warned.stdout)

        let json = try ClusterHarness.run(["status", "--json", "--coordinator", cluster.url])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((object?["nodes"] as? [[String: Any]])?.first?["name"] as? String, "n1")
    }
}
