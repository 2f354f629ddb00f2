#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sockets
import Synchronization
import XCTest

/// A number many tasks add to.
final class Tally: Sendable {
    let value = Atomic<Int>(0)
}

/// A `colony://` server for the tests: answers each frame with what `answer` returns for its
/// payload (nil: no answer), after `delay` when given, each frame on a task of its own.
final class FrameServer: Sendable {
    let listener: TCPListener
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)
    let connectionsAccepted = Tally()

    init(port: Int = 0, answer: @escaping @Sendable ([UInt8]) async -> [UInt8]?) throws {
        listener = try TCPListener(host: "127.0.0.1", port: port)
        let listener = listener
        let accepted = connectionsAccepted
        let serving = Task {
                await withDiscardingTaskGroup { group in
                    while let connection = try? await listener.accept(frameBytesMax: 1 << 24) {
                        accepted.value.add(1, ordering: .relaxed)
                        group.addTask {
                            await withTaskCancellationHandler {
                                await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
                                    connection.startReading(onFrames: { frames in
                                        for frame in frames {
                                            Task {
                                                if let reply = await answer(frame.payload) { try? connection.send(id: frame.id, reply) }
                                            }
                                        }
                                    }, onEnd: { _ in ended.resume() })
                                }
                            } onCancel: {
                                connection.shutDown()
                            }
                            connection.close()
                        }
                    }
                }
        }
        task.withLock { $0 = serving }
    }

    var port: Int { listener.port }

    func stop() {
        task.withLock { $0?.cancel() }
        listener.close()
    }
}

final class FramedChannelTests: XCTestCase {
    func testFramesSplitWhereTheyEndAndAnOversizedOneIsRefused() throws {
        var bytes: [UInt8] = []
        FrameFormat.append(id: 7, [1, 2, 3], to: &bytes)
        FrameFormat.append(id: 1 << 40, [], to: &bytes)
        FrameFormat.append(id: 9, Array(repeating: 5, count: 300), to: &bytes)
        for cut in 0...bytes.count {
            let (frames, used) = try FrameFormat.split(Array(bytes[..<cut]), frameBytesMax: 1000)
            let whole = [15, 27, 339].filter { $0 <= cut }
            XCTAssertEqual(frames.count, whole.count, "cut at \(cut)")
            XCTAssertEqual(used, whole.last ?? 0)
        }
        let (frames, _) = try FrameFormat.split(bytes, frameBytesMax: 1000)
        XCTAssertEqual(frames, [.init(id: 7, payload: [1, 2, 3]), .init(id: 1 << 40, payload: []), .init(id: 9, payload: Array(repeating: 5, count: 300))])
        XCTAssertThrowsError(try FrameFormat.split(bytes, frameBytesMax: 299)) { error in
            XCTAssertEqual((error as? SocketError)?.reason, .frameTooLarge(300, 299))
        }
    }

