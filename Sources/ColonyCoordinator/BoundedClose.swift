import Foundation
import Synchronization

/// Runs a close that may never return on a thread of its own and waits for it at most
/// `limit`; true when it returned in time. nng 1.5.2's `nng_close` can hang for good on a
/// REP socket whose contexts are busy when it runs (nanomsg/nng#1813, fixed in later nng
/// releases; seen once here under `colony bench`): a coordinator told to stop must stop even
/// then, so it commits its journal and exits, leaving that thread behind.
enum BoundedClose {
    /// Resumes its continuation once: with the close's end or with the bound's.
    private final class Outcome: Sendable {
        let continuation = Mutex<CheckedContinuation<Bool, Never>?>(nil)

        func finish(inTime: Bool) {
            continuation.withLock { waiting in
                waiting?.resume(returning: inTime)
                waiting = nil
            }
        }
    }

    static func run(waitingAtMost limit: Duration, _ close: @escaping @Sendable () -> Void) async -> Bool {
        let outcome = Outcome()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            outcome.continuation.withLock { $0 = continuation }
            let thread = Thread {
                close()
                outcome.finish(inTime: true)
            }
            thread.name = "colony-close"
            thread.start()
            Task {
                try? await Task.sleep(for: limit)
                outcome.finish(inTime: false)
            }
        }
    }
}
