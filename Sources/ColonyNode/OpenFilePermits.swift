import Synchronization

/// Open files shared by a node's fetches: a fetch takes one for its connection (two when it
/// saves to a file) and waits, in arrival order, while none is free.
///
/// A process at its open-files limit fails every `socket()` and `open()` with EMFILE, its
/// nng connections included (nng 1.5's timers have been seen to stall there: a node kept
/// fetches past their timeouts for good). Waiting for a permit instead, within the fetch's
/// own deadline, keeps a node of 5,000 io slots under a limit of 1,024 working: no fetch
/// fails for want of a file.
public final class OpenFilePermits: Sendable {
    /// The permits of this process: its soft limit (read at first use, after `colony node`
    /// raised it) less `OpenFileLimit.reserved`.
    public static let shared = OpenFilePermits(capacity: OpenFileLimit.fetchConnections(under: OpenFileLimit.current()))

    private struct Waiter {
        let id: UInt64
        let count: Int
        let continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var free: Int
        var queue: [Waiter] = []
        /// Takers that have an id and have not yet been granted or given up.
        var live: Set<UInt64> = []
        /// Takers that gave up (deadline, cancellation) before they joined the queue.
        var gaveUpEarly: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    public let capacity: Int
    private let state: Mutex<State>

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        state = Mutex(State(free: max(1, capacity)))
    }

    /// Permits free now.
    public var free: Int { state.withLock { $0.free } }
    /// Takers waiting now.
    public var waiting: Int { state.withLock { $0.queue.count } }

    /// Takes `count` permits (at most `capacity`), waiting until `deadline`; returns how many
    /// it took, nil when the deadline came first. Throws `CancellationError` when the calling task is cancelled
    /// while it waits. Give back what it took with `give`.
    public func take(_ count: Int, until deadline: ContinuousClock.Instant) async throws -> Int? {
        let count = min(max(count, 1), capacity)
        let id: UInt64? = state.withLock { state in
            if state.queue.isEmpty && state.free >= count {
                state.free -= count
                return nil
            }
            state.nextID += 1
            state.live.insert(state.nextID)
            return state.nextID
        }
        guard let id else { return count }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            self?.giveUp(id)
        }
        defer { timer.cancel() }
        let granted = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { state in
                    if state.gaveUpEarly.remove(id) != nil {
                        state.live.remove(id)
                        return false
                    }
                    if state.queue.isEmpty && state.free >= count {
                        state.free -= count
                        state.live.remove(id)
                        return true
                    }
                    state.queue.append(Waiter(id: id, count: count, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            giveUp(id)
        }
        if granted { return count }
        try Task.checkCancellation()
        return nil
    }

    /// Gives back `count` permits taken with `take`.
    public func give(_ count: Int) {
        let woken = state.withLock { state -> [Waiter] in
            state.free += count
            var woken: [Waiter] = []
            while let first = state.queue.first, state.free >= first.count {
                state.free -= first.count
                state.queue.removeFirst()
                state.live.remove(first.id)
                woken.append(first)
            }
            return woken
        }
        for waiter in woken { waiter.continuation.resume(returning: true) }
    }

    /// The taker `id` stops waiting (its deadline passed or it was cancelled).
    private func giveUp(_ id: UInt64) {
        let leaving = state.withLock { state -> Waiter? in
            if let index = state.queue.firstIndex(where: { $0.id == id }) {
                state.live.remove(id)
                return state.queue.remove(at: index)
            }
            if state.live.contains(id) { state.gaveUpEarly.insert(id) }
            return nil
        }
        leaving?.continuation.resume(returning: false)
        // A waiter ahead of others that leaves may let the next ones in.
        if leaving != nil { give(0) }
    }
}
