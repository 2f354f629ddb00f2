import Foundation
@testable import NNG
import Synchronization
import XCTest

/// A socket's close waits for nng's close at most a bound: nng 1.5.2's nng_close can hang for
/// good (seen in `colony bench`'s coordinator and in a node stopped with pulls in flight),
/// and a stop must end even then.
final class BoundedCallTests: XCTestCase {
    func testACallThatNeverReturnsIsGivenUpAfterTheBound() {
        let release = DispatchSemaphore(value: 0)
        defer { release.signal() }
        let started = ContinuousClock.now
        let inTime = BoundedCall.run(waitingAtMost: .milliseconds(200)) { release.wait() }
        XCTAssertFalse(inTime)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(200))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
    }

    func testACallThatReturnsIsWaitedFor() {
        let done = Atomic<Bool>(false)
        let inTime = BoundedCall.run(waitingAtMost: .seconds(30)) {
            Thread.sleep(forTimeInterval: 0.05)
            done.store(true, ordering: .relaxed)
        }
        XCTAssertTrue(inTime)
        XCTAssertTrue(done.load(ordering: .relaxed))
    }

    func testAClosedSocketsPipeEventsEnd() async throws {
        let socket = try Socket(.rep)
        let events = try socket.pipeEvents()
        XCTAssertTrue(socket.close())
        // Fails (instead of hanging) when the stream does not end within 5 s.
        let ended = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in events {}
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        XCTAssertTrue(ended, "the pipe events did not end with the close")
    }
}
