import Foundation
import NNG
import XCTest

final class NNGTests: XCTestCase {
    private func uniqueIPC() -> String {
        "ipc:///tmp/colony-nng-test-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
    }

    private func roundTrip(_ url: String) async throws {
        let server = try Socket(.rep)
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        async let reply: Void = {
            let request = try await server.receive(timeout: .seconds(5))
            try await server.send(Array("pong:".utf8) + request)
        }()
        try await client.send(Array("ping".utf8))
        let answer = try await client.receive(timeout: .seconds(5))
        try await reply
        XCTAssertEqual(String(decoding: answer, as: UTF8.self), "pong:ping")
    }

    func testRoundTripOverInproc() async throws {
        try await roundTrip("inproc://nng-test-\(UUID().uuidString)")
    }

    func testRoundTripOverIPC() async throws {
        try await roundTrip(uniqueIPC())
    }

    func testRoundTripOverTCP() async throws {
        let server = try Socket(.rep)
        let listener = try server.listen("tcp://127.0.0.1:0")
        let port = try XCTUnwrap(listener.boundPort)
        server.close()
        try await roundTrip("tcp://127.0.0.1:\(port)")
    }

    func testHundredConcurrentContextsEachGetTheirOwnReply() async throws {
        let url = "inproc://contexts-\(UUID().uuidString)"
        let server = try Socket(.rep)
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        let serverContexts = try (0..<100).map { _ in try server.openContext() }
        let clientContexts = try (0..<100).map { _ in try client.openContext() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for context in serverContexts {
                group.addTask {
                    let request = try await context.receive(timeout: .seconds(10))
                    try await context.send(request.reversed())
                }
            }
            for (index, context) in clientContexts.enumerated() {
                group.addTask {
                    let body = Array("request-\(index)".utf8)
                    let reply = try await context.request(body, timeout: .seconds(10))
                    XCTAssertEqual(reply, body.reversed())
                }
            }
            try await group.waitForAll()
        }
    }

    func testReceiveTimesOut() async throws {
        let socket = try Socket(.pull)
        try socket.listen("inproc://timeout-\(UUID().uuidString)")
        let clock = ContinuousClock()
        let start = clock.now
        do {
            _ = try await socket.receive(timeout: .milliseconds(50))
            XCTFail("receive returned without a sender")
        } catch {
            XCTAssertTrue(error.isTimeout, "expected a timeout, got \(error)")
        }
        XCTAssertGreaterThanOrEqual(clock.now - start, .milliseconds(45))
    }

    func testCancellingAPendingReceiveThrowsCancelled() async throws {
        let socket = try Socket(.pull)
        try socket.listen("inproc://cancel-\(UUID().uuidString)")
        let receiver = Task { try await socket.receive() }
        try await Task.sleep(for: .milliseconds(20))
        receiver.cancel()
        do {
            _ = try await receiver.value
            XCTFail("cancelled receive returned a message")
        } catch let error as NNGError {
            XCTAssertTrue(error.isCancelled, "expected cancellation, got \(error)")
        }
    }

    func testSocketStillReceivesAfterACancelledReceive() async throws {
        let url = "inproc://cancel-then-receive-\(UUID().uuidString)"
        let socket = try Socket(.pull)
        try socket.listen(url)
        let receiver = Task { try await socket.receive() }
        try await Task.sleep(for: .milliseconds(20))
        receiver.cancel()
        _ = try? await receiver.value
        let sender = try Socket(.push)
        try sender.dial(url)
        try await sender.send([42])
        let received = try await socket.receive(timeout: .seconds(5))
        XCTAssertEqual(received, [42])
    }

