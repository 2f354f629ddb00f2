import ColonyCore
import ColonyModel
import ColonyStore
import Logging
import Sockets

/// The coordinator's state and its waiting requests: the core, plus the pulls and fetches
/// parked until there is something to answer (long polls).
///
/// One actor serializes every decision; parked requests are continuations resumed by the
/// event that satisfies them or by `expire` at their deadline.
///
/// It runs on the sockets thread (`SocketReactor`), where the coordinator's requests are read
/// and answered: a request reaches it and its reply leaves without a hop to another thread.
actor CoordinatorState {
    nonisolated var unownedExecutor: UnownedSerialExecutor { SocketReactor.shared.asUnownedSerialExecutor() }

    /// What a pull is answered with: tasks to start and running tasks to stop.
    struct PullAnswer: Sendable {
        var tasks: [DispatchedTask] = []
        var cancel: [TaskID] = []
        var seq: UInt64 = 0
        /// Set when `colony drain` asked this node to drain: its deadline in seconds.
        var drainDeadline: Double?
        /// The pull was brief and the node is not known on its connection: nothing was
        /// applied; it must send the pull again with its full description.
        var describe = false
    }

    /// Every reply to a pull gets the next sequence number (see CoordinatorCore.nextReplySeq).
    func answer(to node: String, _ tasks: [DispatchedTask] = [], cancel: [TaskID] = []) -> PullAnswer {
        PullAnswer(tasks: tasks, cancel: cancel, seq: core.nextReplySeq(), drainDeadline: core.drainRequest(forNode: node))
    }

    struct ParkedPull {
        var continuation: CheckedContinuation<PullAnswer, Never>
        var deadline: Double
        var sequence: UInt64
    }

    struct ParkedFetch {
        var continuation: CheckedContinuation<(results: [TaskOutcome], unfinished: Int), Never>
        var maxResults: Int
        /// Whether results stay until acknowledged (a client's fetch) or go when handed out.
        var keepUntilAcked: Bool
        var deadline: Double
        var sequence: UInt64
    }

    var core: CoordinatorCore
    let store: Store?
    /// The connection each node last pulled on, and back, to map a closed connection to its node.
    var pipeOfNode: [String: UInt32] = [:]
    var nodeOfPipe: [UInt32: String] = [:]
    var parkedPulls: [String: ParkedPull] = [:]
    var parkedFetches: [String: [ParkedFetch]] = [:]
    var parkedResults: [TaskID: [(continuation: CheckedContinuation<TaskOutcome?, Never>, deadline: Double)]] = [:]
    /// Tasks' live output (see `CoordinatorState+Logs`), and the log reads waiting for more.
    var taskLogs: TaskLogs
    var parkedLogReads: [ParkedLogRead] = []
    var parkedJobReads: [ParkedJobRead] = []
    var sequence: UInt64 = 0
    var closed = false
    var window = FigureWindow()
    /// What the coordinator's own allocator (if any) last said of its node jobs.
    var allocation: AllocationStatus?
    /// When `expire` last ran (every 20 ms unless the coordinator itself was held up).
    var expiredAt = 0.0
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant

    let logger: Logger?

    /// Why the journal cannot be written, while the state takes no changes (nil: it takes them).
    var journalFailure: String?
    /// When the journal was last tried again, while it fails.
    var journalRetriedAt = 0.0

    /// A state over `restored` (a core rebuilt from the store, made with `bounds`: see
    /// `CoordinatorCore.Restoration`) or a new core, journaling to `store` (if any).
    init(bounds: CoordinatorCore.Bounds, store: Store? = nil, restored: CoordinatorCore? = nil, logger: Logger? = nil,
         logBounds: TaskLogs.Bounds = TaskLogs.Bounds()) {
        core = restored ?? CoordinatorCore(bounds: bounds)
        taskLogs = TaskLogs(bounds: logBounds)
        self.logger = logger
        core.recordingEvents = logger != nil
        // The start is the first point of the throughput window: rates are known from then on.
        window.closeSecond(at: 0, finishedTotal: 0)
        started = clock.now
        self.store = store
        core.journaling = store != nil
    }

    /// Hands what the core journaled to the store (the replies wait for it to be durable).
    func journal() {
        if let logger { log(core.takeEvents(), to: logger) }
        guard let store else { return }
        let records = core.takeJournal()
        if !records.isEmpty { store.append(records, nextID: core.nextTaskID) }
    }

    func log(_ events: [CoordinatorCore.Event], to logger: Logger) {
        for event in events {
            switch event {
            case .nodeJoined(let name, let host, let threads, let processes):
                logger.info("node joined", metadata: ["node": "\(name)", "host": "\(host)", "threads": "\(threads)", "processes": "\(processes)"])
            case .nodeLeft(let name, let handedBack):
                logger.info("node left", metadata: ["node": "\(name)", "tasks_handed_back": "\(handedBack)"])
            case .nodeLost(let name, let reason, let moved):
                logger.warning("node lost", metadata: ["node": "\(name)", "tasks_moved": "\(moved)", "reason": "\(reason)"])
            case .sessionAbandoned(let session, let idle, let cancelled, let dropped):
                logger.notice("session abandoned: its client was not heard from for the session timeout", metadata: [
                    "session": "\(session)", "idle_seconds": "\(Int(idle))", "tasks_cancelled": "\(cancelled)", "results_dropped": "\(dropped)",
                ])
            case .taskFailed(let id, let handler, let node, let attempts, let error, let reason):
                logger.info("task failed", metadata: [
                    "task": "\(id)", "handler": "\(handler)", "node": "\(node)", "attempts": "\(attempts)",
                    "reason": "\(reason.rawValue)", "error": "\(error)",
                ])
            case .jobForgotten(let id, let tasks):
                logger.info("job forgotten", metadata: ["job": "\(id)", "tasks": "\(tasks)"])
            }
        }
    }

    /// Refuses a change while the journal cannot be written; on first seeing a failed commit,
    /// puts the state back to what the journal holds (see `reload(after:)`).
    func refuseChangesIfJournalFails() throws(CoordinatorCore.Refusal) {
        noticeJournalFailure()
        if let journalFailure {
            throw .unavailable("the coordinator cannot write its journal, so it takes no changes until it can (nothing was applied): \(journalFailure)")
        }
    }

    /// Reloads the state on first seeing a failed commit (reads call it too, so that they never
    /// show a change the journal refused).
    func noticeJournalFailure() {
        if let store, journalFailure == nil, let failure = store.failure { reload(after: failure) }
    }

    /// A commit failed: its changes, and those made since, were applied here but refused by
    /// the journal. The journal holds exactly what was acknowledged, so the state is rebuilt
    /// from it, as after a restart (nodes re-announce and keep what they run; leases are
    /// made anew). Parked requests are answered empty. Changes are refused until the journal
    /// takes a commit again (`expire` tries once a second).
    func reload(after failure: String) {
        guard let store else { return }
        logger?.error("journal write failed: refusing changes until it can be written again; reads go on", metadata: [
            "cause": "\(failure)", "journal": "\(store.path)",
        ])
        do {
            let (restored, summary) = try JournalRecovery.restore(from: store, bounds: core.bounds, now: now)
            core = restored
            core.recordingEvents = logger != nil
            core.journaling = true
            logger?.info("state reloaded from the journal", metadata: [
                "unfinished_tasks": "\(summary.unfinishedTasks)", "results": "\(summary.results)",
                "seconds": "\(String(format: "%.3f", summary.seconds))",
            ])
        } catch {
            // Unreadable too: keep the books but take no changes (journalFailure stays set,
            // and a later successful retry cannot lift it: see `expire`).
            logger?.critical("cannot reload the state from the journal; restart the coordinator", metadata: ["cause": "\(error)"])
            journalUnreadable = true
        }
        store.discardRefused()
        journalFailure = failure
        journalRetriedAt = now
        pipeOfNode = [:]
        nodeOfPipe = [:]
        answerAllParked()
    }

    var journalUnreadable = false

    /// While the journal fails: tries it again once a second; lifts the refusal once it takes
    /// a commit.
    func retryJournal() {
        guard let store, let failure = journalFailure, !journalUnreadable, now - journalRetriedAt >= 1 else { return }
        journalRetriedAt = now
        if store.retryAfterFailure() {
            journalFailure = nil
            logger?.notice("journal writable again: taking changes", metadata: ["journal": "\(store.path)", "after": "\(failure)"])
        }
    }

    /// When the tables were last looked at for compaction, and how many tasks the core knew
    /// when memory was last given back.
    var compactedAt = 0.0
    var knownAtLastTrim = 0

    /// Once a second: rebuilds tables a drain left mostly empty, and gives freed memory back
    /// to the system after that or after 10,000 tasks fewer are known than at the last time.
    func compactIfDue() {
        guard now - compactedAt >= 1 else { return }
        compactedAt = now
        let known = core.knownTaskCount
        if core.compactIfSparse() || known + 10_000 <= knownAtLastTrim {
            ReleasedMemory.trim()
            knownAtLastTrim = known
        } else if known > knownAtLastTrim {
            knownAtLastTrim = known
        }
    }

    var now: Double {
        let elapsed = clock.now - started
        return elapsed.inSeconds
    }

    func submit(_ submissions: [TaskSubmission], session: String) throws(CoordinatorCore.Refusal) -> [TaskID] {
        try refuseChangesIfJournalFails()
        let ids = try core.submit(submissions, session: session, now: now)
        // Dependencies on failed tasks finish new tasks at once.
        answerParkedFetches(session: session)
        wakeParkedPulls()
        journal()
        return ids
    }

    /// A node's pull: applies its results, then answers at once with work, or parks until
    /// work arrives or `waitSeconds` pass. A newer pull of the same node answers the parked
    /// one (empty), so each node has at most one parked pull.
    ///
    /// A `brief` pull carries only the node's name and what changes from pull to pull; its
    /// description is the one it sent last on the same connection (`pipeID`). Unknown there
    /// (a restarted coordinator, a reconnected node), the answer asks for the description.
    func pull(node: NodeAnnouncement, brief: Bool = false, results: [TaskOutcome], running: Set<TaskID>?, ackedReplySeq: UInt64,
              returned: [TaskID] = [], leaving: Bool = false, pipeID: UInt32 = 0, subtaskSession: String = "",
              waitSeconds: Double) async throws(CoordinatorCore.Refusal) -> PullAnswer {
        try refuseChangesIfJournalFails()
        var node = node
        if brief {
            guard pipeID == 0 || pipeOfNode[node.name] == pipeID, let described = core.announcement(ofNode: node.name) else {
                return PullAnswer(describe: true)
            }
            node = described.updated(by: node)
        } else if pipeID != 0, let held = pipeOfNode[node.name], held != pipeID,
                  let live = core.announcement(ofNode: node.name), live.pid != node.pid || live.host != node.host {
            // Another process holds the name on a connection still open: two nodes under one
            // name would take each other's leases for ever. The first keeps it; this one is
            // refused until the first is gone (its connection closes, or it is declared lost).
            throw .invalidArgument("node name '\(node.name)' is in use by a live node (host \(live.host), pid \(live.pid)); start this node with another --name")
        }
        if pipeID != 0 && pipeOfNode[node.name] != pipeID {
            if let old = pipeOfNode[node.name] { nodeOfPipe[old] = nil }
            pipeOfNode[node.name] = pipeID
            nodeOfPipe[pipeID] = node.name
        }
        let sessions = try core.report(node: node, results: results, now: now, running: running, ackedReplySeq: ackedReplySeq,
                                       returned: returned, leaving: leaving)
        if !subtaskSession.isEmpty { core.noteHeard(session: subtaskSession, now: now, fromNodesPull: true) }
        for session in sessions { answerParkedFetches(session: session) }
        journal()
        if let previous = parkedPulls.removeValue(forKey: node.name) {
            previous.continuation.resume(returning: answer(to: node.name))
        }
        if leaving {
            // Its tasks (handed back or not) may go to other nodes now.
            wakeParkedPulls()
            return answer(to: node.name)
        }
        if !returned.isEmpty { wakeParkedPulls() }
        // Freed limits may let other parked nodes start queued work (cancellations reach
        // parked nodes from `cancel` and `expire`, so nothing else needs waking here).
        if !results.isEmpty && core.queuedCount > 0 { wakeParkedPulls() }
        let tasks = core.dispatch(toNode: node.name, now: now)
        let cancel = core.takeCancellations(forNode: node.name)
        if !tasks.isEmpty || !cancel.isEmpty || waitSeconds <= 0 || closed || (core.drainRequest(forNode: node.name) != nil && !node.draining) {
            return answer(to: node.name, tasks, cancel: cancel)
        }
        let deadline = now + waitSeconds
        sequence += 1
        let order = sequence
        return await withCheckedContinuation { continuation in
            parkedPulls[node.name] = ParkedPull(continuation: continuation, deadline: deadline, sequence: order)
        }
    }

    /// A client's fetch of its session's results: answers at once when there are some (or
    /// nothing is pending), else parks until results arrive or `waitSeconds` pass.
    ///
    /// With `acked` (a client's pump) results stay until a later fetch acknowledges them, so a
    /// lost reply (or a coordinator restart before it arrived) loses nothing; without it (a
    /// submit that waits for its own result) they go as they are handed out.
    func fetch(session: String, maxResults: Int, waitSeconds: Double, acked: [TaskID]? = nil) async throws(CoordinatorCore.Refusal) -> (results: [TaskOutcome], unfinished: Int) {
        // Reading results without acknowledging any changes nothing; anything else forgets some.
        if acked == nil || acked?.isEmpty == false { try refuseChangesIfJournalFails() }
        core.noteHeard(session: session, now: now)
        let taken = acked.map { core.peekResults(session: session, max: maxResults, acked: $0) }
            ?? core.takeResults(session: session, max: maxResults)
        journal()
        if maxResults == 0 { return taken }
        if !taken.results.isEmpty || taken.unfinished == 0 || waitSeconds <= 0 || closed { return taken }
        let deadline = now + waitSeconds
        sequence += 1
        let order = sequence
        return await withCheckedContinuation { continuation in
            parkedFetches[session, default: []].append(
                ParkedFetch(continuation: continuation, maxResults: maxResults, keepUntilAcked: acked != nil, deadline: deadline, sequence: order))
        }
    }

    func invariantViolations() -> [String] { core.invariantViolations() }

}
