import ColonyCore
import ColonyModel
import XCTest

/// Every submit's tasks belong to a job: its counts follow its tasks, its results stay in input
/// order until it is forgotten, whatever becomes of the submitting session.
final class JobRulesTests: XCTestCase {
    private let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 2)

    private func core(_ configure: (inout CoordinatorCore.Bounds) -> Void = { _ in }) -> CoordinatorCore {
        var bounds = CoordinatorCore.Bounds()
        configure(&bounds)
        var core = CoordinatorCore(bounds: bounds)
        core.journaling = true
        return core
    }

    private func tasks(_ count: Int, detached: Bool = false) -> [TaskSubmission] {
        (0..<count).map { TaskSubmission(handler: "echo", input: [UInt8($0)], detached: detached) }
    }

    private func succeed(_ id: TaskID, _ core: inout CoordinatorCore, output: [UInt8], now: Double = 1) throws {
        _ = try core.report(node: node, results: [TaskOutcome(id: id, attempt: 1, succeeded: true, output: output, node: "n")], now: now)
    }

    private func assertSound(_ core: CoordinatorCore, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(core.invariantViolations(), [], file: file, line: line)
    }

    func testEachSubmitMakesAJobWhoseCountsFollowItsTasks() throws {
        var core = core()
        let first = try core.submit(tasks(3), session: "s", now: 0, into: .new)
        let second = try core.submit(tasks(1), session: "s", now: 0, into: .new)
        XCTAssertEqual(first.job, 1)
        XCTAssertEqual(second.job, 2, "ids are dense")
        XCTAssertEqual(core.jobInfo(first.job, now: 0)?.counts, JobCounts(queued: 3))
        _ = try core.report(node: node, results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), Array(first.ids.prefix(2)))
        XCTAssertEqual(core.jobInfo(first.job, now: 0)?.counts, JobCounts(queued: 1, running: 2))
        assertSound(core)
        _ = try core.report(node: node, results: [
            TaskOutcome(id: first.ids[0], attempt: 1, succeeded: true, output: [7], node: "n"),
            TaskOutcome(id: first.ids[1], attempt: 1, succeeded: false, error: "boom", failure: .error, node: "n"),
        ], now: 2)
        let info = try XCTUnwrap(core.jobInfo(first.job, now: 4))
        XCTAssertEqual(info.counts, JobCounts(queued: 1, succeeded: 1, failed: 1))
        XCTAssertEqual(info.state, .running)
        XCTAssertEqual(info.failures, [JobFailure(id: first.ids[1], index: 1, error: "boom", reason: .error)])
        XCTAssertEqual(info.ageSeconds, 4)
        assertSound(core)
        _ = core.dispatch(toNode: "n", now: 5)
        try succeed(first.ids[2], &core, output: [9], now: 6)
        let ended = try XCTUnwrap(core.jobInfo(first.job, now: 10))
        XCTAssertEqual(ended.state, .failed)
        XCTAssertEqual(ended.elapsedSeconds, 6, "the clock stops when the last task finishes")
        assertSound(core)
    }

    func testRetriesAndDependenciesMoveTheCountsThroughWaiting() throws {
        var core = core()
        let parent = try core.submit([TaskSubmission(handler: "echo", input: [1],
                                                     options: TaskOptions(maxAttempts: 2, retryOnError: true))], session: "s", now: 0, into: .named("chain"))
        let child = try core.submit([TaskSubmission(handler: "echo", input: [2], options: TaskOptions(after: parent.ids))],
                                    session: "s", now: 0, into: .named("chain"))
        XCTAssertEqual(child.job, parent.job, "a name gathers submits")
        XCTAssertEqual(core.jobInfo(parent.job, now: 0)?.counts, JobCounts(waiting: 1, queued: 1))
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: "n", now: 0)
        _ = try core.report(node: node, results: [TaskOutcome(id: parent.ids[0], attempt: 1, succeeded: false, error: "flaky", node: "n")], now: 1)
        XCTAssertEqual(core.jobInfo(parent.job, now: 1)?.counts, JobCounts(waiting: 2), "backing off counts as waiting")
        assertSound(core)
        _ = core.tick(now: 100)
        _ = try core.report(node: node, results: [], now: 100)
        _ = core.dispatch(toNode: "n", now: 100)
        _ = try core.report(node: node, results: [TaskOutcome(id: parent.ids[0], attempt: 2, succeeded: true, output: [1], node: "n")], now: 101)
        XCTAssertEqual(core.jobInfo(parent.job, now: 101)?.counts, JobCounts(queued: 1, succeeded: 1))
        assertSound(core)
    }

    func testASubmitIntoAnUnknownOrBadJobChangesNothing() throws {
        var core = core()
        XCTAssertThrowsError(try core.submit(tasks(2), session: "s", now: 0, into: .existing(42)))
        XCTAssertThrowsError(try core.submit(tasks(2), session: "s", now: 0, into: .named("123")), "a name of digits reads as an id")
        XCTAssertThrowsError(try core.submit(tasks(2), session: "s", now: 0, into: .named("bad\nname")))
        XCTAssertThrowsError(try core.submit([TaskSubmission(handler: "", input: [])], session: "s", now: 0, into: .named("fresh")),
                             "an invalid task makes no job either")
        XCTAssertEqual(core.jobInfos(now: 0), [])
        XCTAssertEqual(core.queuedCount, 0)
        XCTAssertEqual(core.takeJournal(), [])
        let made = try core.submit(tasks(1), session: "s", now: 0, into: .named("fresh"))
        XCTAssertEqual(made.job, 1, "refused submits used no job id")
        XCTAssertEqual(core.jobID(for: "fresh"), 1)
        XCTAssertEqual(core.jobID(for: "1"), 1)
        XCTAssertNil(core.jobID(for: "2"))
        let joined = try core.submit(tasks(1), session: "other", now: 0, into: .existing(1))
        XCTAssertEqual(core.jobInfo(joined.job, now: 0)?.counts.total, 2)
    }

    func testResultsComeInInputOrderUpToTheFirstUnfinishedTask() throws {
        var core = core()
        let job = try core.submit(tasks(3), session: "s", now: 0, into: .new)
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: "n", now: 0)
        try succeed(job.ids[1], &core, output: [11])
        XCTAssertEqual(try core.jobResults(job.job, from: 0, max: 10), JobResultsPage(results: [], next: 0, total: 3, ended: false),
                       "the second result waits for the first")
        try succeed(job.ids[0], &core, output: [10])
        let page = try core.jobResults(job.job, from: 0, max: 10)
        XCTAssertEqual(page.results.map(\.output), [[10], [11]])
        XCTAssertEqual(page.next, 2)
        XCTAssertEqual(try core.jobResults(job.job, from: 0, max: 1).next, 1, "pages are bounded")
        // The session takes its results: the job still has them.
        XCTAssertEqual(core.takeResults(session: "s", max: 10).results.count, 2)
        XCTAssertEqual(try core.jobResults(job.job, from: 0, max: 10).results.count, 2)
        XCTAssertTrue(core.takeJournal().contains(.delivered(job.ids[0])), "its row stays for the job")
        _ = core.dispatch(toNode: "n", now: 2)
        try succeed(job.ids[2], &core, output: [12], now: 3)
        let last = try core.jobResults(job.job, from: 2, max: 10)
        XCTAssertEqual(last.results.map(\.output), [[12]])
        XCTAssertTrue(last.ended)
        assertSound(core)
    }

    func testADetachedJobOutlivesItsSessionAndAnAttachedOneDoesNot() throws {
        var core = core { $0.sessionIdleSeconds = 10 }
        let detached = try core.submit(tasks(2, detached: true), session: "gone-detached", now: 0, into: .new)
        let attached = try core.submit(tasks(2), session: "gone-attached", now: 0, into: .new)
        // A task added to a detached job by an attached client is exempt too.
        let added = try core.submit(tasks(1), session: "late", now: 0, into: .existing(detached.job))
        XCTAssertEqual(added.job, detached.job)
        _ = core.tick(now: 0)
        _ = core.tick(now: 20)
        XCTAssertEqual(core.jobInfo(detached.job, now: 20)?.counts, JobCounts(queued: 3), "no client needed")
        XCTAssertEqual(core.jobInfo(detached.job, now: 20)?.detached, true)
        XCTAssertEqual(core.jobInfo(attached.job, now: 20)?.counts, JobCounts(cancelled: 2), "its client went away")
        _ = try core.report(node: node, results: [], now: 20)
        for task in core.dispatch(toNode: "n", now: 20) { try succeed(task.id, &core, output: [UInt8(task.id)], now: 21) }
        _ = core.dispatch(toNode: "n", now: 21).map { try? succeed($0.id, &core, output: [UInt8($0.id)], now: 22) }
        _ = core.tick(now: 100)
        let results = try core.jobResults(detached.job, from: 0, max: 10)
        XCTAssertEqual(results.results.map(\.id), detached.ids + added.ids)
        XCTAssertTrue(results.ended)
        assertSound(core)
    }

    func testCancelStopsTheJobAndFreesItsResultsAndForgetFollows() throws {
        var core = core()
        let job = try core.submit(tasks(3), session: "s", now: 0, into: .named("batch"))
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: "n", now: 0)
        try succeed(job.ids[0], &core, output: [1, 2, 3])
        XCTAssertThrowsError(try core.forget(job: job.job), "a running job is cancelled first")
        let cancelled = try core.cancel(job: job.job, now: 2)
        XCTAssertEqual(cancelled.cancelled, 2)
        XCTAssertEqual(core.takeCancellations(forNode: "n"), [job.ids[1]], "the running one is stopped on its node")
        let info = try XCTUnwrap(core.jobInfo(job.job, now: 2))
        XCTAssertEqual(info.state, .cancelled)
        XCTAssertEqual(info.counts, JobCounts(succeeded: 1, cancelled: 2))
        XCTAssertThrowsError(try core.jobResults(job.job, from: 0, max: 10), "its results were freed")
        XCTAssertThrowsError(try core.submit(tasks(1), session: "s", now: 2, into: .named("batch")))
        assertSound(core)
        try core.forget(job: job.job)
        XCTAssertNil(core.jobInfo(job.job, now: 3))
        XCTAssertNil(core.jobID(for: "batch"))
        XCTAssertThrowsError(try core.forget(job: job.job))
        XCTAssertThrowsError(try core.cancel(job: 99, now: 3))
        XCTAssertEqual(try core.submit(tasks(1), session: "s", now: 3, into: .named("batch")).job, 2, "the name is free, the id is new")
        assertSound(core)
    }

    func testTheResultBoundForgetsTheOldestEndedJobsAttachedFirst() throws {
        // Each result costs its output plus 64 bytes: three of 100-byte outputs fit in 500.
        var core = core { $0.jobResultBytesMax = 500 }
        var jobs: [JobID] = []
        _ = try core.report(node: node, results: [], now: 0)
        for (index, detached) in [true, false, false, false].enumerated() {
            let job = try core.submit(tasks(1, detached: detached), session: "s\(index)", now: Double(index), into: .new)
            jobs.append(job.job)
            _ = core.dispatch(toNode: "n", now: Double(index))
            try succeed(job.ids[0], &core, output: [UInt8](repeating: 1, count: 100), now: Double(index))
        }
        XCTAssertNil(core.jobInfo(jobs[1], now: 5), "the oldest attached job went first")
        XCTAssertNotNil(core.jobInfo(jobs[0], now: 5), "the detached one stays while an attached one can go")
        XCTAssertNotNil(core.jobInfo(jobs[3], now: 5))
        assertSound(core)
    }

    func testTheJobCountBoundRefusesWhenNoJobHasEnded() throws {
        var core = core { $0.jobsMax = 2 }
        let first = try core.submit(tasks(1), session: "s", now: 0, into: .new)
        _ = try core.submit(tasks(1), session: "s", now: 0, into: .new)
        XCTAssertThrowsError(try core.submit(tasks(1), session: "s", now: 0, into: .new)) { error in
            guard case CoordinatorCore.Refusal.unavailable = error else { return XCTFail("\(error)") }
        }
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: "n", now: 0)
        try succeed(first.ids[0], &core, output: [1])
        XCTAssertEqual(try core.submit(tasks(1), session: "s", now: 1, into: .new).job, 3)
        XCTAssertNil(core.jobInfo(first.job, now: 1), "the ended job made room")
        assertSound(core)
    }

    func testTheNewestJobsComeFirstWhetherFewOrMany() throws {
        var core = core()
        for _ in 0..<10 { _ = try core.submit(tasks(1), session: "s", now: 0, into: .new) }
        XCTAssertEqual(core.jobInfos(now: 0, max: 2).map(\.id), [10, 9], "many: counted down from the newest")
        XCTAssertEqual(core.jobInfos(now: 0, max: 5).map(\.id), [10, 9, 8, 7, 6], "few: sorted")
        XCTAssertEqual(core.jobsByState, [.running: 10])
    }
}
