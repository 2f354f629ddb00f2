import Colony
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// Jobs through the real CLI: a detached map outlives its client and its session, and any new
/// client waits for it and reads its outputs in input order; cancel, forget, unknown ids; and
/// jobs across a coordinator killed with SIGKILL.
final class JobTests: ClusterTestCase {
    private static let session = URLSession(configuration: .ephemeral)

    /// Inputs of the `sleep` handler (its output is its input): distinct, so order shows.
    private let inputs = ["0.3", "0.01", "0.2", "0.02", "0.25", "0.03", "0.15", "0.04", "0.1", "0.05"]

    private func colony(_ arguments: [String], stdin: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let stdin else { return try ClusterHarness.run(arguments, timeout: .seconds(60)) }
        let file = NSTemporaryDirectory() + "colony-job-inputs-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try stdin.write(toFile: file, atomically: true, encoding: .utf8)
        return try ClusterHarness.run(arguments + ["--inputs", file], timeout: .seconds(60))
    }

    private func detachedMap(_ extra: [String] = [], inputs: [String]) throws -> String {
        let map = try colony(["map", "--coordinator", cluster.url, "--detach", "--handler", "sleep"] + extra,
                             stdin: inputs.joined(separator: "\n") + "\n")
        XCTAssertEqual(map.status, 0, map.stderr)
        let id = map.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(UInt64(id), "map --detach prints the job id: \(map.stdout)")
        return id
    }

    func testADetachedMapOutlivesItsClientAndANewClientReadsItInInputOrder() async throws {
        // A session timeout shorter than the job: without detachment its tasks would be cancelled.
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--session-timeout", "1"])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let watcher = try await cluster.connect(waitingForNodes: 1)
        let id = try detachedMap(inputs: inputs)
        // The map's client is gone; a new one streams the results as they arrive.
        let results = try colony(["job", "results", "--coordinator", cluster.url, id])
        XCTAssertEqual(results.status, 0, results.stderr)
        XCTAssertEqual(results.stdout.split(separator: "\n").map(String.init), inputs)
        let waited = try colony(["job", "wait", "--coordinator", cluster.url, id])
        XCTAssertEqual(waited.status, 0, waited.stdout + waited.stderr)
        XCTAssertTrue(waited.stdout.contains(": succeeded (detached), 10 of 10 finished"), waited.stdout)
        // Reading takes nothing away: a second reader gets them again.
        let again = try colony(["job", "results", "--coordinator", cluster.url, id])
        XCTAssertEqual(again.stdout.split(separator: "\n").map(String.init), inputs)
        let list = try colony(["job", "list", "--coordinator", cluster.url])
        XCTAssertTrue(list.stdout.contains("\(id)\t-\tsucceeded\t10/10\t0"), list.stdout)
        let status = try await watcher.status()
        XCTAssertEqual(status.cancelled, 0, "the session timeout cancelled nothing")
        XCTAssertEqual(status.jobs.first?.id, UInt64(id))
        await watcher.close()
    }

    func testCancelForgetFailuresAndUnknownJobs() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let watcher = try await cluster.connect(waitingForNodes: 1)
        _ = try detachedMap(["--job", "nightly"], inputs: Array(repeating: "5", count: 4))
        try await eventually("the job 'nightly' running") { try await watcher.job("nightly").counts.running > 0 }
        let running = try colony(["job", "forget", "--coordinator", cluster.url, "nightly"])
        XCTAssertNotEqual(running.status, 0, "a running job is not forgotten")
        let cancel = try colony(["job", "cancel", "--coordinator", cluster.url, "nightly"])
        XCTAssertEqual(cancel.status, 0, cancel.stderr)
        XCTAssertTrue(cancel.stdout.contains("cancelled 4 task(s)"), cancel.stdout)
        let status = try colony(["job", "status", "--coordinator", cluster.url, "nightly"])
        XCTAssertTrue(status.stdout.contains("'nightly': cancelled"), status.stdout)
        let freed = try colony(["job", "results", "--coordinator", cluster.url, "nightly"])
        XCTAssertNotEqual(freed.status, 0)
        XCTAssertTrue(freed.stderr.contains("its results were freed"), freed.stderr)
        XCTAssertEqual(try colony(["job", "forget", "--coordinator", cluster.url, "nightly"]).status, 0)

        for unknown in ["nightly", "999"] {
            let gone = try colony(["job", "status", "--coordinator", cluster.url, unknown])
            XCTAssertNotEqual(gone.status, 0)
            XCTAssertEqual(gone.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1, gone.stderr)
            XCTAssertTrue(gone.stderr.contains("not known"), gone.stderr)
        }

