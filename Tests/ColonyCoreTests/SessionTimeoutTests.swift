import ColonyCore
import ColonyModel
import XCTest

/// A session whose client is not heard from for the session timeout leaves nothing behind;
/// detached work is exempt.
final class SessionTimeoutTests: XCTestCase {
    private func core(idleSeconds: Double) -> CoordinatorCore {
        var bounds = CoordinatorCore.Bounds()
        bounds.sessionIdleSeconds = idleSeconds
        var core = CoordinatorCore(bounds: bounds)
        core.journaling = true
        core.recordingEvents = true
        return core
    }

    func testAnIdleSessionHasItsTasksCancelledAndItsResultsDropped() throws {
        var core = core(idleSeconds: 10)
        let gone = try core.submit((0..<3).map { TaskSubmission(handler: "echo", input: [UInt8($0)]) }, session: "gone", now: 0)
        let kept = try core.submit([TaskSubmission(handler: "echo", input: [9], detached: true)], session: "detached", now: 0)
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1)
        _ = try core.report(node: node, results: [], now: 0)
        let first = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(first.map(\.id), [gone[0]])
        _ = try core.report(node: node, results: [TaskOutcome(id: gone[0], attempt: 1, succeeded: true, output: [0], node: "n")], now: 1)
        _ = core.tick(now: 1)
        XCTAssertEqual(core.status(now: 1).resultsWaiting, 1)

        _ = core.tick(now: 9)
        XCTAssertEqual(core.status(now: 9).sessions.first { $0.session == "gone" }?.unfinished, 2, "not idle long enough yet")
        _ = core.takeJournal()
        _ = core.tick(now: 12)
        let status = core.status(now: 12)
        XCTAssertNil(status.sessions.first { $0.session == "gone" }, "the idle session is gone")
        XCTAssertEqual(status.resultsWaiting, 0, "its waiting result was dropped")
        XCTAssertEqual(status.cancelled, 2, "its unfinished tasks were cancelled")
        XCTAssertEqual(status.sessions.first { $0.session == "detached" }?.unfinished, 1, "detached work stays")
        XCTAssertTrue(core.knows(kept[0]))
        XCTAssertFalse(core.knows(gone[0]))
        // Its row stays only for its job (which keeps its results), marked as handed out.
        XCTAssertTrue(core.takeJournal().contains(.delivered(gone[0])), "dropped durably from the session")
        // Three results go: the one waiting and the two the cancellation filed.
        XCTAssertTrue(core.takeEvents().contains { if case .sessionAbandoned(session: "gone", _, 2, 3) = $0 { true } else { false } })
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    /// The session of a node's handlers (its pulls name it) idles when the node is gone: its
    /// subtasks are not cancelled, its waiting result and those still to come are dropped,
    /// and the session goes with its last task.
    func testANodesHandlerSessionGoneIdleKeepsItsTasksAndDropsTheirResults() throws {
        var core = core(idleSeconds: 10)
        let ids = try core.submit((0..<3).map { TaskSubmission(handler: "echo", input: [UInt8($0)]) }, session: "handlers", now: 0)
        core.noteHeard(session: "handlers", now: 0, fromNodesPull: true)
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 2)
        _ = try core.report(node: node, results: [], now: 0)
        let leased = core.dispatch(toNode: "n", now: 0).map(\.id)
        XCTAssertEqual(leased, [ids[0], ids[1]])
        _ = try core.report(node: node, results: [TaskOutcome(id: ids[0], attempt: 1, succeeded: true, output: [0], node: "n")], now: 1)
        XCTAssertEqual(core.status(now: 1).resultsWaiting, 1)
        _ = core.takeEvents()
        // The node that runs them is another, alive one (only the submitting node is gone).
        _ = try core.report(node: node, results: [], now: 12)
        _ = core.tick(now: 12)
        var status = core.status(now: 12)
        XCTAssertEqual(status.cancelled, 0, "a lost node's subtasks are the job's work: they go on")
        XCTAssertEqual(status.resultsWaiting, 0, "the result nobody will read was dropped")
        XCTAssertEqual(status.running + status.queued, 2)
        XCTAssertTrue(core.takeEvents().contains { if case .sessionAbandoned(session: "handlers", _, 0, 1) = $0 { true } else { false } })
        _ = try core.report(node: node, results: [], now: 30)
        _ = core.tick(now: 30)
        XCTAssertEqual(core.status(now: 30).running + core.status(now: 30).queued, 2, "still not cancelled on later ticks")
        _ = try core.report(node: node, results: [TaskOutcome(id: ids[1], attempt: 1, succeeded: true, output: [1], node: "n")], now: 31)
        _ = try core.report(node: node, results: [], now: 31)
        let last = core.dispatch(toNode: "n", now: 31).map(\.id)
        XCTAssertEqual(last, [ids[2]])
        _ = try core.report(node: node, results: [TaskOutcome(id: ids[2], attempt: 1, succeeded: true, output: [2], node: "n")], now: 32)
        status = core.status(now: 32)
        XCTAssertEqual(status.succeeded, 3)
        XCTAssertEqual(status.resultsWaiting, 0, "results arriving later are dropped too")
        XCTAssertNil(status.sessions.first { $0.session == "handlers" }, "the session went with its last task")
        XCTAssertFalse(core.knows(ids[2]))
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testASessionThatIsHeardFromStays() throws {
        var core = core(idleSeconds: 10)
        _ = try core.submit([TaskSubmission(handler: "echo", input: [1])], session: "s", now: 0)
        _ = core.tick(now: 0)
        for t in stride(from: 5.0, through: 50, by: 5) {
            core.noteHeard(session: "s", now: t)
            _ = core.tick(now: t)
        }
        XCTAssertEqual(core.status(now: 50).queued, 1)
        XCTAssertEqual(core.status(now: 50).sessions.first?.idleSeconds, 0)
    }

    func testARestoredSessionsClockStartsAtTheRestart() throws {
        var core = core(idleSeconds: 10)
        var restoration = CoordinatorCore.Restoration(core: CoordinatorCore(bounds: core.bounds), now: 100)
        restoration.add(RecoveredTask(id: 1, submission: TaskSubmission(handler: "echo", input: [1]), session: "old", outcome: nil))
        core = restoration.finish(with: RecoveredState())
        _ = core.tick(now: 100)
        _ = core.tick(now: 105)
        XCTAssertEqual(core.status(now: 105).queued, 1)
        _ = core.tick(now: 111)
        XCTAssertEqual(core.status(now: 111).queued, 0)
    }
}
