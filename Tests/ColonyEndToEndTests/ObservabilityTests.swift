import Colony
import ColonyModel
import ColonyCoordinator
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
    private func startCluster(token: String? = nil, threads: Int = 2, state: String = ":memory:", coordinatorArguments: [String] = [],
                              coordinatorLog: String? = nil) async throws -> ColonyClient {
        let port = try ClusterHarness.freePort()
        http = "http://127.0.0.1:\(port)"
        var env = environment
        if let token { env["COLONY_TOKEN"] = token }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", state, "--metrics-listen", "127.0.0.1:\(port)"]
                          + coordinatorArguments, environment: env, stderrFile: coordinatorLog)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "\(threads)", "--processes", "0", "--name", "n1"], environment: env)
        var options = ColonyClient.Options()
        if let token { options.token = token }
        return try await eventually(poll: .milliseconds(50), "the cluster up (a client connected, one node joined)", firstOf: {
            if let client = try? ColonyClient(connect: cluster.url, options: options),
               let status = try? await client.status(), status.nodes.count == 1 {
                return client
            }
            return nil
        })
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
        let stateFolder = NSTemporaryDirectory() + "colony-metrics-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: stateFolder) }
        let colony = try await startCluster(threads: 2, state: stateFolder)
        let echoes = try await colony.submit((0..<50).map { TaskSubmission(handler: "echo", input: Array("\($0)".utf8)) })
        let failures = try await colony.submit((0..<10).map { _ in TaskSubmission(handler: "fail", input: Array(#""on purpose""#.utf8)) })
        let results = try await colony.results(of: echoes + failures)
        XCTAssertEqual(results.filter(\.succeeded).count, 50)
        // Two sleepers run (two slots); the other two wait in the coordinator's queue (a node
        // that prefetched them hands them back once they wait 50 ms without a slot).
        let sleepers = try await colony.submit((0..<4).map { _ in TaskSubmission(handler: "sleep", input: Array("60".utf8)) })
        try await eventually("two sleepers running and two queued", {
            let report = try await colony.report()
            return (running: report.running, queued: report.queued)
        }, until: { $0.running == 2 && $0.queued == 2 })

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
        // The node's own figures, pushed on its pulls: its memory is real, it has no children.
        XCTAssertGreaterThan(metrics[#"colony_node_rss_bytes{node="n1",process="node"}"#] ?? 0, 1_048_576, "the node reports its RSS")
        XCTAssertEqual(metrics[#"colony_node_children_started{node="n1"}"#], 0, "--processes 0")
        XCTAssertGreaterThanOrEqual(metrics["colony_tasks_dispatched_total"] ?? 0, 62, "60 finished + at least 2 started")
        XCTAssertEqual(metrics[#"colony_queue_depth{priority="0"}"#] ?? 0, metrics[#"colony_tasks{state="queued"}"#] ?? -1)
        XCTAssertEqual(metrics[#"colony_node_slots{node="n1",pool="thread",state="busy"}"#], 2)
        XCTAssertEqual(metrics["colony_task_run_seconds_count"], 60, "every finished attempt's run time is recorded")
        XCTAssertGreaterThanOrEqual(metrics["colony_task_queue_wait_seconds_count"] ?? 0, 62, "a queue wait per first start")
        XCTAssertGreaterThan(metrics["colony_journal_commits_total"] ?? 0, 0, "the journal's group commits")
        XCTAssertGreaterThanOrEqual(metrics["colony_journal_records_total"] ?? 0, 64, "at least one record per submitted task")

        let cli = try ClusterHarness.run(["status", "--json", "--coordinator", cluster.url], environment: environment)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let status = try json(cli.stdout)
        for (key, metric) in [("submitted", "colony_tasks_submitted_total"),
                              ("succeeded", #"colony_tasks_finished_total{outcome="succeeded"}"#),
                              ("failed", #"colony_tasks_finished_total{outcome="failed"}"#),
                              ("running", #"colony_tasks{state="running"}"#), ("queued", #"colony_tasks{state="queued"}"#)] {
            XCTAssertEqual((status[key] as? NSNumber)?.doubleValue, metrics[metric], key)
        }
        let top = try ClusterHarness.run(["top", "--once", "--coordinator", cluster.url], environment: environment)
        XCTAssertEqual(top.status, 0, top.stderr)
        XCTAssertTrue(top.stdout.contains("64 submitted, 50 succeeded, 10 failed"), top.stdout)
        XCTAssertTrue(top.stdout.contains("n1"), top.stdout)
        XCTAssertTrue(top.stdout.contains("fail on n1") && top.stdout.contains("error: on purpose"), top.stdout)
        XCTAssertTrue(top.stdout.contains("throughput:") && top.stdout.contains("latency (last minute)"), top.stdout)
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

    /// Every family the coordinator exports, each with samples, passes `promtool check metrics`
    /// (Prometheus's own lint: HELP text on every family, no type word in a name, base units).
    func testEveryMetricFamilyPassesPromtool() async throws {
        let searchPath = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/usr/local/bin"
        guard let promtool = searchPath.split(separator: ":").map({ "\($0)/promtool" })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return XCTFail("no promtool on PATH: run ./scripts/install-deps.sh --for-tests (Debian's prometheus package has it)")
        }
        let stateFolder = NSTemporaryDirectory() + "colony-promtool-state-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: stateFolder) }
        let colony = try await startCluster(threads: 1, state: stateFolder)
        try await colony.setLimit("db", size: 2)
        _ = try await colony.counter("hits").add(3)
        _ = try await colony.counter("big").set(.max)
        do {
            _ = try await colony.counter("big").add(1)
            XCTFail("an overflowing add is refused")
        } catch {}
        let done = try await colony.submit([TaskSubmission(handler: "echo", input: Array("1".utf8)),
                                            TaskSubmission(handler: "fail", input: Array(#""on purpose""#.utf8))])
        _ = try await colony.results(of: done)
        // One holds a unit of "db" while it runs; one waits for a node labelled gpu (none is).
        let running = try await colony.submit("sleep", rawInput: Array("60".utf8), options: TaskOptions(uses: ["db"]))
        let queued = try await colony.submit("echo", rawInput: Array("1".utf8), options: TaskOptions(requiredLabels: ["gpu": "yes"]))
        try await eventually("the sleeper running", { try await colony.report().running }, until: { $0 >= 1 })

        let scrape = try await request("GET", "/metrics")
        XCTAssertEqual(scrape.status, 200)
        for family in CoordinatorMetric.allCases {
            XCTAssertTrue(scrape.body.contains("# TYPE \(family.rawValue) "), "\(family.rawValue) is in the scrape:\n\(scrape.body)")
            XCTAssertTrue(scrape.body.contains("# HELP \(family.rawValue) \(family.help)\n"), "\(family.rawValue) has its HELP line")
        }
        let file = NSTemporaryDirectory() + "colony-scrape-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try scrape.body.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/sh"),
                                           ["-c", #"exec "$0" check metrics < "$1""#, promtool, file], timeout: .seconds(60))
        XCTAssertEqual(check.status, 0, "promtool check metrics:\n\(check.stdout)\(check.stderr)\nscrape:\n\(scrape.body)")
        _ = try await colony.cancel([running, queued])
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
        XCTAssertEqual(Set(outcome.keys), ["id", "attempt", "node", "state", "run_ms", "output"], "a success has no error keys")
        XCTAssertEqual(outcome["attempt"] as? Int, 1)

        let batch = try await request("POST", "/api/v1/tasks", body: #"{"tasks": [{"handler": "echo", "input": {"a": 1}}, {"handler": "fail", "input": "\"no\""}]}"#, token: token)
        XCTAssertEqual(batch.status, 202, batch.body)
        let ids = try XCTUnwrap(try json(batch.body)["ids"] as? [Int])
        let first = try json(try await request("GET", "/api/v1/tasks/\(ids[0])?wait=5", token: token).body)
        XCTAssertEqual(first["output"] as? String, #"{"a":1}"#, "a JSON value is sent as its JSON text")
        let second = try json(try await request("GET", "/api/v1/tasks/\(ids[1])?wait=5", token: token).body)
        XCTAssertEqual(second["state"] as? String, "failed")
        XCTAssertEqual(second["error"] as? String, "no")
        XCTAssertEqual(second["failure"] as? String, "error")
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

    func testLogsHaveOneLinePerEventAndNoneForASucceedingTask() async throws {
        let logFile = NSTemporaryDirectory() + "colony-log-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: logFile) }
        let colony = try await startCluster(coordinatorArguments: ["--log-format", "json", "--node-timeout", "1"], coordinatorLog: logFile)
        _ = try await colony.results(of: try await colony.submit((0..<30).map { _ in TaskSubmission(handler: "echo", input: Array("1".utf8)) }))
        let failed = try await colony.submit("fail", rawInput: Array(#""bad input""#.utf8))
        _ = try await colony.results(of: [failed])
        // The node dies without a word: the coordinator logs it lost after --node-timeout.
        for process in cluster.processes where process.arguments?.first == "node" { kill(process.processIdentifier, SIGKILL) }
        let lines = try await eventually(poll: .milliseconds(100), "'node lost' in the coordinator's log", { () -> [[String: Any]] in
            let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }, until: { $0.contains(where: { $0["message"] as? String == "node lost" }) })
        let messages = lines.compactMap { $0["message"] as? String }
        XCTAssertEqual(lines.count, (try String(contentsOfFile: logFile, encoding: .utf8)).split(separator: "\n").count, "every line is JSON")
        XCTAssertTrue(messages.contains { $0.hasPrefix("colony coordinator listening on") }, "\(messages)")
        let joined = lines.first { $0["message"] as? String == "node joined" }
        XCTAssertEqual(joined?["node"] as? String, "n1")
        let failure = try XCTUnwrap(lines.first { $0["message"] as? String == "task failed" })
        XCTAssertEqual(failure["task"] as? String, "\(failed)")
        XCTAssertEqual(failure["reason"] as? String, "error")
        XCTAssertEqual(failure["error"] as? String, "bad input")
        XCTAssertEqual(lines.first { $0["message"] as? String == "node lost" }?["level"] as? String, "warning")
        XCTAssertEqual(messages.filter { $0.contains("task") }.count, 1, "nothing per succeeding task: \(messages)")
        await colony.close()
    }

    /// A real browser (headless Chromium) loads the dashboard while work runs: the page shows
    /// the node and a non-zero throughput, and a screenshot is taken.
    func testTheDashboardShowsNodesAndThroughputInABrowser() async throws {
        guard let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("no Chromium here (scripts/install-deps.sh --for-tests installs it): dashboard test skipped")
        }
        let colony = try await startCluster(threads: 2)
        // About 4 s of work: 400 tasks of 20 ms on two slots, running while the page loads.
        let ids = try await colony.submit((0..<400).map { _ in TaskSubmission(handler: "sleep", input: Array("0.02".utf8)) })
        try await eventually(poll: .milliseconds(50), "the workload started (throughput above 0)", { try await colony.report().throughputNow },
                             until: { $0 > 0 })
        let screenshot = NSTemporaryDirectory() + "colony-dashboard-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: screenshot) }
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=3000",
                      "--window-size=1000,1300", "--user-data-dir=" + NSTemporaryDirectory() + "colony-chromium-\(UUID().uuidString)"]
        let browserURL = URL(fileURLWithPath: browser)
        let dom = try ClusterHarness.run(executable: browserURL, common + ["--dump-dom", http + "/"], timeout: .seconds(90))
        let shot = try ClusterHarness.run(executable: browserURL, common + ["--screenshot=" + screenshot, http + "/"], timeout: .seconds(90))
        XCTAssertEqual(shot.status, 0, shot.stderr)
        let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
        XCTAssertGreaterThan(png.count, 10_000, "a screenshot of the page")
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "PNG")
        if let keep = ProcessInfo.processInfo.environment["COLONY_TEST_LOGS"] {
            try? FileManager.default.copyItem(atPath: screenshot, toPath: keep + "/dashboard.png")
        }
        // What the page drew (its DOM after the scripts ran).
        XCTAssertTrue(dom.stdout.contains("<td>n1</td>"), "the nodes table lists n1")
        let card = try XCTUnwrap(dom.stdout.range(of: #"data-label="throughput now"><b>"#), "the throughput card")
        let value = dom.stdout[card.upperBound...].prefix { $0 != "/" && $0 != "<" }.replacingOccurrences(of: ",", with: "")
        XCTAssertGreaterThan(Double(value) ?? 0, 0, "throughput shown: \(value)")
        XCTAssertTrue(dom.stdout.contains("throughput-line"), "the chart has a line")
        _ = try await colony.cancel(ids)
        await colony.close()
    }

    /// Mangled JSON bodies (a fixed seed: flipped, cut and inserted bytes, odd values) against
    /// the API: every answer is a 2xx or a 4xx with JSON, and the books agree with the 2xxs.
    func testMangledBodiesGetClearAnswersAndTheBooksAgree() async throws {
        let colony = try await startCluster(threads: 1)
        let bodies = [
            #"{"handler": "echo", "input": "x", "priority": 3, "pool": "thread", "max_attempts": 2, "retry_on_error": true}"#,
            #"{"tasks": [{"handler": "echo", "input": {"a": [1, 2]}}, {"handler": "echo", "input_base64": "aGk=", "timeout_s": 2}]}"#,
            #"{"handler": "echo", "labels": {"k": "v"}, "key": "k-1", "after": [1]}"#,
        ]
        let counterBodies = [#"{"add": 5}"#, #"{"set": -3}"#, #"{"expected": 2, "value": 7, "key": "c"}"#]
        let inserts = ["\"", "{", "}", "[", "]", ",", ":", "1e400", "-0", "null", "true", "\\u0000", "\u{00e9}", "9223372036854775808"]
        var seed: UInt64 = 0xC01_0_4
        func next() -> Int {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: seed >> 33)
        }
        var acceptedIDs = 0
        var statuses: [Int: Int] = [:]
        for round in 0..<300 {
            let counter = round % 3 == 2
            var bytes = Array((counter ? counterBodies : bodies)[next() % 3].utf8)
            for _ in 0..<(1 + next() % 3) {
                switch next() % 4 {
                case 0 where !bytes.isEmpty: bytes[next() % bytes.count] ^= UInt8(1 << (next() % 8))
                case 1 where !bytes.isEmpty: bytes.removeSubrange((next() % bytes.count)...)
                case 2: bytes.insert(contentsOf: Array(inserts[next() % inserts.count].utf8), at: bytes.isEmpty ? 0 : next() % bytes.count)
                default: break
                }
            }
            let answer = try await request("POST", counter ? "/api/v1/counters/c" : "/api/v1/tasks", bodyBytes: Data(bytes))
            statuses[answer.status, default: 0] += 1
            XCTAssertTrue([200, 202, 400, 413].contains(answer.status), "\(answer.status) for \(String(decoding: bytes, as: UTF8.self))")
            let object = try? json(answer.body)
            XCTAssertNotNil(object, "a JSON answer: \(answer.body)")
            if answer.status == 202 { acceptedIDs += Set(object?["ids"] as? [Int] ?? []).count }
            if answer.status == 400 { XCTAssertNotNil(object?["error"] as? String) }
        }
        XCTAssertGreaterThan(statuses[400] ?? 0, 50, "most mangled bodies are refused: \(statuses)")
        XCTAssertGreaterThan((statuses[200] ?? 0) + (statuses[202] ?? 0), 10, "some still go through: \(statuses)")
        let report = try await colony.report()
        XCTAssertLessThanOrEqual(Int(report.submitted), acceptedIDs, "no task without a 202 (keys may repeat an id)")
        XCTAssertGreaterThan(report.submitted, 0, "some mangled bodies are still valid tasks")
        await colony.close()
    }
}
