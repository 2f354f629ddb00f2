import Foundation
import Synchronization
@testable import Sockets
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

    /// Data that keeps arriving never makes a read wait, so the deadline and a cancellation
    /// are checked before every step, not only in waits.
    func testAStreamThatNeverEndsMeetsItsDeadlineAndItsCancellation() async throws {
        let server = try LoopbackServer(answer: nil, streams: true)
        defer { server.stop() }
        let start = clock.now
        do {
            _ = try await slowReader(port: server.port, until: start + .milliseconds(300))
            XCTFail("an endless stream ended")
        } catch let error as SocketError {
            XCTAssertEqual(error.reason, .timedOut, "\(error)")
        }
        XCTAssertLessThan(clock.now - start, .seconds(5))
        let port = server.port
        let arrived = ArrivalFlag()
        let reading = Task<Int, any Error> { try await slowReader(port: port, until: ContinuousClock.now + .seconds(60), arrived: arrived) }
        try await eventuallyTrue { arrived.value.load(ordering: .acquiring) }  // bytes arrive, and more keep coming
        let cancelledAt = clock.now
        reading.cancel()
        do {
            _ = try await reading.value
            XCTFail("an endless stream ended")
        } catch let error as SocketError {
            XCTAssertEqual(error.reason, .cancelled, "\(error)")
        }
        XCTAssertLessThan(clock.now - cancelledAt, .seconds(2))
    }

    /// Lookups of names run on a few threads; a lookup whose deadline passed while it queued
    /// is not run.
    func testNameLookupsShareAFewThreadsAndSkipWhatExpiredInTheQueue() async throws {
        let resolvers = Resolvers(threads: 2)
        let gate = DispatchSemaphore(value: 0)
        let ran = OrderBox()
        let running = OrderBox()
        for index in 0..<2 {
            resolvers.enqueue(until: .now + .seconds(30)) {
                running.append(index)
                gate.wait()
                ran.append(index)
            }
        }
        resolvers.enqueue(until: .now + .milliseconds(50)) { ran.append(99) }
        resolvers.enqueue(until: .now + .seconds(30)) { ran.append(2) }
        try await eventuallyTrue { running.values.count == 2 }
        try await Task.sleep(for: .milliseconds(100))  // the third one's deadline passes in the queue
        XCTAssertEqual(running.values.count, 2, "no third thread")
        gate.signal()
        gate.signal()
        try await eventuallyTrue { Set(ran.values).isSuperset(of: [0, 1, 2]) }
        XCTAssertFalse(ran.values.contains(99), "an expired lookup is skipped")
        XCTAssertEqual(Set(ran.values), [0, 1, 2])
    }

    /// Two hundred connections to one name at once ask getaddrinfo a few times (those that
    /// started before the first answer), not two hundred; later ones ask the cache.
    func testANameIsLookedUpOnceForManyConnections() async throws {
        let server = try LoopbackServer(answer: Array("ok".utf8))
        defer { server.stop() }
        let before = HostAddresses.lookupsMade.load(ordering: .relaxed)
        let port = server.port
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    let connection = try await TCPConnection.connect(host: "localhost", port: port, until: .now + .seconds(20))
                    connection.close()
                }
            }
            try await group.waitForAll()
        }
        let made = HostAddresses.lookupsMade.load(ordering: .relaxed) - before
        XCTAssertGreaterThanOrEqual(made, 1)
        XCTAssertLessThanOrEqual(made, 8, "at most one per resolver thread before the first answer")
        let connection = try await TCPConnection.connect(host: "localhost", port: port, until: .now + .seconds(20))
        connection.close()
        XCTAssertEqual(HostAddresses.lookupsMade.load(ordering: .relaxed) - before, made, "the next one asks the cache")
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

/// Reads slower than the server sends (1 ms per read), so that data is always there and a
/// read never waits; gives up after 5,000 reads (several seconds).
private func slowReader(port: Int, until deadline: ContinuousClock.Instant, arrived: ArrivalFlag? = nil) async throws -> Int {
    let connection = try await TCPConnection.connect(host: "127.0.0.1", port: port, until: deadline)
    defer { connection.close() }
    try await connection.write(Array("hello".utf8), until: deadline)
    var total = 0
    for _ in 0..<5_000 {
        total += try await connection.read(until: deadline).count
        arrived?.value.store(true, ordering: .releasing)
        usleep(1_000)
    }
    return total
}

/// Waits until `condition` holds, failing after 10 s.
func eventuallyTrue(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
        guard ContinuousClock.now < deadline else { return XCTFail("not within 10 s") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

private final class ArrivalFlag: Sendable {
    let value = Atomic<Bool>(false)
}

private final class OrderBox: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int] = []
    func append(_ value: Int) { lock.withLock { list.append(value) } }
    var values: [Int] { lock.withLock { list } }
}
