import ColonyCore
import ColonyModel
@testable import ColonyStore
import Foundation
import XCTest

/// The journal against a real SQLite file in a temporary folder.
final class StoreTests: XCTestCase {
    private var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "colony-store-\(UUID().uuidString)"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// A failure's kind survives the journal; a row of an older journal ("failed", no kind)
    /// comes back with the kind read from its words.
    func testAFailuresKindComesBackAfterReopening() async throws {
        let store = try Store(directory: folder)
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        let ids = try core.submit([TaskSubmission(handler: "fail", input: []), TaskSubmission(handler: "fail", input: [])], session: "s")
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4)
        _ = try core.report(node: node, results: [], now: 0)
        _ = core.dispatch(toNode: node.name)
        _ = try core.report(node: node, results: [
            TaskOutcome(id: ids[0], attempt: 1, succeeded: false, error: "crashed: signal 6", failure: .crashed, node: "n"),
            TaskOutcome(id: ids[1], attempt: 1, succeeded: false, error: "it timed out upstream", failure: .error, node: "n"),
        ], now: 1)
        try await store.waitDurable(store.append(core.takeJournal(), nextID: ids[1] + 1))
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.tasks.map { $0.outcome?.failure }, [.crashed, .error], "not read again from the words")
    }

    func testWhatWasCommittedComesBackAfterReopening() async throws {
        let store = try Store(directory: folder)
        store.start()
        let options = TaskOptions(priority: 3, uses: ["db"], maxAttempts: 2, retryOnError: true, timeoutSeconds: 1.5,
                                  requiredLabels: ["gpu": "1", "zone": "a=b; ü"], pool: .process)
        var core = CoordinatorCore()
        core.journaling = true
        try core.setLimit("db", size: 2)
        let ids = try core.submit([TaskSubmission(handler: "work", input: [1, 2, 3], options: options, poolHandler: "exec"),
                                   TaskSubmission(handler: "echo", input: []),
                                   TaskSubmission(handler: "echo", input: [9])], session: "s")
        _ = try core.addToCounter("hits", 5)
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4)
        _ = try core.report(node: node, results: [], now: 0)
        let dispatched = core.dispatch(toNode: node.name)
        let echo = dispatched.first { $0.id == ids[1] }!
        _ = try core.report(node: node, results: [TaskOutcome(id: echo.id, attempt: echo.attempt, succeeded: true, output: [7], node: "n",
                                                              counterOps: [CounterOp(name: "hits", delta: 2)])], now: 1)
        let third = dispatched.first { $0.id == ids[2] }!
        _ = try core.report(node: node, results: [TaskOutcome(id: third.id, attempt: third.attempt, succeeded: true, output: [8], node: "n")], now: 1)
        XCTAssertEqual(core.takeResult(of: ids[2])?.output, [8], "handed out: kept only for its job")
        let ticket = store.append(core.takeJournal(), nextID: ids[2] + 1)
        try await store.waitDurable(ticket)
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.counters, ["hits": 7])
        XCTAssertEqual(state.limits, ["db": 2])
        XCTAssertEqual(state.nextID, ids[2] + 1)
        XCTAssertEqual(state.tasks.map(\.id), [ids[0], ids[1], ids[2]])
        XCTAssertEqual(state.tasks.map(\.delivered), [false, false, true])
        var expected = TaskSubmission(handler: "work", input: [1, 2, 3], options: options, poolHandler: "exec")
        expected.job = 1
        XCTAssertEqual(state.tasks[0].submission, expected)
        XCTAssertNil(state.tasks[0].outcome, "unfinished")
        XCTAssertEqual(state.tasks[1].outcome?.output, [7])
        XCTAssertEqual(state.tasks[1].outcome?.succeeded, true)

        var restored = CoordinatorCore()
        restored.restore(state, now: 0)
        XCTAssertEqual(restored.queuedCount, 1, "the unfinished task is queued again")
        XCTAssertEqual(restored.takeResult(of: ids[1])?.output, [7], "the unfetched result is still there")
        XCTAssertEqual(restored.counter("hits"), 7)
        XCTAssertEqual(try restored.submit([TaskSubmission(handler: "echo", input: [])], session: "s"), [ids[2] + 1], "ids are never reused")
        XCTAssertTrue(restored.invariantViolations().isEmpty, "\(restored.invariantViolations())")
    }

    /// A core rebuilt row by row while the store reads (`recover(each:)` into a
    /// `Restoration`, what the coordinator does) is the core `restore(recover())` builds:
    /// results, queue, waiting dependents, keys, counters, limits and ids alike.
    func testRestoringRowByRowBuildsTheSameCoreAsRestoringAllRows() async throws {
        let store = try Store(directory: folder)
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        try core.setLimit("db", size: 2)
        _ = try core.addToCounter("hits", 5)
        let first = try core.submit([TaskSubmission(handler: "echo", input: [1]),
                                     TaskSubmission(handler: "echo", input: [2], key: "k-2")], session: "a")
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1)
        _ = try core.report(node: node, results: [], now: 0)
        let running = core.dispatch(toNode: node.name)
        _ = try core.report(node: node, results: [TaskOutcome(id: running[0].id, attempt: running[0].attempt, succeeded: true,
                                                              output: [9], node: "n")], now: 1)
        let later = try core.submit([TaskSubmission(handler: "work", input: [3], options: TaskOptions(uses: ["db"], after: [first[1]])),
                                     TaskSubmission(handler: "work", input: [4], options: TaskOptions(priority: 5))], session: "b")
        try await store.waitDurable(store.append(core.takeJournal(), nextID: core.nextTaskID))
        store.close()

        let reopened = try Store(directory: folder)
        var whole = CoordinatorCore()
        whole.restore(try reopened.recover(), now: 0)
        var restoration = CoordinatorCore.Restoration(core: CoordinatorCore(), now: 0)
        let header = try reopened.recover(expecting: { restoration.reserve($0) }, jobs: { for job in $0 { restoration.add(job) } },
                                          each: { restoration.add($0) })
        XCTAssertTrue(header.tasks.isEmpty, "rows went to the restoration, not into the state")
        XCTAssertEqual(restoration.unfinished, 3)
        XCTAssertEqual(restoration.finished, 1)
        var rowByRow = restoration.finish(with: header)
        reopened.close()

        XCTAssertEqual(rowByRow.status(now: 0), whole.status(now: 0))
        XCTAssertEqual(rowByRow.taskCounts(), whole.taskCounts())
        XCTAssertEqual(rowByRow.nextTaskID, whole.nextTaskID)
        XCTAssertEqual(rowByRow.counter("hits"), 5)
        XCTAssertEqual(rowByRow.allLimits.map(\.name), ["db"])
        XCTAssertEqual(rowByRow.taskInfo(later[0])?.phase, whole.taskInfo(later[0])?.phase, "waits for its dependency in both")
        XCTAssertEqual(try rowByRow.submit([TaskSubmission(handler: "echo", input: [2], key: "k-2")], session: "a"), [first[1]],
                       "a known key still names its task")
        XCTAssertEqual(rowByRow.takeResult(of: running[0].id)?.output, [9])
        _ = try rowByRow.report(node: NodeAnnouncement(name: "n2", host: "h", threadSlots: 4), results: [], now: 0)
        _ = try whole.report(node: NodeAnnouncement(name: "n2", host: "h", threadSlots: 4), results: [], now: 0)
        XCTAssertEqual(rowByRow.dispatch(toNode: "n2", now: 0).map(\.id), whole.dispatch(toNode: "n2", now: 0).map(\.id),
                       "the same queue, in the same order")
        XCTAssertTrue(rowByRow.invariantViolations().isEmpty, "\(rowByRow.invariantViolations())")
    }

    /// The most holders a limit had at once survives a restart (it was lost before: a
    /// restarted coordinator said 0).
    func testALimitsHighWaterMarkSurvivesARestart() async throws {
        let store = try Store(directory: folder)
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        try core.setLimit("db", size: 3)
        _ = try core.submit((0..<2).map { _ in TaskSubmission(handler: "work", input: [], options: TaskOptions(uses: ["db"])) }, session: "s")
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 4)
        _ = try core.report(node: node, results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: node.name).count, 2)
        XCTAssertEqual(core.allLimits.first?.highWater, 2)
        try await store.waitDurable(store.append(core.takeJournal(), nextID: core.nextTaskID))
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.limitHighWater, ["db": 2])
        var restored = CoordinatorCore()
        restored.restore(state, now: 0)
        XCTAssertEqual(restored.allLimits.first?.highWater, 2)
        XCTAssertEqual(restored.allLimits.first?.inUse, 0, "leases are not journaled: the tasks are queued again")
    }

    /// A counter change nng resends after the coordinator restarted (its reply was lost) is
    /// answered from the journal, not applied again. Failed before: the add applied twice.
    func testAKeyedCounterChangeIsAppliedOnceAcrossARestart() async throws {
        let store = try Store(directory: folder)
        store.start()
        var bounds = CoordinatorCore.Bounds()
        bounds.counterKeysKept = 2
        var core = CoordinatorCore(bounds: bounds)
        core.journaling = true
        XCTAssertEqual(try core.addToCounter("hits", 5, key: "s#c1"), 5)
        XCTAssertEqual(try core.addToCounter("hits", 5, key: "s#c1"), 5, "a resend gets the first reply")
        XCTAssertEqual(try core.setCounter("hits", 9, key: "s#c2"), 5)
        XCTAssertEqual(try core.compareAndSetCounter("hits", expected: 9, new: 10, key: "s#c3").swapped, true)
        XCTAssertEqual(core.counter("hits"), 10)
        XCTAssertEqual(try core.addToCounter("hits", 1, key: "s#c1"), 11, "c1 was forgotten (2 keys kept): applied as new")
        try await store.waitDurable(store.append(core.takeJournal(), nextID: 1))
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.counterKeys.map(\.key), ["s#c3", "s#c1"], "the kept keys, oldest first")
        var restored = CoordinatorCore(bounds: bounds)
        restored.restore(state, now: 0)
        XCTAssertEqual(try restored.compareAndSetCounter("hits", expected: 9, new: 10, key: "s#c3").swapped, true,
                       "the resend after the restart gets the first reply")
        XCTAssertEqual(try restored.addToCounter("hits", 1, key: "s#c1"), 11)
        XCTAssertEqual(restored.counter("hits"), 11, "nothing applied twice")
        XCTAssertEqual(try restored.addToCounter("hits", 1), 12, "without a key every add applies")
    }

    func testANodeStillRunningARestoredTaskKeepsItAndItsResultCounts() throws {
        var state = RecoveredState()
        state.tasks = [RecoveredTask(id: 7, submission: TaskSubmission(handler: "work", input: []), session: "s", outcome: nil),
                       RecoveredTask(id: 8, submission: TaskSubmission(handler: "work", input: []), session: "s", outcome: nil)]
        state.nextID = 9
        var core = CoordinatorCore()
        core.restore(state, now: 0)
        XCTAssertEqual(core.queuedCount, 2)
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1)
        // The node ran task 7 before the restart; it says so with its first acknowledged pull.
        _ = try core.report(node: node, results: [], now: 1, running: [7], ackedReplySeq: 41)
        XCTAssertEqual(core.queuedCount, 1, "task 7 stays with its node")
        XCTAssertEqual(core.adoptedTotal, 1)
        XCTAssertEqual(core.dispatch(toNode: "n").map(\.id), [], "its one slot is taken by task 7")
        // Its result carries the attempt number from before the restart.
        _ = try core.report(node: node, results: [TaskOutcome(id: 7, attempt: 3, succeeded: true, output: [1], node: "n",
                                                              counterOps: [CounterOp(name: "c", delta: 5)])], now: 2)
        XCTAssertEqual(core.takeResult(of: 7)?.output, [1])
        XCTAssertEqual(core.counter("c"), 5)
        XCTAssertEqual(core.dispatch(toNode: "n").map(\.id), [8])
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testAFolderOfAnotherFormatIsRefusedWithAClearMessage() throws {
        let store = try Store(directory: folder)
        store.close()
        let database = try Database(path: folder + "/colony.db")
        try database.execute("UPDATE meta SET value = 'colony-state 99' WHERE key = 'format'")
        database.close()
        XCTAssertThrowsError(try Store(directory: folder)) { error in
            XCTAssertTrue("\(error)".contains("was written in format 'colony-state 99'"), "\(error)")
        }
    }

    func testAFileThatIsNotADatabaseIsRefused() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: folder + "/colony.db"))
        XCTAssertThrowsError(try Store(directory: folder)) { error in
            XCTAssertTrue("\(error)".contains("not a Colony state file"), "\(error)")
        }
    }

    /// Detached work stays exempt from the session timeout across a restart.
    func testADetachedSubmissionStaysDetachedAfterReopening() async throws {
        let store = try Store(directory: folder)
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        let ids = try core.submit([TaskSubmission(handler: "echo", input: [1], detached: true)], session: "d")
            + core.submit([TaskSubmission(handler: "echo", input: [2])], session: "a")
        try await store.waitDurable(store.append(core.takeJournal(), nextID: ids[1] + 1))
        store.close()

        let reopened = try Store(directory: folder)
        let state = try reopened.recover()
        reopened.close()
        XCTAssertEqual(state.tasks.map(\.submission.detached), [true, false])
    }

    /// Rows deleted as results go leave free pages; the writer hands them back to the file
    /// system, so a drained journal shrinks instead of staying the size of its peak.
    func testAJournalMostlyFreedShrinks() async throws {
        let store = try Store(directory: folder)
        store.vacuumInterval = .zero
        store.start()
        var core = CoordinatorCore()
        core.journaling = true
        let ids = try core.submit((0..<5000).map { TaskSubmission(handler: "echo", input: [UInt8](repeating: 7, count: 2000), key: "k\($0)") },
                                  session: "s")
        try await store.waitDurable(store.append(core.takeJournal(), nextID: ids.last! + 1))
        let full = try store.pageCounts()
        XCTAssertGreaterThan(full.pages, 2000)
        _ = core.cancel(ids, now: 0)
        _ = core.takeResults(session: "s", max: 10_000)
        // Handed out, the results stay for their job until it is forgotten.
        try core.forget(job: 1)
        try await store.waitDurable(store.append(core.takeJournal(), nextID: ids.last! + 1))
        // The writer looks after each commit; a few small commits give it its turns.
        let deadline = ContinuousClock.now + .seconds(20)
        while try store.pageCounts().pages * 4 > full.pages {
            guard ContinuousClock.now < deadline else { XCTFail("the journal did not shrink: \(try store.pageCounts()) of \(full)"); break }
            _ = try core.addToCounter("tick", 1)
            try await store.waitDurable(store.append(core.takeJournal(), nextID: ids.last! + 1))
        }
        store.close()
        let size = (try FileManager.default.attributesOfItem(atPath: folder + "/colony.db")[.size] as? Int) ?? 0
        XCTAssertLessThan(size, full.pages * 4096 / 4, "the file itself is smaller")
    }

    /// A journal made before incremental vacuum is converted when it is opened.
    func testAnOlderJournalIsConvertedToIncrementalVacuum() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let old = try Database(path: folder + "/colony.db")
        try old.execute("PRAGMA auto_vacuum=NONE; CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES('format', 'colony-state 1');")
        XCTAssertEqual(try old.scalarText("PRAGMA auto_vacuum"), "0")
        old.close()
        let store = try Store(directory: folder)
        store.close()
        let reopened = try Database(path: folder + "/colony.db")
        XCTAssertEqual(try reopened.scalarText("PRAGMA auto_vacuum"), "2")
        reopened.close()
    }

    func testListsSurviveTheirEncoding() {
        let strings = ["", "a", "multi\nline", "ünïcödé"]
        XCTAssertEqual(Strings.decode(Strings.encode(strings)), strings)
        let ids: [TaskID] = [0, 1, .max, 1 << 40]
        XCTAssertEqual(IDs.decode(IDs.encode(ids)), ids)
    }
}
