import ColonyCore
import ColonyModel
import XCTest

/// One test per scheduling rule of the pure core.
final class SchedulingRulesTests: XCTestCase {
    private var core = CoordinatorCore()
    private let node = NodeAnnouncement(name: "a", host: "h", threadSlots: 8)

    private func submit(_ options: TaskOptions = TaskOptions(), handler: String = "work", session: String = "s", now: Double = 0) throws -> TaskID {
        try core.submit([TaskSubmission(handler: handler, input: [], options: options)], session: session, now: now)[0]
    }

    private func pull(_ results: [TaskOutcome] = [], node: NodeAnnouncement? = nil, now: Double = 0) throws -> [DispatchedTask] {
        let who = node ?? self.node
        _ = try core.report(node: who, results: results, now: now)
        return core.dispatch(toNode: who.name, now: now)
    }

    private func done(_ task: DispatchedTask, ok: Bool = true, ops: [CounterOp] = [], output: [UInt8] = [7]) -> TaskOutcome {
        TaskOutcome(id: task.id, attempt: task.attempt, succeeded: ok, output: output, error: ok ? "" : "boom", node: "a", counterOps: ops)
    }

    func testHigherPriorityFirstAndFIFOWithin() throws {
        let low1 = try submit(TaskOptions(priority: 0))
        let high1 = try submit(TaskOptions(priority: 5))
        let low2 = try submit(TaskOptions(priority: 0))
        let high2 = try submit(TaskOptions(priority: 5))
        XCTAssertEqual(try pull().map(\.id), [high1, high2, low1, low2])
    }

    func testALimitBoundsHowManyHoldersRunAndAnEligibleLowerPriorityIsNotStarved() throws {
        try core.setLimit("db", size: 2)
        let heavy = try (0..<5).map { _ in try submit(TaskOptions(priority: 9, uses: ["db"])) }
        let light = try submit(TaskOptions(priority: 1))
        let first = try pull()
        XCTAssertEqual(first.map(\.id), Array(heavy[0..<2]) + [light], "two db holders, then the eligible lower priority")
        XCTAssertEqual(core.allLimits.first?.inUse, 2)
        let next = try pull([done(first[0])])
        XCTAssertEqual(next.map(\.id), [heavy[2]], "a finished holder frees one place")
        XCTAssertEqual(core.allLimits.first?.highWater, 2)
    }

    func testAPullReplyCarriesAtMostTheDispatchBytesButAlwaysOneTask() throws {
        // Eight slots free, four inputs of 5 MiB: a reply of 20 MiB would be more than a node
        // reads in one message (it was: W9 over colony:// hung on it), so two go now.
        let big = [UInt8](repeating: 1, count: 5 << 20)
        let ids = try core.submit((0..<4).map { _ in TaskSubmission(handler: "work", input: big) }, session: "s", now: 0)
        let first = try pull()
        XCTAssertEqual(first.map(\.id), Array(ids[0..<2]))
        XCTAssertEqual(try pull().map(\.id), Array(ids[2..<4]), "the rest go with the next pull")
        let huge = try core.submit([TaskSubmission(handler: "work", input: [UInt8](repeating: 2, count: 12 << 20))], session: "s", now: 0)
        XCTAssertEqual(try pull().map(\.id), huge, "a single task goes whatever its size")
    }

    func testAnUnknownLimitIsRefusedAtSubmit() {
        XCTAssertThrowsError(try submit(TaskOptions(uses: ["nope"]))) { error in
            XCTAssertTrue("\(error)".contains("unknown limit 'nope'"), "\(error)")
        }
    }

    func testDependentsWaitForSuccessAndSeeTheOutputs() throws {
        let parent = try submit()
        let child = try submit(TaskOptions(after: [parent]))
        let first = try pull()
        XCTAssertEqual(first.map(\.id), [parent])
        let second = try pull([done(first[0], output: Array("42".utf8))])
        XCTAssertEqual(second.map(\.id), [child])
        XCTAssertEqual(second[0].dependencies[parent], Array("42".utf8))
    }

