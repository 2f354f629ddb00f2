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
        let order = Arrivals()
        let waiters = (1...3).map { index in
            Task {
                let taken = try await permits.take(1, until: far)
                order.list.withLock { $0.append(index) }
                return taken
            }
        }
        try await eventually("three wait", { permits.waiting == 3 })
        permits.give(2)
        let a = try await waiters[0].value, b = try await waiters[1].value
        XCTAssertEqual([a, b], [1, 1])
        XCTAssertEqual(order.list.withLock { $0 }, [1, 2])
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

private final class Arrivals: Sendable {
    let list = Mutex<[Int]>([])
}
