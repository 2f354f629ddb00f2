import XCTest

/// The tests' one wait: it returns what it waited for, and fails at its deadline naming it.
final class EventuallyTests: XCTestCase {
    func testReturnsTheFirstAcceptedValue() async throws {
        var observed = 0
        let value = try await eventually(poll: .milliseconds(1), "three observations", { observed += 1; return observed }, until: { $0 >= 3 })
        XCTAssertEqual(value, 3)
        let found = try await eventually(poll: .milliseconds(1), "a value", firstOf: { observed += 1; return observed > 5 ? "found" : nil })
        XCTAssertEqual(found, "found")
    }

    func testTimesOutAtItsDeadlineNamingWhatItAwaitedAndTheLastValue() async throws {
        let start = ContinuousClock.now
        do {
            try await eventually(timeout: .milliseconds(200), "the answer", { 41 }, until: { $0 == 42 })
            XCTFail("a condition that never holds was accepted")
        } catch let timeout as EventuallyTimeout {
            XCTAssertTrue(timeout.description.contains("waiting for: the answer"), timeout.description)
            XCTAssertTrue(timeout.description.hasSuffix("last observed: 41"), timeout.description)
        }
        let took = ContinuousClock.now - start
        XCTAssertGreaterThanOrEqual(took, .milliseconds(200))
        XCTAssertLessThan(took, .seconds(5), "a hard deadline, not an unbounded loop")
        XCTAssertThrowsError(try eventuallyBlocking(timeout: .milliseconds(100), "a flag", { false }, until: { $0 })) { error in
            XCTAssertEqual((error as? EventuallyTimeout)?.description.hasSuffix("last observed: false"), true, "\(error)")
        }
    }

    func testAnErrorWhileObservingEndsTheWaitAtOnce() async throws {
        struct Broken: Error {}
        var calls = 0
        do {
            try await eventually("never") { calls += 1; throw Broken() }
            XCTFail("the error was swallowed")
        } catch is Broken {
            XCTAssertEqual(calls, 1)
        }
    }
}