    func testAFailedDependencyFailsItsDependentsInCascade() throws {
        let parent = try submit()
        let child = try submit(TaskOptions(after: [parent]))
        let grandchild = try submit(TaskOptions(after: [child]))
        let first = try pull()
        _ = try pull([done(first[0], ok: false)])
        let results = core.takeResults(session: "s", max: 10).results
        XCTAssertEqual(results.first { $0.id == child }?.error, "dependency \(parent) failed")
        XCTAssertEqual(results.first { $0.id == grandchild }?.error, "dependency \(child) failed")
        XCTAssertEqual(results.count, 3)
    }

    func testUnknownDependenciesAreRefused() {
        XCTAssertThrowsError(try submit(TaskOptions(after: [999]))) { error in
            XCTAssertTrue("\(error)".contains("unknown dependency 999"), "\(error)")
        }
    }

    func testHandlerErrorsAreRetriedOnlyWhenAskedWithBackoff() throws {
        let once = try submit()
        let retried = try submit(TaskOptions(maxAttempts: 3, retryOnError: true))
        let first = try pull()
        _ = try pull(first.map { done($0, ok: false) }, now: 1)
        XCTAssertEqual(core.taskInfo(once)?.phase, .failed)
        XCTAssertEqual(core.taskInfo(retried)?.phase, .waiting, "backing off")
        _ = core.tick(now: 100)
        let again = try pull(now: 100)
        XCTAssertEqual(again.map(\.id), [retried])
        XCTAssertEqual(again[0].attempt, 2)
    }

    func testATaskOfADeadNodeRunsElsewhereAndItsLateResultIsDropped() throws {
        let id = try submit()
        let first = try pull(now: 0)
        let other = NodeAnnouncement(name: "b", host: "h", threadSlots: 1)
        _ = try core.report(node: other, results: [], now: 10)
        _ = core.tick(now: 10)
        let second = core.dispatch(toNode: "b", now: 10)
        XCTAssertEqual(second.map(\.id), [id])
        XCTAssertEqual(second[0].attempt, 2)
        // The dead node comes back with its old result: dropped, never applied.
        _ = try pull([done(first[0], ops: [CounterOp(name: "c", delta: 1)])], now: 11)
        XCTAssertEqual(core.counter("c"), 0)
        _ = try core.report(node: other, results: [TaskOutcome(id: id, attempt: 2, succeeded: true, node: "b", counterOps: [CounterOp(name: "c", delta: 1)])], now: 11)
        XCTAssertEqual(core.counter("c"), 1)
        XCTAssertEqual(core.takeResults(session: "s", max: 10).results.map(\.id), [id])
    }

    func testCounterOpsApplyOnlyWithSuccess() throws {
        _ = try submit()
        _ = try submit()
        let tasks = try pull()
        _ = try pull([done(tasks[0], ops: [CounterOp(name: "c", delta: 5)]), done(tasks[1], ok: false, ops: [CounterOp(name: "c", delta: 100)])])
        XCTAssertEqual(core.counter("c"), 5)
    }

    func testCountersAddSetAndCompareAndSet() throws {
        XCTAssertEqual(try core.addToCounter("x", 3), 3)
        XCTAssertEqual(try core.addToCounter("x", -1), 2)
        XCTAssertEqual(try core.setCounter("x", 10), 2)
        XCTAssertEqual(try core.compareAndSetCounter("x", expected: 9, new: 0).swapped, false)
        XCTAssertEqual(try core.compareAndSetCounter("x", expected: 10, new: 11).value, 11)
        XCTAssertEqual(core.allCounters.map(\.name), ["x"])
        XCTAssertThrowsError(try core.addToCounter("", 1))
    }

