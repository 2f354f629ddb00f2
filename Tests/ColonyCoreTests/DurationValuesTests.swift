import ColonyModel
import XCTest

final class DurationValuesTests: XCTestCase {
    func testConversions() {
        XCTAssertEqual(Duration.milliseconds(1500).inSeconds, 1.5)
        XCTAssertEqual(Duration.nanoseconds(2500).inMicroseconds, 2)
        XCTAssertEqual(Duration.seconds(3).inMicroseconds, 3_000_000)
        XCTAssertEqual(Duration.microseconds(200).inMillisecondsRoundedUp, 1)
        XCTAssertEqual(Duration.seconds(2).inMillisecondsRoundedUp, 2000)
        XCTAssertEqual(Duration.milliseconds(-5).inMicroseconds, 0)
        XCTAssertEqual(Duration.milliseconds(-5).inMillisecondsRoundedUp, 0)
    }
}
