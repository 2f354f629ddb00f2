import Foundation
import Sockets
import XCTest

/// Plain TCP connections waited on with epoll: many at once, deadlines, cancellation, errors
/// in one line, no descriptor left behind.
final class TCPConnectionTests: XCTestCase {
    private let clock = ContinuousClock()

    func testThreeHundredWaitsOverlapAndLeaveNoDescriptorBehind() async throws {
        let server = try LoopbackServer(answer: Array("ok".utf8), delay: .milliseconds(300))
        defer { server.stop() }
        _ = try await exchange(port: server.port, until: clock.now + .seconds(10))  // the reactor's thread starts
        let before = LoopbackServer.openSockets
        let start = clock.now
        let answers = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            for _ in 0..<300 { group.addTask { try await exchange(port: server.port, until: .now + .seconds(20)) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(answers.count, 300)
        XCTAssertTrue(answers.allSatisfy { $0 == Array("ok".utf8) })
        XCTAssertLessThan(clock.now - start, .seconds(10), "the waits overlap (one alone is 0.3 s)")
        try await waitForOpenSockets(before, "every connection's descriptor is closed")
    }

    func testAReadPastItsDeadlineTimesOutAndEarlierDeadlinesEndFirst() async throws {
        let server = try LoopbackServer(answer: nil)
        defer { server.stop() }
        let start = clock.now
        let order = OrderBox()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for milliseconds in [600, 200, 400] {
                group.addTask {
                    do {
                        _ = try await exchange(port: server.port, until: start + .milliseconds(milliseconds))
                        XCTFail("a silent server answered")
                    } catch let error as SocketError {
                        XCTAssertEqual(error.reason, .timedOut, "\(error)")
                        XCTAssertEqual("\(error)", "read the response: timed out")
                        order.append(milliseconds)
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(order.values, [200, 400, 600])
        XCTAssertGreaterThanOrEqual(clock.now - start, .milliseconds(600))
        XCTAssertLessThan(clock.now - start, .seconds(5))
    }

    func testACancelledWaitEndsAtOnceWheneverTheCancellationComes() async throws {
        let server = try LoopbackServer(answer: nil)
        defer { server.stop() }
        let before = LoopbackServer.openSockets
        var steps: Set<String> = []
        for round in 0..<100 {
            let start = clock.now
            let port = server.port
            let waiting = Task<[UInt8], any Error> { try await exchange(port: port, until: ContinuousClock.now + .seconds(30)) }
            // Cancelled at a different point of connect, write and read each round.
            for _ in 0..<(round % 10) { await Task.yield() }
            waiting.cancel()
            do {
                _ = try await waiting.value
                XCTFail("a silent server answered")
            } catch let error as SocketError {
                XCTAssertEqual(error.reason, .cancelled, "\(error)")
                steps.insert(error.operation)
            }
            XCTAssertLessThan(clock.now - start, .seconds(5), "round \(round)")
        }
        XCTAssertTrue(steps.contains("read the response"), "some rounds were cancelled while the read waited: \(steps)")
        try await waitForOpenSockets(before, "every cancelled connection's descriptor is closed")
    }

    func testFailuresAreOneLineNamingTheStep() async throws {
        let server = try LoopbackServer(answer: nil)
        let port = server.port
        server.stop()
        do {
            _ = try await TCPConnection.connect(host: "127.0.0.1", port: port, until: clock.now + .seconds(5))
            XCTFail("connected to a closed port")
        } catch {
            XCTAssertEqual("\(error)", "connect: Connection refused")
        }
    }

    func testANameIsResolvedAndAnIPv6AddressInBracketsIsTaken() async throws {
        let server = try LoopbackServer(answer: Array("ok".utf8))
        defer { server.stop() }
        let byName = try await TCPConnection.connect(host: "localhost", port: server.port, until: clock.now + .seconds(10))
        byName.close()
        do {
            _ = try await TCPConnection.connect(host: "[::1]", port: server.port, until: clock.now + .seconds(5))
        } catch {
            // The server listens on IPv4 only: refused (or no IPv6 here), but parsed as an address.
            XCTAssertEqual(error.operation, "connect", "\(error)")
        }
    }
}

private func exchange(port: Int, until deadline: ContinuousClock.Instant) async throws -> [UInt8] {
    let connection = try await TCPConnection.connect(host: "127.0.0.1", port: port, until: deadline)
    defer { connection.close() }
    try await connection.write(Array("hello".utf8), until: deadline)
    var answer: [UInt8] = []
    while true {
        let part = try await connection.read(until: deadline)
        if part.isEmpty { return answer }
        answer += part
    }
}

/// Waits until the process has `count` open sockets (the test server's side of each
/// connection closes on its own thread after ours), failing after 10 s.
private func waitForOpenSockets(_ count: Int, _ what: String) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while LoopbackServer.openSockets != count {
        guard ContinuousClock.now < deadline else {
            XCTFail("\(what): \(LoopbackServer.openSockets) open, \(count) before")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

private final class OrderBox: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int] = []
    func append(_ value: Int) { lock.withLock { list.append(value) } }
    var values: [Int] { lock.withLock { list } }
}
