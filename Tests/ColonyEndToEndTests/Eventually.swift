import Foundation

/// The one way these tests wait for something another process or task does: observe it every
/// `poll` until it is there, and give up at a hard deadline with a message naming what was
/// awaited and what was last seen, so a hang in CI becomes one readable failure.
///
/// The wait runs on the caller's isolation, so `observe` may touch what the test holds.
/// An error thrown while observing ends the wait at once (a test that tolerates errors, e.g.
/// while a coordinator starts, catches them in `observe` and returns what it saw).
struct EventuallyTimeout: Error, CustomStringConvertible {
    let description: String

    init(waitingFor what: String, timeout: Duration, lastObserved: String) {
        description = "timed out after \(timeout) waiting for: \(what); last observed: \(lastObserved)"
    }
}

/// Observes until `accept` holds on what `observe` returned, and returns that value.
@discardableResult
func eventually<Value>(isolation: isolated (any Actor)? = #isolation, timeout: Duration = .seconds(20), poll: Duration = .milliseconds(20), _ what: @autoclosure () -> String,
                       _ observe: () async throws -> Value, until accept: (Value) throws -> Bool) async throws -> Value {
    let deadline = ContinuousClock.now + timeout
    while true {
        let value = try await observe()
        if try accept(value) { return value }
        guard ContinuousClock.now < deadline else {
            throw EventuallyTimeout(waitingFor: what(), timeout: timeout, lastObserved: String(describing: value))
        }
        try await Task.sleep(for: poll)
    }
}

/// Waits until `condition` holds.
func eventually(isolation: isolated (any Actor)? = #isolation, timeout: Duration = .seconds(20), poll: Duration = .milliseconds(20), _ what: @autoclosure () -> String,
                _ condition: () async throws -> Bool) async throws {
    try await eventually(isolation: isolation, timeout: timeout, poll: poll, what(), condition, until: { $0 })
}

/// Waits until `observe` returns a value (not nil), and returns it.
@discardableResult
func eventually<Value>(isolation: isolated (any Actor)? = #isolation, timeout: Duration = .seconds(20), poll: Duration = .milliseconds(20), _ what: @autoclosure () -> String,
                       firstOf observe: () async throws -> Value?) async throws -> Value {
    try await eventually(isolation: isolation, timeout: timeout, poll: poll, what(), observe, until: { $0 != nil })!
}

/// For synchronous tests: the same wait, blocking the calling thread between observations.
@discardableResult
func eventuallyBlocking<Value>(timeout: Duration = .seconds(20), poll: Duration = .milliseconds(50), _ what: @autoclosure () -> String,
                               _ observe: () throws -> Value, until accept: (Value) throws -> Bool) throws -> Value {
    let deadline = ContinuousClock.now + timeout
    while true {
        let value = try observe()
        if try accept(value) { return value }
        guard ContinuousClock.now < deadline else {
            throw EventuallyTimeout(waitingFor: what(), timeout: timeout, lastObserved: String(describing: value))
        }
        Thread.sleep(forTimeInterval: poll / .seconds(1))
    }
}

extension Process {
    /// Waits until the process has exited (without blocking a thread in `waitUntilExit`).
    func waitForExit(isolation: isolated (any Actor)? = #isolation, within timeout: Duration, _ what: @autoclosure () -> String) async throws {
        try await eventually(isolation: isolation, timeout: timeout, what(), { !self.isRunning })
    }
}
