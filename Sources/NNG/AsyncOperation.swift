import CNNG
import Synchronization

/// One nng asynchronous I/O (`nng_aio`) bridged to a Swift continuation.
///
/// The aio's callback runs on an nng thread; it only resumes the continuation. The callback
/// holds a strong reference while it runs, and the aio is reaped (freed after its callback
/// returned) when the last reference goes.
final class AsyncOperation: @unchecked Sendable {
    // State shared between the awaiting task, the cancellation handler and nng's callback.
    private struct State {
        var continuation: CheckedContinuation<Int32, Never>?
        var started = false
        var cancelled = false
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

    /// Starts the operation with `start` and waits for it to complete; returns nng's result code.
    ///
    /// - Parameter cancellable: whether Swift task cancellation cancels the aio. REQ receives
    ///   pass `false` where a send may be pending on the same context (see `Context.request`).
    func run(timeoutMilliseconds: Int32?, cancellable: Bool, _ start: (OpaquePointer) -> Void) async -> Int32 {
        guard let aio else { return Int32(NNG_ENOMEM.rawValue) }
        nng_aio_set_timeout(aio, timeoutMilliseconds ?? NNG_DURATION_DEFAULT)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                let alreadyCancelled = state.withLock { state -> Bool in
                    if state.cancelled && cancellable { return true }
                    state.continuation = continuation
                    state.started = true
                    return false
                }
                if alreadyCancelled {
                    continuation.resume(returning: Int32(NNG_ECANCELED.rawValue))
                } else {
                    start(aio)
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
        let continuation = state.withLock { state -> CheckedContinuation<Int32, Never>? in
            let c = state.continuation
            state.continuation = nil
            state.started = false
            return c
        }
        continuation?.resume(returning: rv)
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
