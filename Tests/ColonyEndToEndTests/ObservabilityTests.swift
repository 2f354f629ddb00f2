import Colony
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The coordinator's HTTP side (`--metrics-listen`): exact metrics, the JSON API, the
/// dashboard; and `colony status --json` agreeing with them.
final class ObservabilityTests: ClusterTestCase {
    private var http = ""
    /// Enough connections for every long poll at once (URLSession's default is a handful).
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 256
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    private var environment: [String: String] {
        ProcessInfo.processInfo.environment.filter { $0.key != "COLONY_TOKEN" }
    }

    /// A coordinator with `--metrics-listen` on a free port, and one node.
    private func startCluster(token: String? = nil, threads: Int = 2) async throws -> ColonyClient {
        let port = try ClusterHarness.freePort()
        http = "http://127.0.0.1:\(port)"
        var env = environment
        if let token { env["COLONY_TOKEN"] = token }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--metrics-listen", "127.0.0.1:\(port)"], environment: env)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "\(threads)", "--processes", "0", "--name", "n1"], environment: env)
        var options = ColonyClient.Options()
        if let token { options.token = token }
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            if let client = try? ColonyClient(connect: cluster.url, options: options),
               let status = try? await client.status(), status.nodes.count == 1 {
                return client
            }
            guard ContinuousClock.now < deadline else { throw CLIFailure("the cluster did not come up within 20 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func request(_ method: String, _ path: String, body: String? = nil, bodyBytes: Data? = nil,
                         token: String? = nil) async throws -> (status: Int, body: String) {
        try await Self.request(http, method, path, body: body, bodyBytes: bodyBytes, token: token)
    }

    private static func request(_ base: String, _ method: String, _ path: String, body: String? = nil, bodyBytes: Data? = nil,
                                token: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body { request.httpBody = Data(body.utf8) }
        if let bodyBytes { request.httpBody = bodyBytes }
        let (data, response) = try await Self.session.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    private func json(_ text: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw CLIFailure("not a JSON object: \(text)")
        }
        return object
    }

    /// `name{labels} value` lines of a Prometheus scrape.
    private func samples(_ scrape: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in scrape.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    func testAScrapeAfterAKnownWorkloadIsExactAndAgreesWithStatusJSON() async throws {
        let colony = try await startCluster(threads: 2)
        let echoes = try await colony.submit((0..<50).map { TaskSubmission(handler: "echo", input: Array("\($0)".utf8)) })
        let failures = try await colony.submit((0..<10).map { _ in TaskSubmission(handler: "fail", input: Array(#""on purpose""#.utf8)) })
        let results = try await colony.results(of: echoes + failures)
        XCTAssertEqual(results.filter(\.succeeded).count, 50)
        // Two sleepers run (two slots); the other two wait in the queue or sit in the node's
        // prefetch, which the coordinator counts as running (leased to a node).
        let sleepers = try await colony.submit((0..<4).map { _ in TaskSubmission(handler: "sleep", input: Array("60".utf8)) })
        let deadline = ContinuousClock.now + .seconds(20)
        while try await colony.report().running < 2 {
            guard ContinuousClock.now < deadline else { throw CLIFailure("the sleepers did not start") }
            try await Task.sleep(for: .milliseconds(20))
        }

        let scrape = try await request("GET", "/metrics")
        XCTAssertEqual(scrape.status, 200)
        let metrics = samples(scrape.body)
        XCTAssertEqual(metrics["colony_tasks_submitted_total"], 64, scrape.body)
        XCTAssertEqual(metrics[#"colony_tasks_finished_total{outcome="succeeded"}"#], 50)
        XCTAssertEqual(metrics[#"colony_tasks_finished_total{outcome="failed"}"#], 10)
        XCTAssertEqual(metrics[#"colony_tasks_finished_total{outcome="cancelled"}"#], 0)
        XCTAssertEqual(metrics[#"colony_tasks_failed_total{reason="error"}"#], 10)
        XCTAssertGreaterThanOrEqual(metrics[#"colony_tasks{state="running"}"#] ?? 0, 2)
        XCTAssertEqual((metrics[#"colony_tasks{state="running"}"#] ?? 0) + (metrics[#"colony_tasks{state="queued"}"#] ?? 0), 4)
        XCTAssertEqual(metrics[#"colony_tasks{state="waiting"}"#], 0)
        XCTAssertEqual(metrics["colony_nodes_alive"], 1)
        XCTAssertEqual(metrics[#"colony_node_slots{node="n1",pool="thread",state="busy"}"#], 2)
        XCTAssertEqual(metrics["colony_task_run_seconds_count"], 60, "every finished attempt's run time is recorded")
        XCTAssertNotNil(metrics["colony_journal_commits_total"] ?? metrics["colony_task_queue_wait_seconds_count"])

        let cli = try ClusterHarness.run(["status", "--json", "--coordinator", cluster.url], environment: environment)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let status = try json(cli.stdout)
        for (key, metric) in [("submitted", "colony_tasks_submitted_total"),
                              ("succeeded", #"colony_tasks_finished_total{outcome="succeeded"}"#),
                              ("failed", #"colony_tasks_finished_total{outcome="failed"}"#),
                              ("running", #"colony_tasks{state="running"}"#), ("queued", #"colony_tasks{state="queued"}"#)] {
            XCTAssertEqual((status[key] as? NSNumber)?.doubleValue, metrics[metric], key)
        }
        let api = try json(try await request("GET", "/api/v1/status").body)
        XCTAssertEqual(api["submitted"] as? Int, 64)
        XCTAssertEqual((api["failed_by_reason"] as? [String: Int])?["error"], 10)
        XCTAssertEqual((api["recent_failures"] as? [[String: Any]])?.first?["error"] as? String, "on purpose")

        // Cancelling the sleepers keeps the books: submitted = finished + unfinished.
        _ = try await colony.cancel(sleepers)
        let after = samples(try await request("GET", "/metrics").body)
        XCTAssertEqual(after[#"colony_tasks_finished_total{outcome="cancelled"}"#], 4)
        let finished = ["succeeded", "failed", "cancelled"].compactMap { after[#"colony_tasks_finished_total{outcome="\#($0)"}"#] }.reduce(0, +)
        let unfinished = ["waiting", "queued", "running"].compactMap { after[#"colony_tasks{state="\#($0)"}"#] }.reduce(0, +)
        XCTAssertEqual(after["colony_tasks_submitted_total"], finished + unfinished)
        XCTAssertEqual(unfinished, 0)
        await colony.close()
    }

    func testTheHTTPAPISubmitsWaitsCountsAndRefusesClearly() async throws {
        let token = "api-token-42"
        let colony = try await startCluster(token: token)

        let submitted = try await request("POST", "/api/v1/tasks", body: #"{"handler": "echo", "input": "hi there"}"#, token: token)
        XCTAssertEqual(submitted.status, 202, submitted.body)
        let id = try XCTUnwrap((try json(submitted.body)["ids"] as? [Int])?.first)
        let result = try await request("GET", "/api/v1/tasks/\(id)?wait=5", token: token)
        XCTAssertEqual(result.status, 200, result.body)
        let outcome = try json(result.body)
        XCTAssertEqual(outcome["state"] as? String, "succeeded")
        XCTAssertEqual(outcome["output"] as? String, "hi there")

        let batch = try await request("POST", "/api/v1/tasks", body: #"{"tasks": [{"handler": "echo", "input": {"a": 1}}, {"handler": "fail", "input": "\"no\""}]}"#, token: token)
        XCTAssertEqual(batch.status, 202, batch.body)
        let ids = try XCTUnwrap(try json(batch.body)["ids"] as? [Int])
        let first = try json(try await request("GET", "/api/v1/tasks/\(ids[0])?wait=5", token: token).body)
        XCTAssertEqual(first["output"] as? String, #"{"a":1}"#, "a JSON value is sent as its JSON text")
        let second = try json(try await request("GET", "/api/v1/tasks/\(ids[1])?wait=5", token: token).body)
        XCTAssertEqual(second["state"] as? String, "failed")
        XCTAssertEqual(second["error"] as? String, "no")
        let unknownTask = try await request("GET", "/api/v1/tasks/999999", token: token)
        XCTAssertEqual(unknownTask.status, 404, unknownTask.body)

        let added = try await request("POST", "/api/v1/counters/hits", body: #"{"add": 5}"#, token: token)
        XCTAssertEqual(try json(added.body)["value"] as? Int, 5, added.body)
        var withToken = environment
        withToken["COLONY_TOKEN"] = token
        let cli = try ClusterHarness.run(["counter", "get", "hits", "--coordinator", cluster.url], environment: withToken)
        XCTAssertEqual(cli.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5", cli.stderr)
        let swapped = try json(try await request("POST", "/api/v1/counters/hits", body: #"{"expected": 5, "value": 9}"#, token: token).body)
        XCTAssertEqual(swapped["swapped"] as? Bool, true)

        // Refusals: 4xx, one clear message, nothing changed.
        let wrong = try await request("POST", "/api/v1/counters/hits", body: #"{"add": 100}"#, token: "nope")
        XCTAssertEqual(wrong.status, 401)
        XCTAssertTrue(try json(wrong.body)["error"].map { "\($0)" }?.contains("wrong or missing token") == true, wrong.body)
        let missing = try await request("GET", "/api/v1/status")
        XCTAssertEqual(missing.status, 401)
        let metricsWithoutToken = try await request("GET", "/metrics")
        XCTAssertEqual(metricsWithoutToken.status, 401)
        let malformed = try await request("POST", "/api/v1/tasks", body: "{not json", token: token)
        XCTAssertEqual(malformed.status, 400)
        XCTAssertTrue(malformed.body.contains("not valid JSON"), malformed.body)
        let badField = try await request("POST", "/api/v1/tasks", body: #"{"handler": "echo", "inptu": 1}"#, token: token)
        XCTAssertEqual(badField.status, 400)
        XCTAssertTrue(badField.body.contains("unknown field 'inptu'"), badField.body)
        let badHandler = try await request("POST", "/api/v1/tasks", body: #"{"handler": ""}"#, token: token)
        XCTAssertEqual(badHandler.status, 400)
        XCTAssertTrue(badHandler.body.contains("handler name must be"), badHandler.body)
        let oversized = try await request("POST", "/api/v1/tasks", bodyBytes: Data(repeating: 0x20, count: 2 << 20), token: token)
        XCTAssertEqual(oversized.status, 413, oversized.body)
        XCTAssertTrue(oversized.body.contains("over the limit"), oversized.body)
        let notAllowed = try await request("DELETE", "/api/v1/tasks", token: token)
        XCTAssertEqual(notAllowed.status, 405)

        let counter = try await colony.counter("hits").get()
        XCTAssertEqual(counter, 9, "refused requests changed nothing")
        let status = try json(try await request("GET", "/api/v1/status", token: token).body)
        XCTAssertEqual(status["submitted"] as? Int, 3, "refused submits created no task")
        let dashboard = try await request("GET", "/")
        XCTAssertEqual(dashboard.status, 200, "the page itself carries no data and needs no token")
        XCTAssertTrue(dashboard.body.contains("/api/v1/status"))
        await colony.close()
    }

    /// Many long polls at once, each waiting for a task that finishes later: all answered.
    func testManyConcurrentLongPollsAreAnswered() async throws {
        let colony = try await startCluster(threads: 4)
        let ids = try await colony.submit((0..<100).map { _ in TaskSubmission(handler: "sleep", input: Array("0.5".utf8)) })
        let base = http
        let states = try await withThrowingTaskGroup(of: String.self) { group in
            for id in ids {
                group.addTask {
                    let answer = try await Self.request(base, "GET", "/api/v1/tasks/\(id)?wait=30")
                    return (try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])?["state"] as? String ?? answer.body
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        // 100 tasks of 0.5 s on 4 slots take ~12.5 s; waits are capped at the long-poll limit
        // (5 s), so the late ones answer "unfinished" and the rest "succeeded". Every poll got
        // an answer, none failed.
        XCTAssertEqual(states.count, 100)
        XCTAssertTrue(states.allSatisfy { $0 == "succeeded" || $0 == "unfinished" }, "\(Set(states))")
        XCTAssertGreaterThan(states.filter { $0 == "succeeded" }.count, 0)
        await colony.close()
    }
}
