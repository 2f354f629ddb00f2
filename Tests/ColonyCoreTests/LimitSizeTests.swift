import ColonyCore
import ColonyModel
import XCTest

final class LimitSizeTests: XCTestCase {
    /// A limit of size 0 would accept tasks that use it and never run them.
    func testALimitOfSizeZeroIsRefusedAndChangesNothing() throws {
        var core = CoordinatorCore()
        XCTAssertThrowsError(try core.setLimit("db", size: 0)) { error in
            XCTAssertEqual(error as? CoordinatorCore.Refusal, .invalidArgument("limit size must be 1 to 1000000, not 0"))
        }
        XCTAssertThrowsError(try core.setLimit("db", size: -3))
        XCTAssertTrue(core.allLimits.isEmpty)
        // Nor can an existing limit be shrunk to 0.
        try core.setLimit("db", size: 2)
        XCTAssertThrowsError(try core.setLimit("db", size: 0))
        XCTAssertEqual(core.allLimits.map(\.size), [2])
        try core.setLimit("db", size: 1)
        XCTAssertEqual(core.allLimits.map(\.size), [1])
    }
}
