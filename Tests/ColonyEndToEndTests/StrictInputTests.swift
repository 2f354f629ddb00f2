import Colony
import ColonyModel
import ColonyWire
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// Inputs with a key nobody reads, or with fields that exclude each other, are refused with
/// one line naming them, and nothing runs or changes; `colony submit exec --wait` exits with
/// the command's status.
final class StrictInputTests: ClusterTestCase {
    private var http = ""
    private var scratch: String!

    override func tearDown() {
        super.tearDown()
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// A coordinator with its HTTP side on a free port, and one node that runs `exec`.
    private func startCluster() async throws -> ColonyClient {
        scratch = NSTemporaryDirectory() + "colony-strict-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let port = try ClusterHarness.freePort()
        http = "http://127.0.0.1:\(port)"
        let environment = ProcessInfo.processInfo.environment.filter { $0.key != "COLONY_TOKEN" }
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--metrics-listen", "127.0.0.1:\(port)"],
                          environment: environment)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "2", "--name", "n1", "--allow-exec"],
                          environment: environment)
        return try await cluster.connect(waitingForNodes: 1)
    }

    private func request(_ method: String, _ path: String, body: String? = nil) async throws -> (status: Int, error: String, object: [String: Any]) {
        var request = URLRequest(url: URL(string: http + path)!)
        request.httpMethod = method
        request.timeoutInterval = 30
        request.httpBody = body.map { Data($0.utf8) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, object?["error"] as? String ?? "", object ?? [:])
    }

    private func run(_ colony: ColonyClient, _ handler: String, _ input: String) async throws -> TaskResult {
        try await colony.result(of: colony.submit(handler, rawInput: Array(input.utf8)))
    }

    func testExecWithTimeoutInsteadOfTimeoutSecondsFailsAtOnceNamingItAndRunsNothing() async throws {
        let colony = try await startCluster()
        let mark = scratch + "/ran"
        let started = ContinuousClock.now
        let result = try await run(colony, "exec", #"{"argv": ["sh", "-c", "touch \#(mark); sleep 5"], "timeout": 1}"#)
        XCTAssertFalse(result.succeeded)
        XCTAssertTrue(result.error.contains("unknown field 'timeout'"), result.error)
        XCTAssertTrue(result.error.contains("timeoutSeconds"), "the message lists the real fields: \(result.error)")
        XCTAssertFalse(result.error.contains("\n"), result.error)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4), "refused before the command ran")
        XCTAssertFalse(FileManager.default.fileExists(atPath: mark), "the command did not run")
        await colony.close()
    }

    func testExecRefusesATimeoutOrOutputBoundOutOfRangeInOneLine() async throws {
        let colony = try await startCluster()
        let huge = try await run(colony, "exec", #"{"argv": ["true"], "timeoutSeconds": 1e300}"#)
        XCTAssertFalse(huge.succeeded)
        XCTAssertTrue(huge.error.contains("timeoutSeconds must be above 0"), huge.error)
        let zero = try await run(colony, "exec", #"{"argv": ["true"], "timeoutSeconds": 0}"#)
        XCTAssertTrue(zero.error.contains("timeoutSeconds must be above 0"), zero.error)
        let bound = try await run(colony, "exec", #"{"argv": ["true"], "outputBytesMax": -1}"#)
        XCTAssertTrue(bound.error.contains("outputBytesMax must be from 0"), bound.error)
        await colony.close()
    }

    func testBuiltInHandlersRefuseAnExtraFieldNamingIt() async throws {
        let colony = try await startCluster()
        let primes = try await run(colony, "primes", #"{"lo": 0, "hi": 100, "extra": 1}"#)
        XCTAssertFalse(primes.succeeded)
        XCTAssertTrue(primes.error.contains("unknown field 'extra'"), primes.error)
        let count = try await run(colony, "count", #"{"counter": "strict", "times": 3, "extra": 1}"#)
        XCTAssertFalse(count.succeeded)
        XCTAssertTrue(count.error.contains("unknown field 'extra'"), count.error)
        let counted = try await colony.counter("strict").get()
        XCTAssertEqual(counted, 0, "a refused input counts nothing")
        let batch = try await run(colony, "batch", #"{"handler": "primes", "inputs": [{"lo": 0, "hi": 100}], "extra": true}"#)
        XCTAssertFalse(batch.succeeded)
        XCTAssertTrue(batch.error.contains("unknown field 'extra'"), batch.error)
        let inner = try await run(colony, "batch", #"{"handler": "primes", "inputs": [{"lo": 0, "hi": 100}, {"lo": 0, "hi": 10, "hl": 5}]}"#)
        XCTAssertTrue(inner.succeeded, inner.error)
        let entries = try BatchEntry.split(inner.output)
        XCTAssertEqual(entries.map(\.ok), [true, false])
        XCTAssertEqual(entries.first.map { String(decoding: $0.output, as: UTF8.self) }, "25")
        XCTAssertTrue(entries.last?.error?.contains("unknown field 'hl'") == true, "\(entries.last?.error ?? "")")
        // Valid inputs still run.
        let valid = try await run(colony, "primes", #"{"lo": 0, "hi": 100}"#)
        XCTAssertEqual(valid.outputText, "25")
        await colony.close()
    }

    func testHTTPSubmitWithAnUnknownFieldIsRefusedAndCreatesNoTask() async throws {
        let colony = try await startCluster()
        let before = try await colony.report().submitted
        let listed = try await request("POST", "/api/v1/tasks", body: #"{"tasks": [{"handler": "echo", "input": 1}], "extra": true}"#)
        XCTAssertEqual(listed.status, 400)
        XCTAssertTrue(listed.error.contains("unknown field 'extra'"), listed.error)
        let nested = try await request("POST", "/api/v1/tasks", body: #"{"tasks": [{"handler": "echo"}, {"handler": "echo", "extra": 1}]}"#)
        XCTAssertEqual(nested.status, 400)
        XCTAssertTrue(nested.error.contains("unknown field 'extra' in tasks.1"), nested.error)
        let both = try await request("POST", "/api/v1/tasks", body: #"{"handler": "echo", "input": "a", "input_base64": "YQ=="}"#)
        XCTAssertEqual(both.status, 400)
        XCTAssertTrue(both.error.contains("'input' and 'input_base64'"), both.error)
        let fraction = try await request("POST", "/api/v1/tasks", body: #"{"handler": "echo", "priority": 1.5}"#)
        XCTAssertEqual(fraction.status, 400)
        XCTAssertTrue(fraction.error.contains("'priority' must be an integer"), fraction.error)
        let after = try await colony.report().submitted
        XCTAssertEqual(after, before, "no task was created")
        let accepted = try await request("POST", "/api/v1/tasks", body: #"{"tasks": [{"handler": "echo", "input": {"b": [1, 2.5, null], "a": "/"}}]}"#)
        XCTAssertEqual(accepted.status, 202, accepted.error)
        let id = try XCTUnwrap((accepted.object["ids"] as? [Int])?.first)
        let echoed = try await request("GET", "/api/v1/tasks/\(id)?wait=20")
        XCTAssertEqual(echoed.object["output"] as? String, #"{"a":"/","b":[1,2.5,null]}"#, "the input is sent as its JSON text")
        await colony.close()
    }

    func testHTTPCounterChangeWithConflictingFieldsIsRefusedAndChangesNothing() async throws {
        let colony = try await startCluster()
        let added = try await request("POST", "/api/v1/counters/c", body: #"{"add": 5}"#)
        XCTAssertEqual(added.status, 200, added.error)
        let conflicting = try await request("POST", "/api/v1/counters/c", body: #"{"add": 1, "expected": 2, "value": 3}"#)
        XCTAssertEqual(conflicting.status, 400)
        XCTAssertTrue(conflicting.error.contains("conflicting fields 'add', 'expected' and 'value'"), conflicting.error)
        let twoChanges = try await request("POST", "/api/v1/counters/c", body: #"{"add": 1, "set": 2}"#)
        XCTAssertEqual(twoChanges.status, 400)
        XCTAssertTrue(twoChanges.error.contains("'add' and 'set'"), twoChanges.error)
        let unknown = try await request("POST", "/api/v1/counters/c", body: #"{"add": 1, "ky": "k"}"#)
        XCTAssertEqual(unknown.status, 400)
        XCTAssertTrue(unknown.error.contains("unknown field 'ky'"), unknown.error)
        let half = try await request("POST", "/api/v1/counters/c", body: #"{"value": 3}"#)
        XCTAssertEqual(half.status, 400)
        XCTAssertTrue(half.error.contains("'expected'"), half.error)
        let value = try await colony.counter("c").get()
        XCTAssertEqual(value, 5, "no refused change was applied")
        await colony.close()
    }

    func testSubmitExecWaitExitsWithTheCommandsStatusUnlessAllowed() async throws {
        let colony = try await startCluster()
        await colony.close()
        let input = #"{"argv": ["sh", "-c", "echo out; exit 3"]}"#
        let failing = try ClusterHarness.run(["submit", "exec", input, "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(failing.status, 3, failing.stderr)
        XCTAssertTrue(failing.stdout.contains(#""exitCode":3"#), "the report is still printed: \(failing.stdout)")
        let allowed = try ClusterHarness.run(["submit", "exec", input, "--wait", "--allow-nonzero", "--coordinator", cluster.url])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertTrue(allowed.stdout.contains(#""exitCode":3"#), allowed.stdout)
        let signalled = try ClusterHarness.run(["submit", "exec", #"{"argv": ["sh", "-c", "kill -9 $$"]}"#, "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(signalled.status, 128 + 9, signalled.stdout + signalled.stderr)
        let late = try ClusterHarness.run(["submit", "exec", #"{"argv": ["sleep", "5"], "timeoutSeconds": 0.2}"#, "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(late.status, 124, "as timeout(1) reports it: \(late.stdout + late.stderr)")
        let succeeding = try ClusterHarness.run(["submit", "exec", #"{"argv": ["true"]}"#, "--wait", "--coordinator", cluster.url])
        XCTAssertEqual(succeeding.status, 0, succeeding.stderr)
        let queued = try ClusterHarness.run(["submit", "exec", input, "--coordinator", cluster.url])
        XCTAssertEqual(queued.status, 0, "without --wait only the submission counts: \(queued.stderr)")
    }
}
