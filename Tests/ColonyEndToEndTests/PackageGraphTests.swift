import Foundation
import XCTest

/// The client library is a client: a program that only submits work builds none of the
/// coordinator, the journal or SQLite, and the node's code stays out of it too.
final class PackageGraphTests: ClusterTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every target `name` depends on, directly or not, per `swift package describe`.
    static func dependencies(of name: String) throws -> Set<String> {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("colony-describe-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let described = try ClusterHarness.run(executable: URL(fileURLWithPath: "/usr/bin/env"),
                                               ["swift", "package", "--package-path", packageRoot.path, "--scratch-path", scratch.path,
                                                "describe", "--type", "json"], timeout: .seconds(120))
        XCTAssertEqual(described.status, 0, described.stderr)
        struct Description: Decodable {
            struct Target: Decodable {
                var name: String
                var target_dependencies: [String]?
            }
            var targets: [Target]
        }
        let targets = try JSONDecoder().decode(Description.self, from: Data(described.stdout.utf8)).targets
        let direct = Dictionary(uniqueKeysWithValues: targets.map { ($0.name, $0.target_dependencies ?? []) })
        XCTAssertNotNil(direct[name], "no target \(name)")
        var seen: Set<String> = []
        var next = direct[name] ?? []
        while let target = next.popLast() {
            if seen.insert(target).inserted { next += direct[target] ?? [] }
        }
        return seen
    }

    func testClientOnlyProgramBuildsNoServerModule() throws {
        let serverSide: Set = ["ColonyCoordinator", "ColonyStore", "CSQLite", "ColonyCore", "ColonyNode", "ColonyHTTP", "ColonyCLI"]
        for program in ["Colony", "colony-client-example"] {
            let graph = try Self.dependencies(of: program)
            XCTAssertTrue(graph.isDisjoint(with: serverSide), "\(program) depends on \(graph.intersection(serverSide).sorted())")
            XCTAssertTrue(graph.contains("ColonyWire"), "\(program): \(graph.sorted())")
        }
        // The node side needs neither the coordinator nor the journal.
        let node = try Self.dependencies(of: "ColonyNode")
        XCTAssertTrue(node.isDisjoint(with: ["ColonyCoordinator", "ColonyStore", "CSQLite", "ColonyCore"]), "ColonyNode: \(node.sorted())")
    }

    /// The client-only example works against a real cluster (what the README promises).
    func testClientOnlyProgramRunsAgainstACluster() async throws {
        try cluster.start(["coordinator", "--listen", cluster.url])
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "0"])
        try await cluster.connect(waitingForNodes: 1).close()
        let example = ClusterHarness.colonyExecutable.deletingLastPathComponent().appendingPathComponent("colony-client-example")
        let run = try ClusterHarness.run(executable: example, [cluster.url], timeout: .seconds(60))
        XCTAssertEqual(run.status, 0, run.stderr + run.stdout)
        XCTAssertEqual(run.stdout, "primes below 200000: 17984\n")
    }
}