        let failing = try colony(["submit", "--coordinator", cluster.url, "--detach", "fail", "\"broken on purpose\""])
        XCTAssertEqual(failing.status, 0, failing.stderr)
        let failingJob = failing.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let waited = try colony(["job", "wait", "--coordinator", cluster.url, failingJob])
        XCTAssertNotEqual(waited.status, 0, "a failed task fails the wait")
        XCTAssertTrue(waited.stdout.contains("failed (error): "), waited.stdout)
        await watcher.close()
    }

    func testJobsSurviveACoordinatorKilledWithSIGKILL() async throws {
        let stateDirectory = NSTemporaryDirectory() + "colony-jobs-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: stateDirectory) }
        let coordinator = try cluster.startCoordinator(stateDirectory: stateDirectory)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let before = try await cluster.connect(waitingForNodes: 1)
        let id = try detachedMap(["--job", "durable"], inputs: inputs)
        try await eventually("3 tasks of the job done") { try await before.job(id).counts.succeeded >= 3 }
        await before.close()
        kill(coordinator.processIdentifier, SIGKILL)
        coordinator.waitUntilExit()
        try cluster.startCoordinator(stateDirectory: stateDirectory)
        let after = try await cluster.connect(waitingForNodes: 1)
        let status = try colony(["job", "status", "--coordinator", cluster.url, "durable"])
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.hasPrefix("job \(id) 'durable': "), status.stdout)
        let results = try colony(["job", "results", "--coordinator", cluster.url, id])
        XCTAssertEqual(results.status, 0, results.stderr)
        XCTAssertEqual(results.stdout.split(separator: "\n").map(String.init), inputs)
        let info = try await after.job(id)
        XCTAssertEqual(info.counts.total, inputs.count)
        XCTAssertEqual(info.state, .succeeded)
        await after.close()
    }

    func testTheHTTPAPIAndTheMetricsShowJobs() async throws {
        let port = try ClusterHarness.freePort()
        let http = "http://127.0.0.1:\(port)"
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--metrics-listen", "127.0.0.1:\(port)"])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"])
        let watcher = try await cluster.connect(waitingForNodes: 1)
        let id = try detachedMap(["--job", "web"], inputs: ["0.01", "0.02"])
        _ = try await watcher.wait(forJob: id)
        func get(_ path: String, method: String = "GET") async throws -> (status: Int, body: String) {
            var request = URLRequest(url: URL(string: http + path)!)
            request.httpMethod = method
            request.timeoutInterval = 30
            let (data, response) = try await Self.session.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        }
        let list = try await get("/api/v1/jobs")
        XCTAssertEqual(list.status, 200, list.body)
        XCTAssertTrue(list.body.contains("\"name\":\"web\""), list.body)
        let one = try await get("/api/v1/jobs/web")
        XCTAssertTrue(one.body.contains("\"state\":\"succeeded\"") && one.body.contains("\"succeeded\":2"), one.body)
        let results = try await get("/api/v1/jobs/\(id)/results?from=1")
        XCTAssertTrue(results.body.contains("\"output\":\"0.02\"") && !results.body.contains("0.01"), results.body)
        let unknown = try await get("/api/v1/jobs/nope")
        XCTAssertEqual(unknown.status, 404, "an unknown job is not found")
        let report = try await get("/api/v1/status")
        XCTAssertTrue(report.body.contains("\"jobs\":[{\"age_s\":"), "the dashboard's source: \(report.body)")
        let dashboard = try await get("/")
        XCTAssertTrue(dashboard.body.contains("<table id=\"jobs\">"))
        let top = try colony(["top", "--coordinator", cluster.url, "--once"])
        XCTAssertTrue(top.stdout.contains("JOBS      \(id) web succeeded 2/2"), top.stdout)
        let status = try colony(["status", "--coordinator", cluster.url])
        XCTAssertTrue(status.stdout.contains("web"), status.stdout)
        let metrics = try await get("/metrics")
        XCTAssertTrue(metrics.body.contains("colony_jobs{state=\"succeeded\"} 1"), metrics.body)
        let forgotten = try await get("/api/v1/jobs/web", method: "DELETE")
        XCTAssertEqual(forgotten.status, 200, forgotten.body)
        let gone = try await get("/api/v1/jobs/web")
        XCTAssertEqual(gone.status, 404)
        await watcher.close()
    }
}