    func testManyRequestsAtOnceGetTheirOwnRepliesWhateverTheOrder() async throws {
        // Replies come back in another order than the requests went (the larger the number,
        // the sooner), so ids, not order, must match them.
        let server = try FrameServer { payload in
            let n = Int(payload[0])
            try? await Task.sleep(for: .milliseconds(200 - n))
            return payload + payload
        }
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        defer { channel.close() }
        let replies = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for n in 0..<150 {
                group.addTask { (n, try await channel.request([UInt8(n), 1, 2], until: .now + .seconds(10))) }
            }
            return try await group.reduce(into: [Int: [UInt8]]()) { $0[$1.0] = $1.1 }
        }
        XCTAssertEqual(replies.count, 150)
        for (n, reply) in replies { XCTAssertEqual(reply, [UInt8(n), 1, 2, UInt8(n), 1, 2]) }
        XCTAssertEqual(server.connectionsAccepted.value.load(ordering: .relaxed), 1)
    }

    func testALargePayloadGoesWholeBothWays() async throws {
        let server = try FrameServer { $0.reversed() }
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 24, timeout: .seconds(5))
        defer { channel.close() }
        let big = (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        async let first = channel.request(big, until: .now + .seconds(20))
        async let second = channel.request([1, 2, 3], until: .now + .seconds(20))
        let (a, b) = try await (first, second)
        XCTAssertEqual(a, big.reversed())
        XCTAssertEqual(b, [3, 2, 1])
    }

    func testARequestWithoutAReplyEndsAtItsDeadline() async throws {
        let server = try FrameServer { _ in nil }
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        defer { channel.close() }
        let started = ContinuousClock.now
        do {
            _ = try await channel.request([1], until: .now + .milliseconds(300))
            XCTFail("a reply came")
        } catch {
            XCTAssertEqual(error.reason, .timedOut)
        }
        let took = ContinuousClock.now - started
        XCTAssert(took >= .milliseconds(300) && took < .seconds(2), "\(took)")
    }

    /// Deadlines are kept by a sleeper that waits for the earliest one (no periodic tick): a
    /// request with an earlier deadline than the one it sleeps for must still end on time,
    /// and the later one after it.
    func testAnEarlierDeadlineEndsOnTimeBehindALaterOne() async throws {
        let asked = Tally()
        let server = try FrameServer { _ in
            asked.value.add(1, ordering: .relaxed)
            return nil
        }
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        defer { channel.close() }
        let late = Task { () -> SocketError.Reason? in
            do throws(SocketError) {
                _ = try await channel.request([1], until: .now + .milliseconds(1500))
                return nil
            } catch {
                return error.reason
            }
        }
        // The late request is registered first (its sleeper waits 1.5 s): its frame reached the server.
        let seen = ContinuousClock.now + .seconds(5)
        while asked.value.load(ordering: .relaxed) < 1 && ContinuousClock.now < seen { await Task.yield() }
        XCTAssertEqual(asked.value.load(ordering: .relaxed), 1)
        let started = ContinuousClock.now
        do {
            _ = try await channel.request([2], until: .now + .milliseconds(200))
            XCTFail("a reply came")
        } catch {
            XCTAssertEqual(error.reason, .timedOut)
        }
        let took = ContinuousClock.now - started
        XCTAssert(took >= .milliseconds(200) && took < .milliseconds(1000), "the earlier deadline waited for the later one: \(took)")
        let lateReason = await late.value
        XCTAssertEqual(lateReason, .timedOut)
        XCTAssert(ContinuousClock.now - started >= .milliseconds(1300), "the later request ended before its deadline")
    }

    func testACancelledRequestEndsAtOnceAndTheChannelGoesOn() async throws {
        let asked = Tally()
        let server = try FrameServer { payload in
            asked.value.add(1, ordering: .relaxed)
            return payload == [0] ? nil : payload
        }
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        defer { channel.close() }
        let waiting = Task { try await channel.request([0], until: .now + .seconds(30)) }
        // Once the server has the request, cancel the wait.
        try await eventuallyTrue { asked.value.load(ordering: .relaxed) == 1 }
        let started = ContinuousClock.now
        waiting.cancel()
        do {
            _ = try await waiting.value
            XCTFail("a reply came")
        } catch let error as SocketError {
            XCTAssertEqual(error.reason, .cancelled)
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(1))
        let echo = try await channel.request([4, 2], until: .now + .seconds(5))
        XCTAssertEqual(echo, [4, 2])
    }

    func testARequestLostWithItsConnectionIsSentAgainOnTheNext() async throws {
        // The first server takes requests and dies without answering; one on the same port
        // answers. The request waits through it, as it would through a coordinator restart.
        let asked = Tally()
        let deaf = try FrameServer { _ in
            asked.value.add(1, ordering: .relaxed)
            return nil
        }
        let port = deaf.port
        let channel = try FramedChannel(host: "127.0.0.1", port: port, frameBytesMax: 1 << 20, timeout: .seconds(5),
                                        reconnectMin: .milliseconds(20), reconnectMax: .milliseconds(100))
        defer { channel.close() }
        var events = channel.events.makeAsyncIterator()
        let first = await events.next()
        XCTAssertEqual(first, .connected)
        let request = Task { try await channel.request([9, 9], until: .now + .seconds(20)) }
        try await eventuallyTrue { asked.value.load(ordering: .relaxed) == 1 }
        deaf.stop()
        let second = await events.next()
        XCTAssertEqual(second, .disconnected)
        let answering = try FrameServer(port: port) { [42] + $0 }
        defer { answering.stop() }
        let reply = try await request.value
        XCTAssertEqual(reply, [42, 9, 9])
    }

    func testAPeerThatSpeaksNNGIsNamedInOneLine() async throws {
        // What an nng REP socket sends first on a new connection.
        let server = try LoopbackServer(answer: [0, 0x53, 0x50, 0, 0, 0x31, 0, 0], delay: .zero)
        defer { server.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: server.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        defer { channel.close() }
        do {
            _ = try await channel.request([1], until: .now + .seconds(10))
            XCTFail("a reply came")
        } catch {
            XCTAssertEqual("\(error)", "read a frame: the peer speaks nng's protocol, not colony:// (use its tcp:// address)")
        }
    }

    func testNothingListeningIsRefusedAtOnceAndCloseEndsWaits() async throws {
        let server = try FrameServer { _ in nil }
        let port = server.port
        server.stop()
        XCTAssertThrowsError(try FramedChannel(host: "127.0.0.1", port: port, frameBytesMax: 1 << 20, timeout: .seconds(5))) { error in
            XCTAssertEqual("\(error)", "connect: Connection refused")
        }
        let asked = Tally()
        let silent = try FrameServer { _ in
            asked.value.add(1, ordering: .relaxed)
            return nil
        }
        defer { silent.stop() }
        let channel = try FramedChannel(host: "127.0.0.1", port: silent.port, frameBytesMax: 1 << 20, timeout: .seconds(5))
        let waiting = Task { try await channel.request([1], until: .now + .seconds(30)) }
        try await eventuallyTrue { asked.value.load(ordering: .relaxed) == 1 }
        channel.close()
        do {
            _ = try await waiting.value
            XCTFail("a reply came")
        } catch let error as SocketError {
            XCTAssertEqual(error.reason, .connectionClosed)
        }
    }
}
