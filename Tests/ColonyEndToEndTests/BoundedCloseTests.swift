@testable import ColonyCoordinator
import Foundation
import Synchronization
import XCTest

/// A coordinator's stop waits for its socket's close at most a bound: nng 1.5.2's nng_close
/// can hang for good (seen once: `colony bench` waited 15 minutes for a coordinator stuck in
/// it), and a stop must end even then.
final class BoundedCloseTests: XCTestCase {
    func testACloseThatNeverReturnsIsGivenUpAfterTheBound() async {
        let release = DispatchSemaphore(value: 0)
        defer { release.signal() }
        let started = ContinuousClock.now
        let inTime = await BoundedClose.run(waitingAtMost: .milliseconds(200)) { release.wait() }
        XCTAssertFalse(inTime)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
    }

    func testACloseThatReturnsIsWaitedFor() async {
        let closed = Atomic<Bool>(false)
        let inTime = await BoundedClose.run(waitingAtMost: .seconds(30)) { closed.store(true, ordering: .relaxed) }
        XCTAssertTrue(inTime)
        XCTAssertTrue(closed.load(ordering: .relaxed))
    }
}
