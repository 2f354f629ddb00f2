import Colony
import ColonyModel
import Synchronization

/// What lets a running handler submit tasks and wait for them (`TaskContext.submit`,
/// `.results`, `.map`): one client connection per node, opened at the first submit, and the
/// set of tasks that wait for their subtasks, which the pull loop sends in every pull.
///
/// The rule that keeps a tree of tasks from deadlocking: a task gives its slots back while it
/// waits for its subtasks (here in its pool's slots, and at the coordinator through the pull's
/// `waiting` ids), so the subtasks can run even when every slot holds a waiting parent. When
/// its subtasks are done it continues beside whatever took its slot (the node runs one task
/// more than its slots until one ends). Its named resources (gpus, licenses) stay held.
final class SubtaskLink: Sendable {
    private struct State {
        var client: ColonyClient?
        var waiting: Set<UInt64> = []
        var slots: [TaskPool: ThreadSlots] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    private let url: String
    private let options: ColonyClient.Options
    /// Wakes the pull loop: the waiting set changed.
    private let changed: @Sendable () -> Void

    init(url: String, token: String, tls: TLSSettings?, changed: @escaping @Sendable () -> Void) {
        self.url = url
        var options = ColonyClient.Options()
        options.token = token
        options.tls = tls
        self.options = options
        self.changed = changed
    }

    /// The pools whose slots a waiting task gives back.
    func attach(_ slots: ThreadSlots, for pool: TaskPool) {
        state.withLock { $0.slots[pool] = slots }
    }

    /// The tasks waiting for their subtasks now.
    var waiting: Set<UInt64> { state.withLock { $0.waiting } }

    func client() throws(ColonyError) -> ColonyClient {
        let existing = state.withLock { state -> ColonyClient?? in state.closed ? .some(nil) : .some(state.client) }
        guard case .some(let found) = existing else { throw .closed }
        if let found { return found }
        let made = try ColonyClient(connect: url, options: options)
        let (kept, spare) = state.withLock { state -> (ColonyClient?, ColonyClient?) in
            if state.closed { return (nil, made) }
            if let other = state.client { return (other, made) }
            state.client = made
            return (made, nil)
        }
        if let spare { Task { await spare.close() } }
        guard let kept else { throw .closed }
        return kept
    }

    /// Runs `body` (a wait for subtasks) with task `id`'s slots given back.
    func whileWaiting<T: Sendable>(task id: UInt64, pool: TaskPool, _ body: () async throws(ColonyError) -> T) async throws(ColonyError) -> T {
        let slots = state.withLock { state -> ThreadSlots? in
            state.waiting.insert(id)
            return state.slots[pool]
        }
        slots?.setWaiting(id, true)
        changed()
        defer {
            state.withLock { _ = $0.waiting.remove(id) }
            slots?.setWaiting(id, false)
            changed()
        }
        return try await body()
    }

    /// Closes the connection (the node stops).
    func close() async {
        let client = state.withLock { state -> ColonyClient? in
            state.closed = true
            defer { state.client = nil }
            return state.client
        }
        await client?.close()
    }
}
