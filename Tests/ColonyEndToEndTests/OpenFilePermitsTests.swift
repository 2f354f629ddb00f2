import ColonyNode
import Synchronization
import XCTest

/// Fetches wait for an open file in arrival order, within their deadline, and a cancelled or
/// timed-out waiter takes nothing with it.
final class OpenFilePermitsTests: XCTestCase {
    func testTakersWaitInOrderAndGivingBackLetsTheNextIn() async throws {
        let permits = OpenFilePermits(capacity: 2)
        let far = ContinuousClock.now + .seconds(30)
        let first = try await permits.take(2, until: far)
        XCTAssertEqual(first, 2)
        // Each waiter arrives once the one before waits (tasks start in no set order).
        var waiters: [Task<Int?, any Error>] = []
        for index in 1...3 {
            waiters.append(Task { try await permits.take(1, until: far) })
            try await eventually("waiter \(index) waits", { permits.waiting == index })
        }
        permits.give(2)
        let a = try await waiters[0].value, b = try await waiters[1].value
        XCTAssertEqual([a, b], [1, 1], "the first two to arrive are let in")
        XCTAssertEqual(permits.waiting, 1, "the third still waits")
        permits.give(1)
        let c = try await waiters[2].value
        XCTAssertEqual(c, 1)
        permits.give(2)
        XCTAssertEqual(permits.free, 2)
    }

    func testAWaiterPastItsDeadlineGetsNilAndTakesNothing() async throws {
        let permits = OpenFilePermits(capacity: 1)
        _ = try await permits.take(1, until: .now + .seconds(30))
        let taken = try await permits.take(1, until: .now + .milliseconds(50))
        XCTAssertNil(taken)
        XCTAssertEqual(permits.waiting, 0)
        permits.give(1)
        XCTAssertEqual(permits.free, 1)
    }

    func testACancelledWaiterThrowsAndTakesNothing() async throws {
        let permits = OpenFilePermits(capacity: 1)
        _ = try await permits.take(1, until: .now + .seconds(30))
        let waiter = Task { try await permits.take(1, until: .now + .seconds(30)) }
        try await eventually("it waits", { permits.waiting == 1 })
        waiter.cancel()
        do {
            _ = try await waiter.value
            XCTFail("a cancelled waiter returned")
        } catch is CancellationError {}
        permits.give(1)
        XCTAssertEqual(permits.free, 1)
    }

    func testAskingForMoreThanTheCapacityTakesTheCapacity() async throws {
        let permits = OpenFilePermits(capacity: 1)
        let taken = try await permits.take(2, until: .now + .seconds(1))
        XCTAssertEqual(taken, 1)
    }
}
