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
        /// Waits in progress per task: a handler may wait for several sets at once (`async
        /// let`), and its slots stay lent until the last of them ends.
        var waiting: [UInt64: Int] = [:]
        var slots: [TaskPool: ThreadSlots] = [:]
        var closed = false
        /// Bumped whenever a task starts or stops waiting: the pull loop compares a number per
        /// pull instead of building the set.
        var changes: UInt64 = 0
        /// Per running task: what it submitted, and what of that it waited for.
        var submitted: [UInt64: [TaskID]] = [:]
        var awaited: [UInt64: Set<TaskID>] = [:]
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

    /// How many times the waiting set changed so far.
    var changes: UInt64 { state.withLock { $0.changes } }

    /// What a pull carries, in one look: the tasks waiting for their subtasks now, the count
    /// of changes it reflects, and the session of the link's client once it has one (every
    /// pull names it, so the tasks handlers submit live as long as the node; see
    /// `PullRequest.subtask_session`).
    func forPull() -> (changes: UInt64, waiting: [UInt64], session: String?) {
        state.withLock { ($0.changes, Array($0.waiting.keys), $0.client?.session) }
    }

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
        // The slots change under the lock, so that the first wait's start and the last one's
        // end reach them in that order.
        let first = state.withLock { state -> Bool in
            state.waiting[id, default: 0] += 1
            guard state.waiting[id] == 1 else { return false }
            state.changes += 1
            state.slots[pool]?.setWaiting(id, true)
            return true
        }
        if first { changed() }
        defer {
            let last = state.withLock { state -> Bool in
                state.waiting[id, default: 1] -= 1
                guard state.waiting[id] == 0 else { return false }
                state.waiting[id] = nil
                state.changes += 1
                state.slots[pool]?.setWaiting(id, false)
                return true
            }
            if last { changed() }
        }
        return try await body()
    }

    /// Task `task` submitted `ids`.
    func noteSubmitted(_ ids: [TaskID], by task: UInt64) {
        state.withLock { $0.submitted[task, default: []].append(contentsOf: ids) }
    }

    /// Task `task` waits for `ids`.
    func noteAwaited(_ ids: [TaskID], by task: UInt64) {
        state.withLock { $0.awaited[task, default: []].formUnion(ids) }
    }

    /// Task `task` ended: the results of what it submitted and never waited for will not be
    /// asked for, so the client stops keeping them (see `ColonyClient.forget`).
    func ended(task: UInt64) {
        let (client, unwanted) = state.withLock { state -> (ColonyClient?, [TaskID]) in
            guard let submitted = state.submitted.removeValue(forKey: task) else { return (nil, []) }
            let awaited = state.awaited.removeValue(forKey: task) ?? []
            return (state.client, submitted.filter { !awaited.contains($0) })
        }
        guard let client, !unwanted.isEmpty else { return }
        Task { await client.forget(unwanted) }
    }

    /// Results the link's client holds that nobody asked for yet.
    func resultsHeld() async -> Int {
        guard let client = state.withLock({ $0.client }) else { return 0 }
        return await client.resultsHeld
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
