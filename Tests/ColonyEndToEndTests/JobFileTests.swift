import Colony
import Foundation
import XCTest

/// `colony submit-file`: job files with dependencies by name, run on a real node; bad files
/// refused in one line with nothing submitted.
final class JobFileTests: ClusterTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--name", "job-node", "--allow-exec"])
    }

    private static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Examples/jobs")

    private func submitFile(_ path: String, wait: Bool = true) throws -> (status: Int32, stdout: String, stderr: String) {
        try ClusterHarness.run(["submit-file", "--coordinator", cluster.url, path] + (wait ? ["--wait"] : []), timeout: .seconds(120))
    }

    private func file(_ text: String, extension suffix: String = "toml") throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("colony-job-\(UUID().uuidString).\(suffix)").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testTheExamplePipelineRunsAndPrintsItsJoin() async throws {
        let colony = try await cluster.connect(waitingForNodes: 1)
        let run = try submitFile(Self.examples.appendingPathComponent("pipeline.toml").path)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, "495\n", "1..10 squared (385) plus doubled (110)")
        await colony.close()
    }

    func testAYAMLJobWithHandlersAndDependenciesRuns() async throws {
        let colony = try await cluster.connect(waitingForNodes: 1)
        let path = try file("""
            name: small
            tasks:
              - name: count
                handler: primes
                input: {lo: 0, hi: 100}
              - name: shout
                command: [sh, -c, "echo after the count"]
                after: [count]
                retries: 2
                labels: {}
            """, extension: "yaml")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try submitFile(path)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, "25\nafter the count\n")
        // `colony job submit`: the same file, its tasks one job under the file's name.
        let detached = try ClusterHarness.run(["job", "submit", "--coordinator", cluster.url, path], timeout: .seconds(120))
        XCTAssertEqual(detached.status, 0, detached.stderr)
        let lines = detached.stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        XCTAssertEqual(lines.map(\.[0]), ["job", "count", "shout"])
        let job = try await colony.job("small")
        XCTAssertEqual(String(job.id), lines[0][1])
        XCTAssertEqual(job.counts.total, 4, "both runs of the file, each in two waves, went into the one job named small")
        await colony.close()
    }

    func testTOMLHandlerInputsTravelAsJSON() async throws {
        let colony = try await cluster.connect(waitingForNodes: 1)
        let path = try file("""
            [[tasks]]
            name = "count"
            handler = "primes"
            input = { lo = 0, hi = 100 }
            [[tasks]]
            name = "list"
            handler = "echo"
            input = [1, 2.5, true, { a = "b" }]
            after = ["count"]
            [[tasks]]
            name = "nothing"
            handler = "echo"
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try submitFile(path)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, "25\n[1,2.5,true,{\"a\":\"b\"}]\nnull\n")
        await colony.close()
    }

    func testBadFilesAreRefusedInOneLineAndSubmitNothing() async throws {
        let colony = try await cluster.connect(waitingForNodes: 1)
        let task = "[[tasks]]\nname = \"a\"\ncommand = [\"true\"]\n"
        let cases: [(String, String)] = [
            ("[[tasks]]\nname = \"a\"\ncommand = [\"true\"\n", "line 3"),
            (task + "retires = 2\n", "line 4: unknown field 'retires' in tasks.0"),
            ("name = \"job\"\n[defaults]\nname = \"x\"\n" + task, "line 3: unknown field 'name' in defaults"),
            (task + "after = [\"b\"]\n[[tasks]]\nname = \"b\"\ncommand = [\"true\"]\nafter = [\"a\"]\n", "dependency cycle: a -> b -> a"),
            (task + "after = [\"nowhere\"]\n", "task 'a' depends on 'nowhere', which the file does not define"),
            (task + "[[tasks]]\nname = \"b\"\nhandler = \"echo\"\ninput = 1\nresources = { gpus = \"lots\" }\n",
             "task 'b': resources are NAME = AMOUNT"),
            // Resources reach the coordinator: no live node has a gpu, so the submit is refused.
            (task + "[[tasks]]\nname = \"b\"\nhandler = \"echo\"\ninput = 1\nresources = { gpus = 1 }\n", "gpus"),
            (task + "priority = \"high\"\n", "tasks.0.priority: a value of the wrong type"),
        ]
        let yamlCases: [(String, String)] = [
            ("tasks:\n  - name: a\n    command: [true\n", "line 3"),
            ("tasks:\n  - name: a\n    comand: [true]\n", "unknown field 'comand' in tasks.0"),
            // An alias bomb: ten levels of nine aliases each, a few hundred bytes for 9^10 values.
            ("tasks:\n  - name: a\n    handler: echo\n    input:\n      a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
                + (1...9).map { "      a\($0): &a\($0) [" + Array(repeating: "*a\($0 - 1)", count: 9).joined(separator: ", ") + "]\n" }.joined(),
             "the YAML expands to more than 1000000 values"),
        ]
        for (text, expected, suffix) in cases.map({ ($0, $1, "toml") }) + yamlCases.map({ ($0, $1, "yaml") }) {
            let path = try file(text, extension: suffix)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let run = try submitFile(path)
            XCTAssertNotEqual(run.status, 0, expected)
            XCTAssertEqual(run.stdout, "", expected)
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            XCTAssertTrue(run.stderr.contains(expected), "\(run.stderr) should say \(expected)")
        }
        let status = try await colony.status()
        XCTAssertEqual(status.queued + status.running + status.waiting, 0)
        XCTAssertEqual(status.succeeded + status.failed + status.cancelled, 0, "nothing was submitted")
        let tasks = try await colony.tasks()
        XCTAssertEqual(tasks.count, 0)
        await colony.close()
    }
}
