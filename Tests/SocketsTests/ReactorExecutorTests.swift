import Foundation
import Sockets
import Synchronization
import XCTest

/// An actor that lives on the sockets thread, as the coordinator's state and a node's agent do.
private actor OnSockets {
    nonisolated var unownedExecutor: UnownedSerialExecutor { SocketReactor.shared.asUnownedSerialExecutor() }
    var count = 0

    func step() -> Bool {
        count += 1
        return SocketReactor.shared.isCurrent
    }
}

final class ReactorExecutorTests: XCTestCase {
    func testAnActorOnTheReactorRunsOnItsThreadAndStaysSerial() async {
        let actor = OnSockets()
        let onThread = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<1000 { group.addTask { await actor.step() } }
            return await group.reduce(true) { $0 && $1 }
        }
        XCTAssertTrue(onThread, "a method of an actor on the reactor ran elsewhere")
        let count = await actor.count
        XCTAssertEqual(count, 1000)
        XCTAssertFalse(SocketReactor.shared.isCurrent, "the test's own task is not on the sockets thread")
    }

    func testATaskThatPrefersTheReactorRunsThereAndResumesThere() async throws {
        let task = Task(executorPreference: SocketReactor.shared) { () -> [Bool] in
            var seen = [SocketReactor.shared.isCurrent]
            // A suspension (a timer fires on another thread) resumes on the reactor again.
            try? await Task.sleep(for: .milliseconds(5))
            seen.append(SocketReactor.shared.isCurrent)
            await Task.yield()
            seen.append(SocketReactor.shared.isCurrent)
            return seen
        }
        let seen = await task.value
        XCTAssertEqual(seen, [true, true, true])
    }

    /// A job enqueued from another thread while the loop sleeps in epoll_wait (no socket, no
    /// deadline) must wake it: with no wake-up it would wait for ever.
    func testAJobEnqueuedWhileTheLoopSleepsWakesIt() async throws {
        for _ in 0..<50 {
            let ran = expectation(description: "the job ran on the sockets thread")
            Task(executorPreference: SocketReactor.shared) {
                if SocketReactor.shared.isCurrent { ran.fulfill() }
            }
            await fulfillment(of: [ran], timeout: 5)
            // Let the loop go back to sleep before the next one.
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}