    /// Hostile-input review (#7): everything a peer says is bounded before it is kept.
    func testOversizedLabelsHandlersAndHostsAreRefusedAndLongErrorsAreCut() throws {
        var manyLabels = TaskOptions()
        manyLabels.requiredLabels = Dictionary(uniqueKeysWithValues: (0..<17).map { ("k\($0)", "v") })
        XCTAssertThrowsError(try submit(manyLabels))
        var longLabel = TaskOptions()
        longLabel.requiredLabels = ["k": String(repeating: "v", count: 257)]
        XCTAssertThrowsError(try submit(longLabel))
        var hostile = node
        hostile.handlers = (0..<5000).map { "h\($0)" }
        XCTAssertThrowsError(try core.report(node: hostile, results: [], now: 0))
        hostile = node
        hostile.host = String(repeating: "x", count: 300)
        XCTAssertThrowsError(try core.report(node: hostile, results: [], now: 0))
        hostile = node
        hostile.labels = ["": "x"]
        XCTAssertThrowsError(try core.report(node: hostile, results: [], now: 0))
        XCTAssertEqual(core.status(now: 0).nodes.count, 0, "a refused announcement registers nothing")

        _ = try submit()
        let task = try pull()[0]
        var outcome = done(task, ok: false)
        outcome.error = String(repeating: "é", count: 100_000)
        _ = try pull([outcome])
        let kept = core.takeResults(session: "s", max: 1).results[0].error
        XCTAssertLessThanOrEqual(kept.utf8.count, 64 << 10)
        XCTAssertTrue(kept.hasSuffix("(200000 bytes, cut)"), String(kept.suffix(40)))
    }

    /// Found by the fuzzer's seed: `Int64.max + 1` wrapped to `Int64.min`.
    func testACounterNeverWrapsAroundRefusingAnAddAndHoldingATasksChangeAtTheBound() throws {
        XCTAssertEqual(try core.addToCounter("x", .max), .max)
        XCTAssertThrowsError(try core.addToCounter("x", 1)) { error in
            XCTAssertTrue("\(error)".contains("would overflow"), "\(error)")
        }
        XCTAssertEqual(core.counter("x"), .max, "a refused add changes nothing")
        XCTAssertEqual(try core.addToCounter("x", -1), .max - 1)
        _ = try core.setCounter("y", .min + 1)
        let tasks = [try submit(), try submit()]
        let dispatched = try pull()
        XCTAssertEqual(dispatched.count, tasks.count)
        _ = try pull(dispatched.map { done($0, ops: [CounterOp(name: "y", delta: -5), CounterOp(name: "x", delta: 10)]) })
        XCTAssertEqual(core.counter("y"), .min, "a task's change past the range stops at the bound")
        XCTAssertEqual(core.counter("x"), .max)
    }

    func testCancellingQueuedAndRunningTasksCascadesAndTellsTheNode() throws {
        let running = try submit()
        _ = try pull()
        let queued = try submit(TaskOptions(uses: []))
        let dependent = try submit(TaskOptions(after: [running]))
        let result = core.cancel([running, queued], now: 1)
        XCTAssertEqual(result.cancelled, 3)
        XCTAssertEqual(core.takeCancellations(forNode: "a"), [running])
        XCTAssertEqual(core.taskInfo(dependent)?.phase, .cancelled)
        // The node still holds the cancelled task's slot until it reports it.
        XCTAssertEqual(core.status(now: 1).running, 1)
        _ = try pull([TaskOutcome(id: running, attempt: 1, succeeded: false, error: "cancelled", node: "a")])
        XCTAssertEqual(core.status(now: 1).running, 0)
        XCTAssertEqual(core.status(now: 1).cancelled, 3)
    }

    func testAnAttemptPastItsTimeoutFailsAndTheNodeIsTold() throws {
        let id = try submit(TaskOptions(timeoutSeconds: 1))
        _ = try pull(now: 0)
        _ = try core.report(node: node, results: [], now: 2)
        _ = core.tick(now: 4)
        XCTAssertEqual(core.taskInfo(id)?.phase, .failed)
        XCTAssertEqual(core.taskInfo(id)?.error, "timed out after 1 s")
        XCTAssertEqual(core.takeCancellations(forNode: "a"), [id])
    }

