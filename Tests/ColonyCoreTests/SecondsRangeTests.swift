import ColonyCore
import ColonyModel
import XCTest

final class SecondsRangeTests: XCTestCase {
    func testNonFiniteAndOutOfRangeSecondsAreRefusedWithOneLineNamingTheSetting() {
        for bad in [Double.infinity, -.infinity, .nan, 1e300, -1, 0, 0.0004, 2_592_000.5, .greatestFiniteMagnitude] {
            XCTAssertThrowsError(try SecondsRange.taskTimeout.milliseconds(bad, "--timeout"), "\(bad)") { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("--timeout must be a number of seconds from 0.001 to 2592000, not "), message)
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
        func message(_ seconds: Double) -> String {
            do {
                _ = try SecondsRange.wait.check(seconds, "--wait")
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(message(.infinity), "--wait must be a number of seconds from 0 to 2592000, not inf")
        XCTAssertEqual(message(-1), "--wait must be a number of seconds from 0 to 2592000, not -1")
        XCTAssertEqual(message(-0.5), "--wait must be a number of seconds from 0 to 2592000, not -0.5")
        XCTAssertEqual(message(.nan), "--wait must be a number of seconds from 0 to 2592000, not nan")
        XCTAssertEqual(message(1e300), "--wait must be a number of seconds from 0 to 2592000, not 1e+300")
    }

    func testSecondsInRangeBecomeMillisecondsRoundedUp() throws {
        XCTAssertEqual(try SecondsRange.taskTimeout.milliseconds(0.001, "t"), 1)
        XCTAssertEqual(try SecondsRange.taskTimeout.milliseconds(0.0015, "t"), 2, "never rounded down towards 0 (none)")
        XCTAssertEqual(try SecondsRange.taskTimeout.milliseconds(2.5, "t"), 2500)
        XCTAssertEqual(try SecondsRange.taskTimeout.milliseconds(2_592_000, "t"), 2_592_000_000)
        XCTAssertLessThanOrEqual(try SecondsRange.taskTimeout.milliseconds(SecondsRange.taskTimeout.most, "t"), Int(UInt32.max),
                                 "the largest timeout fits the wire's 32-bit milliseconds")
        XCTAssertEqual(try SecondsRange.wait.duration(0, "w"), .zero)
        XCTAssertEqual(try SecondsRange.drainDeadline.duration(30, "d"), .seconds(30))
        XCTAssertEqual(try SecondsRange.wait.check(5, "w"), 5)
    }
}