    func testClosingWithPendingOperationsFailsThemAsClosed() async throws {
        let socket = try Socket(.rep)
        try socket.listen("inproc://close-\(UUID().uuidString)")
        let contexts = try (0..<8).map { _ in try socket.openContext() }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for context in contexts {
                group.addTask {
                    do {
                        _ = try await context.receive()
                        return false
                    } catch {
                        return (error as? NNGError)?.isClosed ?? false
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(20))
            socket.close()
            for try await closed in group { XCTAssertTrue(closed) }
        }
    }

    /// On REQ/REP contexts, as Colony uses nng (the PUSH/PULL version of this test crashed
    /// nng 1.5.2 in `nng_send_aio` while the refused pipe closed, once in a CI run).
    func testOversizedRequestIsDroppedAndSmallOnesStillFlow() async throws {
        let url = uniqueIPC()
        let server = try Socket(.rep)
        try server.setReceiveMaxBytes(1024)
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        let serving = try server.openContext()
        let asking = try client.openContext()
        do {
            _ = try await asking.request([UInt8](repeating: 7, count: 64 * 1024), timeout: .milliseconds(300))
            XCTFail("an oversized request was answered")
        } catch {
            XCTAssertTrue(error.isTimeout, "expected no reply, got \(error)")
        }
        // nng dropped the connection carrying the oversized message; the dialer reconnects and
        // REQ resends, so a small request is answered (asked again until the new connection is up).
        // Every request that arrives is answered (an abandoned one's reply is dropped by REQ).
        let serverSide = Task { () -> [[UInt8]] in
            var received: [[UInt8]] = []
            guard var request = try? await serving.receiveMessage(timeout: .seconds(20)) else { return received }
            while true {
                received.append(request.bytes)
                guard let next = try? await serving.replyThenReceiveMessage(Array(request.bytes.reversed()), within: .seconds(2)) else { return received }
                request = next
            }
        }
        var reply: [UInt8]?
        for _ in 0..<20 where reply == nil {
            reply = try? await asking.request([1, 2, 3], timeout: .milliseconds(500))
        }
        XCTAssertEqual(reply, [3, 2, 1])
        let received = await serverSide.value
        XCTAssertFalse(received.isEmpty)
        XCTAssertTrue(received.allSatisfy { $0 == [1, 2, 3] }, "the oversized request never reached the server: \(received.map(\.count))")
    }

    func testPipeEventsReportConnectAndDisconnect() async throws {
        let url = uniqueIPC()
        let server = try Socket(.rep)
        let events = try server.pipeEvents()
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        var iterator = events.makeAsyncIterator()
        let added = await iterator.next()
        XCTAssertEqual(added?.kind, .added)
        client.close()
        let removed = await iterator.next()
        XCTAssertEqual(removed?.kind, .removed)
        XCTAssertEqual(removed?.pipeID, added?.pipeID)
    }

    func testDialingNothingIsConnectionRefused() throws {
        let client = try Socket(.req)
        XCTAssertThrowsError(try client.dial("tcp://127.0.0.1:1")) { error in
            XCTAssertTrue((error as? NNGError)?.isConnectionRefused ?? false, "got \(error)")
            XCTAssertTrue("\(error)".contains("Connection refused"), "got \(error)")
        }
    }

    func testListeningOnAMalformedURLIsAnInvalidAddress() throws {
        let server = try Socket(.rep)
        XCTAssertThrowsError(try server.listen("tcp://not a host")) { error in
            XCTAssertTrue((error as? NNGError)?.isInvalidAddress ?? false, "got \(error)")
        }
    }

    func testARepContextRepliesAndReceivesTheNextRequestInOneStep() async throws {
        let url = "inproc://reply-receive-\(UUID().uuidString)"
        let server = try Socket(.rep)
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        let serving = try server.openContext()
        let serverTask = Task {
            var request = try await serving.receive(timeout: .seconds(5))
            for _ in 0..<3 { request = try await serving.reply(request + [0], thenReceiveWithin: .seconds(5)) }
            try await serving.send(request + [0])
        }
        let context = try client.openContext()
        for round in 0..<4 {
            let reply = try await context.request([UInt8(round)], timeout: .seconds(5))
            XCTAssertEqual(reply, [UInt8(round), 0])
        }
        try await serverTask.value
    }

    func testARequestWithNobodyToAnswerTimesOutAndTheContextStaysUsable() async throws {
        // nng 1.5.2 crashes if a REQ receive expires while the send is pending (nng#1702);
        // with no peer at all the send never completes: this must time out, not crash.
        let url = "inproc://nobody-\(UUID().uuidString)"
        let client = try Socket(.req)
        try client.listen(url)
        let context = try client.openContext()
        do {
            _ = try await context.request([1], timeout: .milliseconds(100))
            XCTFail("a request without a peer was answered")
        } catch {
            XCTAssertTrue(error.isTimeout, "got \(error)")
        }
        let server = try Socket(.rep)
        try server.dial(url)
        let answering = Task { try await server.send(try await server.receive(timeout: .seconds(5))) }
        let reply = try await context.request([2], timeout: .seconds(5))
        XCTAssertEqual(reply, [2])
        try await answering.value
    }

    /// Closing contexts while their socket closes, from other threads: nng 1.5.2 panics
    /// ("pthread_mutex_lock: Invalid argument") when `nng_ctx_close` runs during `nng_close`,
    /// so the wrapper must never let them overlap. (Seen once in CI, in a client's close.)
    func testContextsClosedWhileTheirSocketClosesDoNotCrash() async throws {
        for round in 0..<200 {
            let url = "inproc://close-race-\(round)-\(UUID().uuidString)"
            let server = try Socket(.rep)
            try server.listen(url)
            let client = try Socket(.req)
            try client.dial(url)
            let contexts = try (0..<8).map { _ in try client.openContext() }
            // Exchanges under way (nobody answers), as when a client closes mid-request.
            let pending = contexts.map { context in Task { _ = try? await context.request([1], timeout: .seconds(5)) } }
            _ = try await server.receive(timeout: .seconds(5))
            await withTaskGroup(of: Void.self) { group in
                for context in contexts { group.addTask { context.close() } }
                group.addTask { client.close() }
            }
            for exchange in pending { await exchange.value }
            server.close()
        }
    }

    func testCancellingAServingContextEndsItsWaitForTheNextRequest() async throws {
        let url = "inproc://cancel-serving-\(UUID().uuidString)"
        let server = try Socket(.rep)
        try server.listen(url)
        let client = try Socket(.req)
        try client.dial(url)
        let serving = try server.openContext()
        let serverTask = Task { () -> NNGError? in
            do {
                let request = try await serving.receive(timeout: .seconds(5))
                _ = try await serving.reply(request)
                return nil
            } catch {
                return error as? NNGError
            }
        }
        let reply = try await client.openContext().request([9], timeout: .seconds(5))
        XCTAssertEqual(reply, [9])
        try await Task.sleep(for: .milliseconds(20))
        serverTask.cancel()
        let ended = await serverTask.value
        XCTAssertTrue(ended?.isCancelled ?? false, "got \(String(describing: ended))")
    }
}