    /// A failure's kind is what the node (or the core) said it was, not what its words look
    /// like: a handler whose error mentions "timed out" failed with `error`, not `timeout`, and
    /// a result that does not say its kind is an `error` whatever its words.
    func testAFailuresKindIsTheOneReportedNotGuessedFromItsWords() throws {
        let handlerError = try submit()
        let crash = try submit()
        let oldNode = try submit()
        let timedOut = try submit(TaskOptions(timeoutSeconds: 1))
        let dependent = try submit(TaskOptions(after: [handlerError]))
        let running = try pull(now: 0)
        XCTAssertEqual(Set(running.map(\.id)), [handlerError, crash, oldNode, timedOut])
        func failed(_ id: TaskID, _ error: String, _ failure: FailureKind?) -> TaskOutcome {
            TaskOutcome(id: id, attempt: 1, succeeded: false, error: error, failure: failure, node: "a")
        }
        _ = try pull([failed(handlerError, "database timed out after 5 s", .error),
                      failed(crash, "child exited with code 3 mid-task", .crashed),
                      failed(oldNode, "timed out after 2 s", nil)], now: 2)
        _ = core.tick(now: 4)
        let outcomes = Dictionary(uniqueKeysWithValues: core.takeResults(session: "s", max: 10).results.map { ($0.id, $0) })
        XCTAssertEqual(outcomes[handlerError]?.failure, .error, "the handler's own words do not make it a timeout")
        XCTAssertEqual(outcomes[crash]?.failure, .crashed)
        XCTAssertEqual(outcomes[oldNode]?.failure, .error, "a node that does not say the kind: an error, whatever its words")
        XCTAssertEqual(outcomes[timedOut]?.failure, .timeout, "the coordinator's own timeout")
        XCTAssertEqual(outcomes[dependent]?.failure, .dependency)
        XCTAssertEqual(core.taskCounts().failedByReason, [.error: 2, .crashed: 1, .timeout: 1, .dependency: 1])
    }

    func testTasksNeedingLabelsGoOnlyToNodesThatHaveThem() throws {
        let gpuTask = try submit(TaskOptions(requiredLabels: ["gpu": "1"]))
        XCTAssertEqual(try pull(), [])
        XCTAssertEqual(core.status(now: 0).unplaceable, 1, "no live node can take it: reported")
        XCTAssertEqual(core.status(now: 0).unplaceableReasons, [Unplaceable(reason: "no node with the handler 'work' has the label(s) gpu=1", count: 1)])
        let gpu = NodeAnnouncement(name: "g", host: "h", threadSlots: 1, labels: ["gpu": "1"])
        XCTAssertEqual(try pull(node: gpu).map(\.id), [gpuTask])
    }

