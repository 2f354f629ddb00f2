import ColonyModel
import XCTest

final class BackoffTests: XCTestCase {
    func testDoublesPerFailureUpToTheCap() {
        let backoff = Backoff(baseSeconds: 0.1, maxSeconds: 1)
        XCTAssertEqual([1, 2, 3, 4, 5, 100].map { backoff.seconds(afterFailures: $0) }, [0.1, 0.2, 0.4, 0.8, 1, 1])
        XCTAssertEqual(backoff.seconds(afterFailures: 0), 0.1)
    }

    func testJitterSpreadsAroundTheWait() {
        let backoff = Backoff(baseSeconds: 2, maxSeconds: 30, jitter: 0.5)
        XCTAssertEqual(backoff.seconds(afterFailures: 1, unit: 0), 1)
        XCTAssertEqual(backoff.seconds(afterFailures: 1, unit: 0.5), 2)
        XCTAssertEqual(backoff.seconds(afterFailures: 1, unit: 0.999), 2.998, accuracy: 1e-9)
        XCTAssertEqual(backoff.delay(afterFailures: 2, unit: 0.5), .seconds(4))
    }
}
