@testable import ColonyNode
import XCTest

/// The node's pull decisions, as values (no sockets, no clock).
final class PullPlanTests: XCTestCase {
    typealias Situation = PullPlan.Situation

    func testAnIdleNodeWithAFreeContextPulls() {
        XCTAssertEqual(PullPlan.decide(Situation()), .send(mayLeave: false))
    }

    func testNoPullWithoutAContextWhileBackingOffOrOnceDrained() {
        XCTAssertEqual(PullPlan.decide(Situation(freeContexts: 0)), .wait)
        XCTAssertEqual(PullPlan.decide(Situation(backingOff: true)), .wait)
        XCTAssertEqual(PullPlan.decide(Situation(drained: true)), .wait)
    }

    func testASecondPullGoesOnlyWithSomethingToSay() {
        XCTAssertEqual(PullPlan.decide(Situation(inFlight: 1)), .wait, "one long poll out and nothing new: no second pull")
        XCTAssertEqual(PullPlan.decide(Situation(inFlight: 1, pendingResults: 1)), .send(mayLeave: false))
        XCTAssertEqual(PullPlan.decide(Situation(inFlight: 1, handBacks: 2)), .send(mayLeave: false))
        XCTAssertEqual(PullPlan.decide(Situation(inFlight: 1, outputDue: true)), .send(mayLeave: false))
        XCTAssertEqual(PullPlan.decide(Situation(inFlight: 1, waitingChanged: true)), .send(mayLeave: false),
                       "a task that starts waiting for its subtasks gives its slot back now, not at the next long poll")
    }

    func testABusyNodeLetsResultsLingerIntoOneBatch() {
        var busy = Situation(inFlight: 1, queuedLocally: true, pendingResults: 3, oldestResultAge: .microseconds(500))
        XCTAssertEqual(PullPlan.decide(busy), .wait, "more results come soon: the linger timer sends them")
        busy.oldestResultAge = .milliseconds(3)
        XCTAssertEqual(PullPlan.decide(busy), .send(mayLeave: false), "lingered long enough")
        busy.queuedLocally = false
        busy.oldestResultAge = .microseconds(500)
        XCTAssertEqual(PullPlan.decide(busy), .send(mayLeave: false), "nothing queued: results go at once")
        busy.inFlight = 0
        busy.queuedLocally = true
        XCTAssertEqual(PullPlan.decide(busy), .send(mayLeave: false), "no pull out: never wait")
    }

    func testADrainingNodeMayLeaveOnlyWhenNothingRunsAndNoOtherPullIsOut() {
        XCTAssertEqual(PullPlan.decide(Situation(draining: true)), .send(mayLeave: true))
        XCTAssertEqual(PullPlan.decide(Situation(draining: true, idle: false)), .send(mayLeave: false))
        XCTAssertEqual(PullPlan.decide(Situation(draining: true, inFlight: 1, pendingResults: 1)), .send(mayLeave: false))
        XCTAssertEqual(PullPlan.decide(Situation(draining: true, pendingResults: 5, resultsPerPullMax: 4)), .send(mayLeave: false),
                       "results beyond one pull: not the goodbye yet")
    }

    func testBatchesStopAtTheCountTheBytesAndTheFirstResultWhoseOutputIsHeld() {
        let small = (bytes: 100, outputHeld: false)
        XCTAssertEqual(PullPlan.batch(Array(repeating: small, count: 10), countMax: 4, bytesMax: 1 << 20), 4)
        XCTAssertEqual(PullPlan.batch(Array(repeating: small, count: 10), countMax: 100, bytesMax: 350), 3)
        XCTAssertEqual(PullPlan.batch([(bytes: 5000, outputHeld: false), small], countMax: 100, bytesMax: 1000), 1,
                       "the first result goes even when it alone is over the byte budget")
        XCTAssertEqual(PullPlan.batch([small, (bytes: 100, outputHeld: true), small], countMax: 100, bytesMax: 1 << 20), 1,
                       "a result never overtakes its task's output, nor do the results after it")
        XCTAssertEqual(PullPlan.batch([(bytes: Int, outputHeld: Bool)](), countMax: 100, bytesMax: 100), 0)
    }
}