    func testEachPoolIsFilledOnlyByItsOwnTasks() throws {
        let mixed = NodeAnnouncement(name: "m", host: "h", threadSlots: 1, processSlots: 2, processHandlers: ["exec"])
        let threadTasks = try (0..<3).map { _ in try submit(TaskOptions(pool: .thread)) }
        let processTask = try submit(TaskOptions(pool: .process))
        let execTask = try submit(handler: "exec")
        _ = try submit()  // automatic, handler "work": the thread pool
        let first = try pull(node: mixed)
        XCTAssertEqual(Set(first.map(\.id)), [threadTasks[0], processTask, execTask],
                       "one thread slot, two process slots: exec goes to the process pool by default")
        XCTAssertEqual(first.first { $0.id == execTask }?.pool, .process)
        XCTAssertEqual(first.first { $0.id == threadTasks[0] }?.pool, .thread)
        XCTAssertEqual(core.queuedCount, 3, "two thread tasks and the automatic one wait for the one thread slot")
        XCTAssertEqual(try pull(node: mixed), [], "both pools full: a busy thread pool is not topped up from free process slots")
        let second = try pull([TaskOutcome(id: first[0].id, attempt: 1, succeeded: true, node: "m")], node: mixed)
        XCTAssertEqual(second.count, 1)
        XCTAssertEqual(second[0].pool, first[0].pool, "the freed slot is refilled in its own pool")
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testAutomaticTasksUseTheOtherPoolOnANodeWithoutTheirDefaultAndExplicitOnesWait() throws {
        let threadsOnly = NodeAnnouncement(name: "t", host: "h", threadSlots: 2, processHandlers: ["exec"])
        let exec = try submit(handler: "exec")
        let isolated = try submit(TaskOptions(pool: .process))
        let got = try pull(node: threadsOnly)
        XCTAssertEqual(got.map(\.id), [exec])
        XCTAssertEqual(got[0].pool, .thread)
        XCTAssertEqual(core.status(now: 0).unplaceable, 1, "no node has a process pool: reported, not lost")
        XCTAssertEqual(core.status(now: 0).unplaceableReasons.map(\.reason), ["no node with the handler 'work' has slots in the process pool"])
        let processes = NodeAnnouncement(name: "p", host: "h", threadSlots: 0, processSlots: 1)
        XCTAssertEqual(try pull(node: processes).map(\.id), [isolated])
    }

    func testIOTasksTakeOnlyIOSlotsAndACancelledOneHoldsItsSlotUntilTheNodeLetsGo() throws {
        let node = NodeAnnouncement(name: "io", host: "h", threadSlots: 1, ioSlots: 3, ioHandlers: ["fetch"])
        let explicit = try submit(TaskOptions(pool: .io))
        let fetches = try (0..<4).map { _ in try submit(handler: "fetch") }
        let work = try submit()
        let first = try pull(node: node)
        XCTAssertEqual(Set(first.map(\.id)), [explicit, fetches[0], fetches[1], work])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: first.map { ($0.id, $0.pool) }),
                       [explicit: .io, fetches[0]: .io, fetches[1]: .io, work: .thread],
                       "fetch is an io handler here; `work` never takes io slots")
        XCTAssertEqual(core.nodeSlots.first?.ioBusy, 3)
        XCTAssertEqual(core.nodeSlots.first?.threadBusy, 1)
        XCTAssertEqual(try pull(node: node), [], "io slots full: the next fetch waits rather than taking the busy thread slot's place")
        _ = core.cancel([fetches[0]], now: 1)
        XCTAssertEqual(try pull(node: node, now: 1), [], "a cancelled attempt keeps its io slot until the node reports it")
        XCTAssertEqual(core.takeCancellations(forNode: "io"), [fetches[0]])
        let stopped = TaskOutcome(id: fetches[0], attempt: 1, succeeded: false, error: "cancelled", node: "io", cancelled: true)
        let next = try pull([stopped], node: node, now: 2)
        XCTAssertEqual(next.map(\.id), [fetches[2]])
        XCTAssertEqual(next.first?.pool, .io)
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testIOHandlerTasksRunOnThreadsWhereThereAreNoIOSlotsAndExplicitIOTasksWait() throws {
        let threadsOnly = NodeAnnouncement(name: "t", host: "h", threadSlots: 2, ioHandlers: ["fetch"])
        let fetch = try submit(handler: "fetch")
        let explicit = try submit(TaskOptions(pool: .io))
        let got = try pull(node: threadsOnly)
        XCTAssertEqual(got.map(\.id), [fetch])
        XCTAssertEqual(got.first?.pool, .thread)
        XCTAssertEqual(core.status(now: 0).unplaceableReasons.map(\.reason), ["no node with the handler 'work' has slots in the io pool"])
        let ioOnly = NodeAnnouncement(name: "i", host: "h", threadSlots: 0, ioSlots: 8)
        _ = try submit()
        let taken = try pull(node: ioOnly)
        XCTAssertEqual(taken.map(\.id), [explicit], "an io-only node takes io tasks, never an automatic task of a thread handler")
        XCTAssertEqual(taken.first?.pool, .io)
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testANodeAnnouncingTooManyIOSlotsIsRefused() {
        let node = NodeAnnouncement(name: "big", host: "h", threadSlots: 1, ioSlots: core.bounds.ioSlotsMax + 1)
        XCTAssertThrowsError(try core.report(node: node, results: [], now: 0)) { error in
            XCTAssertEqual(error as? CoordinatorCore.Refusal, .invalidArgument("node io slots must be 0 to 65536"))
        }
        XCTAssertNil(core.announcement(ofNode: "big"), "refused: nothing changed")
    }

    func testASubmitWithAKnownKeyCreatesNoSecondTask() throws {
        let first = try core.submit([TaskSubmission(handler: "work", input: [1], key: "k1"),
                                     TaskSubmission(handler: "work", input: [2], key: "k2")], session: "s")
        let again = try core.submit([TaskSubmission(handler: "work", input: [1], key: "k1"),
                                     TaskSubmission(handler: "work", input: [3], key: "k3")], session: "s")
        XCTAssertEqual(again[0], first[0], "the resent task keeps its id")
        XCTAssertNotEqual(again[1], first[1])
        XCTAssertEqual(core.queuedCount, 3)
        let tasks = try pull()
        _ = try pull(tasks.map { done($0) })
        XCTAssertEqual(core.takeResults(session: "s", max: 10).results.count, 3)
        XCTAssertEqual(try core.submit([TaskSubmission(handler: "work", input: [1], key: "k1")], session: "s"), [first[0]],
                       "still known while remembered after its result was handed out")
        XCTAssertEqual(core.queuedCount, 0)
    }

    func testPeekedResultsStayUntilAcknowledged() throws {
        _ = try submit()
        _ = try submit()
        let tasks = try pull()
        _ = try pull(tasks.map { done($0) })
        let first = core.peekResults(session: "s", max: 10, acked: [])
        XCTAssertEqual(first.results.count, 2)
        let again = core.peekResults(session: "s", max: 10, acked: [])
        XCTAssertEqual(again.results.map(\.id), first.results.map(\.id), "a lost reply is sent again")
        let afterAck = core.peekResults(session: "s", max: 10, acked: [first.results[0].id])
        XCTAssertEqual(afterAck.results.map(\.id), [first.results[1].id])
        XCTAssertEqual(core.status(now: 0).resultsWaiting, 1)
        _ = core.peekResults(session: "s", max: 0, acked: [first.results[1].id])
        XCTAssertEqual(core.status(now: 0).resultsWaiting, 0)
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testANodeThatComesBackIsToldToStopAttemptsThatAreNoLongerItsOwn() throws {
        let id = try submit()
        XCTAssertEqual(try pull().map(\.id), [id])
        _ = core.tick(now: 10)  // node "a" silent past the node timeout: its attempt is requeued
        let other = NodeAnnouncement(name: "b", host: "h", threadSlots: 1)
        XCTAssertEqual(try pull(node: other, now: 10).map(\.id), [id])
        // "a" comes back, still running the old attempt.
        _ = try core.report(node: node, results: [], now: 11, running: [id], ackedReplySeq: 1)
        XCTAssertEqual(core.takeCancellations(forNode: "a"), [id])
        XCTAssertEqual(core.staleTold, 1)
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testASuspectNodeLosesItsAttemptsAfterTheGraceUnlessItPullsAgain() throws {
        let id = try submit()
        XCTAssertEqual(try pull(now: 0).map(\.id), [id])
        core.markSuspect(node: "a", now: 1)
        _ = try pull(now: 1.1)  // it reconnected and pulled: not dead
        _ = core.tick(now: 1.5)
        XCTAssertEqual(core.status(now: 1.5).running, 1)
        core.markSuspect(node: "a", now: 2)
        _ = core.tick(now: 2.2)
        XCTAssertEqual(core.status(now: 2.2).running, 1, "within the grace")
        _ = core.tick(now: 2.4)
        XCTAssertEqual(core.status(now: 2.4).queued, 1, "past the grace (far below the node timeout): requeued")
    }

    func testUnfetchedResultsExpireAfterTheirTTL() throws {
        var bounds = CoordinatorCore.Bounds()
        bounds.resultTTLSeconds = 10
        core = CoordinatorCore(bounds: bounds)
        _ = try submit()
        let task = try pull()
        _ = try pull([done(task[0])], now: 1)
        XCTAssertEqual(core.status(now: 5).resultsWaiting, 1)
        _ = core.tick(now: 20)
        XCTAssertEqual(core.status(now: 20).resultsWaiting, 0)
        XCTAssertTrue(core.takeResults(session: "s", max: 10).results.isEmpty)
    }

    func testAnOversizedOutputFailsTheTaskWithAClearReason() throws {
        var bounds = CoordinatorCore.Bounds()
        bounds.resultBytesMax = 4
        core = CoordinatorCore(bounds: bounds)
        let id = try submit()
        let task = try pull()
        _ = try pull([done(task[0], output: [1, 2, 3, 4, 5])])
        XCTAssertEqual(core.taskInfo(id)?.error, "output of 5 bytes exceeds the limit of 4 bytes")
    }

    func testATaskCanDependOnOneWhoseResultWasAlreadyFetched() throws {
        let parent = try submit()
        let first = try pull()
        _ = try pull([done(first[0], output: Array("9".utf8))])
        XCTAssertEqual(core.takeResults(session: "s", max: 10).results.map(\.id), [parent])
        _ = try submit(TaskOptions(after: [parent]))
        let child = try pull()
        XCTAssertEqual(child.first?.dependencies[parent], Array("9".utf8))
    }

    func testTasksOfALostDispatchReplyAreRequeuedOnceTheNodeAcknowledgesALaterReply() throws {
        let id = try submit()
        _ = try core.report(node: node, results: [], now: 0)
        let lost = core.dispatch(toNode: "a", now: 0)
        let lostSeq = core.nextReplySeq()
        XCTAssertEqual(lost.map(\.id), [id])
        // The node never got that reply; it acknowledges an earlier one: nothing happens yet.
        _ = try core.report(node: node, results: [], now: 1, running: [], ackedReplySeq: lostSeq - 1)
        XCTAssertEqual(core.taskInfo(id)?.phase, .running)
        // A later reply reaches it; it does not run the task: the task goes back to the queue.
        let laterSeq = core.nextReplySeq()
        _ = try core.report(node: node, results: [], now: 2, running: [], ackedReplySeq: laterSeq)
        let again = core.dispatch(toNode: "a", now: 2)
        XCTAssertEqual(again.map(\.id), [id])
        XCTAssertEqual(again.first?.attempt, 2)
    }
}

/// Dispatch looks at the handlers a node announces.
final class HandlerPlacementTests: XCTestCase {
    func testATaskGoesOnlyToANodeWithItsHandlerAndWaitsCountedOtherwise() throws {
        var core = CoordinatorCore()
        let ids = try core.submit([TaskSubmission(handler: "square", input: [1]), TaskSubmission(handler: "echo", input: [2])], session: "s")
        let stock = NodeAnnouncement(name: "stock", host: "h", threadSlots: 4, handlers: ["echo", "batch"])
        _ = try core.report(node: stock, results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "stock", now: 0).map(\.id), [ids[1]], "not the square task")
        XCTAssertEqual(core.status(now: 0).unplaceable, 1)
        XCTAssertEqual(core.status(now: 0).unplaceableReasons, [Unplaceable(reason: "no node has the handler 'square'", count: 1)])
        let squares = NodeAnnouncement(name: "squares", host: "h", threadSlots: 1, handlers: ["square", "echo", "batch"])
        _ = try core.report(node: squares, results: [], now: 0)
        XCTAssertEqual(core.status(now: 0).unplaceable, 0)
        XCTAssertEqual(core.dispatch(toNode: "squares", now: 0).map(\.id), [ids[0]])
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testABatchGoesOnlyWhereItsInnerHandlerRuns() throws {
        var core = CoordinatorCore()
        let id = try core.submit([TaskSubmission(handler: "batch", input: [1], poolHandler: "square")], session: "s")[0]
        _ = try core.report(node: NodeAnnouncement(name: "stock", host: "h", threadSlots: 4, handlers: ["echo", "batch"]), results: [], now: 0)
        XCTAssertTrue(core.dispatch(toNode: "stock", now: 0).isEmpty)
        _ = try core.report(node: NodeAnnouncement(name: "squares", host: "h", threadSlots: 4, handlers: ["square", "batch"]), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "squares", now: 0).map(\.id), [id])
    }

    func testANodeThatAnnouncesNoHandlersTakesAny() throws {
        var core = CoordinatorCore()
        let id = try core.submit([TaskSubmission(handler: "anything", input: [1])], session: "s")[0]
        _ = try core.report(node: NodeAnnouncement(name: "n", host: "h", threadSlots: 1), results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [id])
    }
}

/// What the adversary of the balancing issue found: hand-backs must not spend retries, a
/// pause must not excuse nodes whose connection closed, and long or unmeasured handlers are
/// not prefetched.
final class PrefetchAndHandBackRulesTests: XCTestCase {
    private var core = CoordinatorCore()

    func testTasksHandedBackUnstartedKeepTheirRetries() throws {
        let id = try core.submit([TaskSubmission(handler: "work", input: [], options: TaskOptions(maxAttempts: 3, retryOnError: true))],
                                 session: "s")[0]
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1)
        for _ in 0..<2 {
            _ = try core.report(node: node, results: [], now: 0)
            XCTAssertEqual(core.dispatch(toNode: "n", now: 0).map(\.id), [id])
            _ = try core.report(node: node, results: [], now: 0, returned: [id])
        }
        _ = try core.report(node: node, results: [], now: 0)
        let third = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(third.map(\.attempt), [3], "attempts still number leases")
        _ = try core.report(node: node, results: [TaskOutcome(id: id, attempt: 3, succeeded: false, error: "boom", node: "n")], now: 0)
        XCTAssertEqual(core.taskCounts().failed, 0, "the first real run failed: two retries remain")
        XCTAssertEqual(core.status(now: 0).retried, 1)
    }

    func testAPauseIsNotExcusedForANodeWhoseConnectionClosed() throws {
        let gone = NodeAnnouncement(name: "gone", host: "h", threadSlots: 1)
        let alive = NodeAnnouncement(name: "alive", host: "h", threadSlots: 1)
        _ = try core.report(node: gone, results: [], now: 0)
        _ = try core.report(node: alive, results: [], now: 0)
        core.markSuspect(node: "gone", now: 0.5)
        // A coordinator too busy to tick for 5 s excuses that silence, twice.
        core.excuseSilence(seconds: 5)
        core.excuseSilence(seconds: 5)
        _ = core.tick(now: 3)
        XCTAssertEqual(core.status(now: 3).nodes.map(\.announcement.name), ["alive"], "the node whose connection closed is lost")
    }

    func testOnlyHandlersMeasuredShortArePrefetched() throws {
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1, prefetch: 10)
        let tiny = try core.submit((0..<20).map { _ in TaskSubmission(handler: "tiny", input: []) }, session: "s")
        _ = try core.report(node: node, results: [], now: 0)
        let first = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(first.count, 1, "not measured yet: no more than the free slot")
        _ = try core.report(node: node, results: [TaskOutcome(id: first[0].id, attempt: 1, succeeded: true, node: "n", runMicros: 20)], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).count, 11, "measured tiny: the slot and the prefetch")
        XCTAssertEqual(tiny.count, 20)
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testAHandlerMeasuredLongGoesOnlyToFreeSlots() throws {
        let slow = try core.submit((0..<5).map { _ in TaskSubmission(handler: "slow", input: []) }, session: "s")
        let node = NodeAnnouncement(name: "m", host: "h", threadSlots: 1, prefetch: 10)
        _ = try core.report(node: node, results: [], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "m", now: 0).map(\.id), [slow[0]])
        _ = try core.report(node: node, results: [TaskOutcome(id: slow[0], attempt: 1, succeeded: true, node: "m", runMicros: 50_000)], now: 0)
        XCTAssertEqual(core.dispatch(toNode: "m", now: 0).map(\.id), [slow[1]], "a 50 ms handler goes only to the free slot")
        XCTAssertTrue(core.invariantViolations().isEmpty, "\(core.invariantViolations())")
    }

    func testATaskHandedBackAsStrandedStopsItsHandlersPrefetch() throws {
        let node = NodeAnnouncement(name: "n", host: "h", threadSlots: 1, prefetch: 10)
        let ids = try core.submit((0..<12).map { _ in TaskSubmission(handler: "work", input: []) }, session: "s")
        _ = try core.report(node: node, results: [], now: 0)
        let first = core.dispatch(toNode: "n", now: 0)
        _ = try core.report(node: node, results: [TaskOutcome(id: first[0].id, attempt: 1, succeeded: true, node: "n", runMicros: 20)], now: 0)
        let prefetched = core.dispatch(toNode: "n", now: 0)
        XCTAssertEqual(prefetched.count, 11)
        _ = try core.report(node: node, results: [], now: 0, returned: Array(prefetched.map(\.id).dropFirst()))
        XCTAssertEqual(core.dispatch(toNode: "n", now: 0).count, 0, "the slot is busy, and the handler is no longer prefetched")
        XCTAssertEqual(ids.count, 12)
    }
}
