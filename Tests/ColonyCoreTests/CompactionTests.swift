import ColonyCore
import ColonyModel
import XCTest

/// After a large drain the core's tables shrink back instead of staying sized for the peak.
final class CompactionTests: XCTestCase {
    func testTablesShrinkAfterADrainOnceFinishedTasksAreForgotten() throws {
        var core = CoordinatorCore()
        let count = 50_000
        let ids = try core.submit((0..<count).map { TaskSubmission(handler: "echo", input: [UInt8(truncatingIfNeeded: $0)], key: "k\($0)") },
                                  session: "s", now: 0)
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4096)
        _ = try core.report(node: node, results: [], now: 0)
        var done = 0
        while done < count {
            let batch = core.dispatch(toNode: "n", now: 1)
            XCTAssertFalse(batch.isEmpty)
            _ = try core.report(node: node, results: batch.map { TaskOutcome(id: $0.id, attempt: $0.attempt, succeeded: true, output: $0.input, node: "n") }, now: 1)
            done += batch.count
            _ = core.takeResults(session: "s", max: count)
        }
        let peak = core.taskTableCapacity
        XCTAssertGreaterThanOrEqual(peak, count)
        _ = core.compactIfSparse()
        _ = core.tick(now: 1 + core.bounds.finishedMemorySeconds + 1)
        XCTAssertTrue(core.compactIfSparse())
        XCTAssertLessThan(core.taskTableCapacity, peak / 8)
        XCTAssertFalse(core.compactIfSparse(), "once is enough: \(core.tableSizes)")
        XCTAssertFalse(core.knows(ids[0]))
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
        // Still works afterwards.
        let more = try core.submit([TaskSubmission(handler: "echo", input: [1])], session: "s", now: 100)
        _ = try core.report(node: node, results: [], now: 100)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 100).map(\.id), more)
    }
}
