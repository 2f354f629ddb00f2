import ColonyCore
import ColonyModel
import ColonyStore
import Foundation
import XCTest

/// Jobs come back from the journal as they were: counts, results in input order (also those
/// handed out to their session), names, detachment, cancellation, and ids never reused.
final class JobJournalTests: XCTestCase {
    private var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "colony-jobs-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: folder)
    }

    func testJobsSurviveAReopenWithTheirResultsAndCounts() async throws {
        let store = try Store(directory: folder)
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 8)
        let nightly = try core.submit((0..<3).map { TaskSubmission(handler: "echo", input: [UInt8($0)], detached: true) },
                                      session: "gone", now: 0, into: .named("nightly"))
        let doomed = try core.submit([TaskSubmission(handler: "echo", input: [9])], session: "s", now: 0, into: .new)
        let forgotten = try core.submit([TaskSubmission(handler: "echo", input: [8])], session: "s", now: 0, into: .new)
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: "n", now: 0)
        _ = try core.report(node: node, results: [
            TaskOutcome(id: nightly.ids[0], attempt: 1, succeeded: true, output: [10], node: "n"),
            TaskOutcome(id: nightly.ids[1], attempt: 1, succeeded: false, error: "boom", failure: .error, node: "n"),
            TaskOutcome(id: forgotten.ids[0], attempt: 1, succeeded: true, output: [8], node: "n"),
        ], now: 1)
        // The session takes one result: its job still has it.
        XCTAssertEqual(core.takeResult(of: nightly.ids[0])?.output, [10])
        _ = try core.cancel(job: doomed.job, now: 1)
        _ = core.takeResult(of: forgotten.ids[0])
        try core.forget(job: forgotten.job)
        let before = try XCTUnwrap(core.jobInfo(nightly.job, now: 1))
        try await store.waitDurable(store.append(core.takeJournal(), nextID: core.nextTaskID))
        store.close()

        let reopened = try Store(directory: folder)
        var (restored, _) = try Self.restore(from: reopened)
        reopened.close()
        let after = try XCTUnwrap(restored.jobInfo(nightly.job, now: 0))
        XCTAssertEqual(after.counts, JobCounts(queued: 1, succeeded: 1, failed: 1), "the running task is queued again")
        XCTAssertEqual(after.failures, before.failures)
        XCTAssertEqual(after.name, "nightly")
        XCTAssertTrue(after.detached)
        XCTAssertEqual(restored.jobID(for: "nightly"), nightly.job)
        XCTAssertEqual(try restored.jobResults(nightly.job, from: 0, max: 10).results.map(\.output), [[10], []])
        XCTAssertEqual(restored.jobInfo(doomed.job, now: 0)?.state, .cancelled)
        XCTAssertNil(restored.jobInfo(forgotten.job, now: 0))
        XCTAssertNil(restored.taskInfo(nightly.ids[0]), "handed out to its session: only its job holds it")
        XCTAssertEqual(try restored.submit([TaskSubmission(handler: "echo", input: [])], session: "s", now: 0, into: .new).job, 4,
                       "job ids are never reused")
        XCTAssertEqual(restored.invariantViolations(), [])
    }

    private static func restore(from store: Store) throws -> (CoordinatorCore, RecoveredState) {
        var restoration = CoordinatorCore.Restoration(core: CoordinatorCore(), now: 0)
        let header = try store.recover(jobs: { for job in $0 { restoration.add(job) } }, each: { restoration.add($0) })
        return (restoration.finish(with: header), header)
    }
}
