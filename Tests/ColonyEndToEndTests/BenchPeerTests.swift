import Foundation
import XCTest

/// `colony bench` counts a peer's figure only when the peer is the program named and did the
/// work: fake `parallel` and `xargs` scripts first on PATH get no figure and a reason.
final class BenchPeerTests: XCTestCase {
    private var folder = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "colony-bench-peers-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func fake(_ name: String, _ script: String) throws {
        let path = folder + "/" + name
        try ("#!/bin/sh\n" + script + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    /// The smallest bench (20 W6 commands, no durability figures) with the fakes first on PATH;
    /// returns its JSON.
    private func tinyBench() throws -> [String: Any] {
        var environment = ProcessInfo.processInfo.environment.filter { $0.key != "COLONY_TOKEN" }
        environment["PATH"] = folder + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let bench = try ClusterHarness.run(["bench", "--json", "--w1-tasks", "10", "--w2-tasks", "10", "--w3-limit", "1000",
                                            "--w6-tasks", "20", "--skip-durability"], environment: environment, timeout: .seconds(180))
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let line = bench.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CLIFailure("bench printed no JSON object: \(bench.stdout)")
        }
        return object
    }

    func testAParallelThatIsNotGNUParallelAndAnXargsThatPrintsNothingGetNoFigure() throws {
        // moreutils' parallel, as the bench met it: reads no inputs, runs nothing, exits 0.
        try fake("parallel", "exit 0")
        try fake("xargs", "cat >/dev/null; exit 0")
        let figures = try tinyBench()
        XCTAssertNil(figures["w6_parallel_j2_tasks_per_s"], "\(figures)")
        XCTAssertNil(figures["w6_xargs_p2_tasks_per_s"], "\(figures)")
        let notCounted = try XCTUnwrap(figures["peers_not_counted"] as? [String: String], "\(figures)")
        XCTAssertEqual(notCounted["w6_parallel_j2_tasks_per_s"], "not GNU parallel (moreutils?)")
        XCTAssertEqual(notCounted["w6_xargs_p2_tasks_per_s"], "printed 0 outputs for 20 inputs")
        XCTAssertNotNil(figures["w6_tasks_per_s"], "Colony's own figure stays")
    }

    func testAParallelThatSaysGNUButSkipsInputsGetsNoFigureAndTheRealXargsDoes() throws {
        try fake("parallel", """
            if [ "$1" = "--version" ]; then echo "GNU parallel 20221122"; exit 0; fi
            n=0
            while read -r line; do n=$((n + 1)); if [ $((n % 2)) -eq 0 ]; then echo "$line"; fi; done
            """)
        let figures = try tinyBench()
        XCTAssertNil(figures["w6_parallel_j2_tasks_per_s"], "\(figures)")
        let notCounted = try XCTUnwrap(figures["peers_not_counted"] as? [String: String], "\(figures)")
        XCTAssertEqual(notCounted["w6_parallel_j2_tasks_per_s"], "printed 10 outputs for 20 inputs")
        XCTAssertGreaterThan((figures["w6_xargs_p2_tasks_per_s"] as? NSNumber)?.doubleValue ?? 0, 0,
                             "the real xargs did the work and is counted: \(figures)")
        XCTAssertNil(notCounted["w6_xargs_p2_tasks_per_s"])
    }
}
