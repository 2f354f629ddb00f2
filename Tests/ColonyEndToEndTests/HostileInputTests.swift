import Colony
import ColonyModel
import ColonyWire
import Foundation
import XCTest

/// Raw bytes sent to a coordinator with nng's own `nngcat` (Debian's nng-utils): each bad
/// message gets an error reply (or, oversized, is dropped), the coordinator keeps serving, and
/// nothing in its state changes.
final class HostileInputTests: ClusterTestCase {
    private let nngcat = "/usr/bin/nngcat"
    private var scratch: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard FileManager.default.isExecutableFile(atPath: nngcat) else {
            throw XCTSkip("nngcat is missing (apt-get install nng-utils): raw-byte tests skipped")
        }
        scratch = NSTemporaryDirectory() + "colony-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try cluster.startCoordinator()
    }

    override func tearDown() {
        super.tearDown()
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// Sends `bytes` as one request with nngcat; returns the reply as nngcat quotes it ("" if none came).
    private func send(_ bytes: [UInt8]) throws -> String {
        let file = scratch + "/\(UUID().uuidString).bin"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: nngcat)
        process.arguments = ["--req", "--dial", cluster.url, "--file", file, "--quoted"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // A dropped request gets no reply: give up on it after a few seconds.
        let pid = process.processIdentifier
        let killer = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 4, execute: killer)
        let reply = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        killer.cancel()
        return String(decoding: reply, as: UTF8.self)
    }

    private func envelope(version: UInt32 = colonyProtocolVersion, _ body: Colony_V1_Envelope.OneOf_Body) throws -> [UInt8] {
        var envelope = Colony_V1_Envelope()
        envelope.version = version
        envelope.body = body
        return try envelope.serializedBytes()
    }

    func testMalformedTruncatedWrongVersionOversizedAndInvalidFieldsAreRefusedAndChangeNothing() async throws {
        let colony = try await cluster.connect(waitingForNodes: 0)
        XCTAssertTrue(try send(Array("garbage, not protobuf".utf8)).contains("malformed message"))

        var spec = Colony_V1_TaskSpec()
        spec.handler = "echo"
        spec.input = Data("\"x\"".utf8)
        var submit = Colony_V1_SubmitRequest()
        submit.session = "hostile"
        submit.tasks = Array(repeating: spec, count: 50)
        let valid = try envelope(.submit(submit))
        XCTAssertTrue(try send(Array(valid.prefix(valid.count / 2))).contains("malformed message"), "truncated")
        XCTAssertTrue(try send(try envelope(version: 99, .submit(submit))).contains("unsupported protocol version 99"))
        XCTAssertTrue(try send(try envelope(.submitReply(Colony_V1_SubmitReply()))).contains("takes requests"), "a reply sent as a request")

        var badName = spec
        badName.handler = String(repeating: "h", count: 300)
        var invalid = submit
        invalid.tasks = [spec, badName]
        XCTAssertTrue(try send(try envelope(.submit(invalid))).contains("handler name must be 1 to 256 bytes"))
        var badCounter = Colony_V1_CounterRequest()
        badCounter.op = .add
        badCounter.name = ""
        badCounter.value = 5
        XCTAssertTrue(try send(try envelope(.counter(badCounter))).contains("counter name must be"))

        // 17 MiB: over every socket's 16 MiB cap, so nng drops it (no reply at all).
        XCTAssertEqual(try send([UInt8](repeating: 0x41, count: 17 << 20)), "")

        // Still serving, and none of it left a trace.
        let status = try await colony.status()
        XCTAssertEqual(status.queued + status.running + status.waiting, 0, "no task from a refused submit")
        let counters = try await colony.counters()
        XCTAssertTrue(counters.isEmpty, "\(counters)")
        let echoed = try await colony.submit("echo", input: "ok")
        XCTAssertGreaterThan(echoed, 0)
        await colony.close()
    }
}
