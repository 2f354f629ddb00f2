import CNNG
import Synchronization

/// One nng asynchronous I/O (`nng_aio`) bridged to a Swift continuation.
///
/// The aio's callback runs on an nng thread. It either resumes the waiting Swift task, or, for
/// a chained operation (send, then receive on the same context), starts the second step right
/// there, so that the Swift side wakes once per exchange instead of twice. The callback holds a
/// strong reference while it runs, and the aio is reaped (freed after its callback returned)
/// when the last reference goes.
final class AsyncOperation: @unchecked Sendable {
    /// How an operation ended: nng's result code, and whether it failed in the first step of a
    /// chain (then a message to send is still ours to free).
    struct Outcome {
        var code: Int32
        var failedInFirstStep: Bool
    }

    // State shared between the awaiting task, the cancellation handler and nng's callback.
    private struct State {
        var continuation: CheckedContinuation<Outcome, Never>?
        var started = false
        var cancelled = false
        var cancellable = true
        var next: (@Sendable (OpaquePointer) -> Void)?
        var nextTimeout: Int32 = NNG_DURATION_DEFAULT
        var inSecondStep = false
    }

    private(set) var aio: OpaquePointer?
    private let state = Mutex(State())

    init() throws(NNGError) {
        var raw: OpaquePointer?
        let rv = nng_aio_alloc(&raw, asyncOperationCallback, Unmanaged.passUnretained(self).toOpaque())
        try check(rv, "allocate aio")
        aio = raw
    }

    deinit {
        // The last reference may be dropped inside the aio's own callback (after it resumed
        // the waiter). nng_aio_free would then wait for that very callback and deadlock;
        // nng_aio_reap frees the aio on nng's reaper thread instead.
        if let aio { nng_aio_reap(aio) }
    }

    /// Starts the operation with `start` and waits for it to complete.
    ///
    /// - Parameters:
    ///   - cancellable: whether Swift task cancellation cancels the aio. REQ exchanges pass
    ///     `false` (see `Context.request`).
    ///   - next: a second step started from the callback once `start`'s step succeeded.
    func run(
        timeoutMilliseconds: Int32?, cancellable: Bool,
        _ start: (OpaquePointer) -> Void,
        then next: (@Sendable (OpaquePointer) -> Void)? = nil, nextTimeoutMilliseconds: Int32? = nil
    ) async -> Outcome {
        guard let aio else { return Outcome(code: Int32(NNG_ENOMEM.rawValue), failedInFirstStep: true) }
        nng_aio_set_timeout(aio, timeoutMilliseconds ?? NNG_DURATION_DEFAULT)
        state.withLock {
            $0.cancelled = false
            $0.cancellable = cancellable
            $0.next = next
            $0.nextTimeout = nextTimeoutMilliseconds ?? NNG_DURATION_DEFAULT
            $0.inSecondStep = false
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome, Never>) in
                let alreadyCancelled = state.withLock { state -> Bool in
                    if Task.isCancelled && cancellable { return true }
                    state.continuation = continuation
                    state.started = true
                    return false
                }
                if alreadyCancelled {
                    continuation.resume(returning: Outcome(code: Int32(NNG_ECANCELED.rawValue), failedInFirstStep: true))
                } else {
                    start(aio)
                    // A cancellation that came after `started` was set but before `start` handed
                    // the aio to nng cancelled nothing (nng 1.5 keeps no cancel for an aio it
                    // has not been given): cancel again now that nng has it.
                    if state.withLock({ $0.cancelled && $0.cancellable && $0.started }) { nng_aio_cancel(aio) }
                }
            }
        } onCancel: {
            guard cancellable else { return }
            let started = state.withLock { state -> Bool in
                state.cancelled = true
                return state.started
            }
            if started { self.cancelAIO() }
        }
    }

    private func cancelAIO() {
        if let aio { nng_aio_cancel(aio) }
    }

    fileprivate func complete() {
        guard let aio else { return }
        let rv = nng_aio_result(aio)
        enum Action {
            case chain(@Sendable (OpaquePointer) -> Void, Int32)
            case resume(CheckedContinuation<Outcome, Never>?, Outcome)
        }
        let action = state.withLock { state -> Action in
            if rv == 0, let next = state.next, !(state.cancelled && state.cancellable) {
                state.next = nil
                state.inSecondStep = true
                return .chain(next, state.nextTimeout)
            }
            let continuation = state.continuation
            state.continuation = nil
            state.started = false
            let cancelledBetweenSteps = rv == 0 && state.next != nil
            state.next = nil
            let code = cancelledBetweenSteps ? Int32(NNG_ECANCELED.rawValue) : rv
            return .resume(continuation, Outcome(code: code, failedInFirstStep: !state.inSecondStep && !cancelledBetweenSteps))
        }
        switch action {
        case .chain(let next, let timeout):
            // The first step was a send: nng owns that message now.
            nng_aio_set_msg(aio, nil)
            nng_aio_set_timeout(aio, timeout)
            next(aio)
            // A cancellation that raced with the hand-over must not be lost.
            if state.withLock({ $0.cancelled && $0.cancellable }) { nng_aio_cancel(aio) }
        case .resume(let continuation, let outcome):
            continuation?.resume(returning: outcome)
        }
    }

    /// Drops the aio's reference to a message nng now owns (after a successful send).
    func forgetMessage() {
        if let aio { nng_aio_set_msg(aio, nil) }
    }

    /// Takes the message an aio received (or failed to send).
    func takeMessage() -> OpaquePointer? {
        guard let aio else { return nil }
        let msg = nng_aio_get_msg(aio)
        nng_aio_set_msg(aio, nil)
        return msg
    }
}

private func asyncOperationCallback(_ argument: UnsafeMutableRawPointer?) {
    guard let argument else { return }
    Unmanaged<AsyncOperation>.fromOpaque(argument).takeUnretainedValue().complete()
}
