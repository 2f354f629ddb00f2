import ColonyWire
import Synchronization

/// Tells a running task to stop, once, with a reason and the kind of failure it makes.
final class StopSignal: Sendable {
    private struct State {
        var reason: String?
        var kind: Colony_V1_FailureKind = .failureCancelled
        var action: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    /// Why it was stopped, with the failure's kind; nil while it was not.
    var stopped: (reason: String, kind: Colony_V1_FailureKind)? {
        state.withLock { state in state.reason.map { ($0, state.kind) } }
    }

    /// Runs `action` when the task is stopped (at once if it already was).
    func onStop(_ action: @escaping @Sendable () -> Void) {
        let stoppedAlready = state.withLock { state -> Bool in
            if state.reason != nil { return true }
            state.action = action
            return false
        }
        if stoppedAlready { action() }
    }

    func stop(reason: String, kind: Colony_V1_FailureKind = .failureCancelled) {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            state.kind = kind
            let action = state.action
            state.action = nil
            return action
        }
        action?()
    }
}
