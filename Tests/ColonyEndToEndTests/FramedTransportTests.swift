import Colony
import ColonyModel
import ColonyNode
import Foundation
import Sockets
import XCTest

/// Colony's own framing (`colony://`) end to end: real coordinator, node and client processes
/// on it, beside nng on the same coordinator, through a coordinator killed and restarted, a
/// node killed, and addresses that are wrong.
final class FramedTransportTests: XCTestCase {
    private var cluster: ClusterHarness!

    override func setUpWithError() throws {
        cluster = try ClusterHarness(scheme: "colony")
    }

    override func tearDown() {
        cluster.stopAll()
    }

    func testOneCoordinatorServesColonyAndNNGAtOnce() async throws {
        let nngURL = "tcp://127.0.0.1:\(try ClusterHarness.freePort())"
        try cluster.start(["coordinator", "--listen", cluster.url, "--listen", nngURL, "--state", ":memory:"])
        // One node on each transport, one thread each: a map of 40 sleeps needs both.
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--name", "framed"])
        try cluster.start(["node", "--coordinator", nngURL, "--threads", "1", "--name", "nng"])
        let colony = try await cluster.connect(waitingForNodes: 2)
        let results = try await colony.mapResults("sleep", Array(repeating: 0.02, count: 40))
        XCTAssertTrue(results.allSatisfy(\.succeeded))
        XCTAssertEqual(Set(results.map(\.node)), ["framed", "nng"], "both nodes ran tasks")
        await colony.close()
        // The CLI on either address sees the same cluster.
        let inputs = NSTemporaryDirectory() + "colony-framed-inputs-\(UUID().uuidString)"
        try "1\n2\n3\n".write(toFile: inputs, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: inputs) }
        for url in [cluster.url, nngURL] {
            let map = try ClusterHarness.run(["map", "--coordinator", url, "--handler", "echo", "--inputs", inputs])
            XCTAssertEqual(map.status, 0, map.stderr)
            XCTAssertEqual(map.stdout, "1\n2\n3\n")
        }
    }

    func testAMapOnColonyRidesThroughACoordinatorKilledAndRestarted() async throws {
        let state = NSTemporaryDirectory() + "colony-framed-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let coordinator = try cluster.startCoordinator(stateDirectory: state)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--processes", "2", "--allow-exec", "--name", "n1"])
        let probe = try await cluster.connect(waitingForNodes: 1)
        await probe.close()

        try await checkMapRidesThroughACoordinatorRestart(cluster, coordinator: coordinator, stateDirectory: state, count: 1500, killAfter: 100)
    }

    func testANodeKilledOnColonyHasItsTaskRunElsewhere() async throws {
        // A long node timeout: only the closed connection can make the coordinator act soon.
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:", "--node-timeout", "60"])
        let doomed = try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--name", "doomed"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let id = try await colony.submit("sleep", input: 1.0)
        try await eventually("the task running on doomed", { try await colony.status().running }, until: { $0 == 1 })
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--name", "survivor"])
        try await eventually("survivor joined", { try await colony.status().nodes.count }, until: { $0 == 2 })
        let killedAt = ContinuousClock.now
        kill(doomed.processIdentifier, SIGKILL)
        doomed.waitUntilExit()
        let result = try await colony.result(of: id)
        XCTAssertTrue(result.succeeded, result.error)
        XCTAssertEqual(result.node, "survivor")
        XCTAssertLessThan(ContinuousClock.now - killedAt, .seconds(30), "moved on the closed connection, not the 60 s node timeout")
        await colony.close()
    }

    func testWrongAddressesGetOneLineAndStartNothing() throws {
        // A colony:// client at an nng port.
        let nngURL = "tcp://127.0.0.1:\(try ClusterHarness.freePort())"
        try cluster.start(["coordinator", "--listen", nngURL, "--state", ":memory:"])
        try eventuallyBlocking("the nng coordinator answering", { try ClusterHarness.run(["status", "--coordinator", nngURL]).status }, until: { $0 == 0 })
        let mixedUp = try ClusterHarness.run(["status", "--coordinator", nngURL.replacingOccurrences(of: "tcp://", with: "colony://")], timeout: .seconds(60))
        XCTAssertNotEqual(mixedUp.status, 0)
        XCTAssertTrue(mixedUp.stderr.contains("speaks nng's protocol, not colony:// (use its tcp:// address)"), mixedUp.stderr)
        XCTAssertEqual(mixedUp.stderr.split(separator: "\n").count, 1, mixedUp.stderr)

        let refusals: [([String], String)] = [
            (["coordinator", "--listen", "colony://127.0.0.1", "--state", ":memory:"], "expected HOST:PORT"),
            (["coordinator", "--listen", "tcp://127.0.0.1:0", "--listen", "ipc:///tmp/x", "--state", ":memory:"], "one nng address"),
            (["coordinator", "--listen", "colony://127.0.0.1:0", "--listen", "colony://127.0.0.1:0", "--state", ":memory:"], "at most one colony:// address"),
            (["status", "--coordinator", "colony://127.0.0.1:1", "--tls-ca", "/etc/hostname"], "colony:// has no TLS"),
            (["status", "--coordinator", cluster.url], "nothing listening at \(cluster.url) (connection refused)"),
        ]
        for (arguments, expected) in refusals {
            let run = try ClusterHarness.run(arguments, timeout: .seconds(30))
            XCTAssertNotEqual(run.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(run.stderr.contains(expected), "\(arguments.joined(separator: " ")): \(run.stderr)")
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        }
    }

    func testGarbageAndOversizedFramesCostOnlyTheirOwnConnection() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        let colony = try await cluster.connect(waitingForNodes: 1)
        guard let address = FramedAddress(url: cluster.url) else { return XCTFail("not a colony:// URL: \(cluster.url)") }
        let deadline = ContinuousClock.now + .seconds(10)
        // Each of these is cut off by the coordinator: no hello, an nng peer's hello, a frame
        // announced over 16 MiB, a frame whose payload is no envelope (that one is answered).
        var oversized = FrameFormat.hello
        FrameFormat.append(id: 1, [], to: &oversized)
        oversized.replaceSubrange(8..<12, with: [0xff, 0xff, 0xff, 0x7f])
        var junkEnvelope = FrameFormat.hello
        FrameFormat.append(id: 42, [0xde, 0xad, 0xbe, 0xef], to: &junkEnvelope)
        for bytes in [Array("GET / HTTP/1.1\r\n\r\n".utf8), [0, 0x53, 0x50, 0, 0, 0x30, 0, 0], oversized, junkEnvelope] {
            let connection = try await TCPConnection.connect(host: address.host, port: address.port, until: deadline)
            try await connection.write(bytes, until: deadline)
            var received: [UInt8] = []
            while true {
                let chunk = try await connection.read(until: deadline)
                if chunk.isEmpty { break }
                received += chunk
                if bytes == junkEnvelope, received.count > 20 { break }
            }
            connection.close()
            if bytes == junkEnvelope {
                let (frames, _) = try FrameFormat.split(Array(received.dropFirst(8)), frameBytesMax: 1 << 20)
                XCTAssertEqual(frames.first?.id, 42, "a payload that is no envelope gets an error reply with its id")
            }
        }
        // The coordinator and its node carry on.
        let echoed = try await colony.map("echo", [1, 2, 3], as: Int.self)
        XCTAssertEqual(echoed, [1, 2, 3])
        await colony.close()
    }

    func testAClientDroppedWithoutCloseLetsItsConnectionGo() async throws {
        try cluster.startCoordinator()
        try cluster.startNode(name: "n1", threads: 1)
        // (Starting a process leaves sockets of Foundation's own in this one: count after.)
        let baseline = Self.openSockets
        let probe = try await cluster.connect(waitingForNodes: 1)
        await probe.close()
        try await eventually("the probe's connection closed", { Self.openSockets }, until: { $0 <= baseline })
        do {
            let dropped = try ColonyClient(connect: cluster.url)
            let echoed = try await dropped.map("echo", [7], as: Int.self)
            XCTAssertEqual(echoed, [7])
            XCTAssertGreaterThan(Self.openSockets, baseline, "its connection (a descriptor and its dup for writing)")
        }
        try await eventually("the dropped client's connection closed", { Self.openSockets }, until: { $0 <= baseline })
    }

    /// Sockets this test process has open.
    private static var openSockets: Int {
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return descriptors.filter { ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) ?? "").hasPrefix("socket:") }.count
    }
}
