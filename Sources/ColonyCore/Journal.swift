import ColonyModel

/// A change to the coordinator's durable state, as the core reports it for the journal.
///
/// The journal keeps *state*, not history: a row per task that is unfinished or whose result
/// has not been handed out, a value per counter, a size per limit. Leases are not journaled:
/// after a restart every unfinished task is queued again (a node still running one reports its
/// result as a late, dropped one). So the file and the restart time are bounded by the live
/// tasks, never by how many ever ran.
public enum JournalRecord: Sendable, Equatable {
    /// A task was accepted.
    case submitted(id: TaskID, submission: TaskSubmission, session: String)
    /// A task finished (succeeded, failed or cancelled); its counter changes are journaled
    /// in the same batch, so a restart never applies them twice or loses them.
    case finished(TaskOutcome)
    /// A task's result was handed out or expired: the task is gone.
    case removed(TaskID)
    /// A counter's value now.
    case counter(name: String, value: Int64)
    /// A limit's size.
    case limit(name: String, size: Int)
    /// The most holders a limit has had at once so far.
    case limitHighWater(name: String, value: Int)
    /// A keyed counter change was applied with this reply (a resend gets it again).
    case counterKey(key: String, reply: CounterReply)
    /// A counter change's key is no longer remembered (the oldest go first).
    case counterKeyForgotten(String)
    /// A job was made, or became detached.
    case jobMade(RecoveredJob)
    /// `colony job cancel`: its unfinished tasks were cancelled (their own records follow)
    /// and its results freed.
    case jobCancelled(JobID)
    /// A job was forgotten: its tasks whose results were delivered are gone with it.
    case jobForgotten(JobID)
    /// A task's result was handed out to its session, but its job still keeps it.
    case delivered(TaskID)
}

/// A keyed counter change and the reply it got, as the journal keeps it.
public struct CounterKey: Sendable, Equatable {
    public var key: String
    public var reply: CounterReply
    public init(key: String, reply: CounterReply) {
        self.key = key
        self.reply = reply
    }
}

/// What a counter change answered: the value (new, or previous for a set) and, for
/// compare-and-set, whether it swapped.
public struct CounterReply: Sendable, Equatable {
    public var value: Int64
    public var swapped: Bool
    public init(value: Int64, swapped: Bool = false) {
        self.value = value
        self.swapped = swapped
    }
}

/// A task as the journal restores it.
public struct RecoveredTask: Sendable, Equatable {
    public var id: TaskID
    public var submission: TaskSubmission
    public var session: String
    /// How it ended, if it did (its result not handed out yet).
    public var outcome: TaskOutcome?
    /// Its result was handed out to its session; only its job (`submission.job`) keeps it.
    public var delivered = false
    public init(id: TaskID, submission: TaskSubmission, session: String, outcome: TaskOutcome?, delivered: Bool = false) {
        self.delivered = delivered
        self.id = id
        self.submission = submission
        self.session = session
        self.outcome = outcome
    }
}

/// Everything the journal restores.
public struct RecoveredState: Sendable, Equatable {
    public var tasks: [RecoveredTask] = []
    public var counters: [String: Int64] = [:]
    public var limits: [String: Int] = [:]
    /// The next task id to hand out (ids are never reused, also across restarts).
    public var nextID: TaskID = 1
    /// Keys of applied counter changes and their replies, oldest first.
    public var counterKeys: [CounterKey] = []
    /// The most holders each limit has had at once.
    public var limitHighWater: [String: Int] = [:]
    /// The jobs held, and the next job id to hand out.
    public var jobs: [RecoveredJob] = []
    public var nextJobID: JobID = 1
    public init() {}
}

extension CoordinatorCore {
    /// The id the next submitted task will get.
    public var nextTaskID: TaskID { nextID }

    /// The journal records produced since the last call (empty unless `journaling` is on).
    public mutating func takeJournal() -> [JournalRecord] {
        let taken = journal
        journal = []
        return taken
    }

    /// Rebuilds the state a journal kept: finished tasks keep their results for their
    /// sessions, unfinished ones are queued (or wait for unfinished dependencies) with a fresh
    /// attempt count. Call on a new core, before anything else. (`Restoration` does the same
    /// one row at a time, without the rows held all at once.)
    public mutating func restore(_ state: RecoveredState, now: Double) {
        // The journal reads rows in id order; sort only if someone handed them otherwise.
        let ordered = zip(state.tasks, state.tasks.dropFirst()).allSatisfy { $0.id < $1.id }
            ? state.tasks : state.tasks.sorted { $0.id < $1.id }
        var restoration = Restoration(core: self, expectedTasks: ordered.count, now: now)
        for job in state.jobs { restoration.add(job) }
        for task in ordered { restoration.add(task) }
        self = restoration.finish(with: state)
    }

    /// A core rebuilt from a journal one task at a time, in id order, as `Store.recover(each:)`
    /// reads the rows: a million recovered tasks are then never held twice (all the rows,
    /// then all the records), which was most of a recovery's time (the kernel zeroing pages).
    public struct Restoration: Sendable {
        private var core: CoordinatorCore
        private let now: Double
        // Consecutive tasks mostly share a session and a class: they are counted and queued in
        // runs (one hash of each kind per run instead of per task).
        private var runSession = ""
        private var runUnfinished = 0
        private var runIDs: [TaskID] = []
        private var runKey: RunKey?
        private var lastID: TaskID = 0
        /// Tasks restored so far that had not finished, and finished ones (results kept).
        public private(set) var unfinished = 0
        public private(set) var finished = 0

        private struct RunKey: Sendable, Equatable {
            var priority: Int32
            var key: ReadyQueue.ClassKey
        }

        /// Starts from `core` (a new one, made with the coordinator's bounds); room is made
        /// for `expectedTasks`.
        public init(core: CoordinatorCore, expectedTasks: Int = 0, now: Double) {
            self.core = core
            self.now = now
            self.core.tasks.reserveCapacity(expectedTasks)
            self.core.keys.reserveCapacity(expectedTasks)
        }

        /// Makes room for `count` more tasks.
        public mutating func reserve(_ count: Int) {
            core.tasks.reserveCapacity(core.tasks.count + count)
            core.keys.reserveCapacity(core.keys.count + count)
        }

        /// Adds a job the journal holds; call before adding its tasks.
        public mutating func add(_ job: RecoveredJob) {
            core.restoreJob(job, now: now)
        }

        /// Adds the next task; ids must increase (dependencies are linked to tasks added before).
        public mutating func add(_ task: RecoveredTask) {
            assert(task.id > lastID, "restored tasks must come in id order")
            lastID = max(lastID, task.id)
            if task.delivered {
                // Only its job keeps it (a job forgotten meanwhile leaves nothing to restore).
                if let outcome = task.outcome, core.jobs[task.submission.job] != nil {
                    _ = core.restoreJobTask(task.submission.job, task: task.id, outcome: outcome)
                }
                return
            }
            if task.outcome == nil { unfinished += 1 } else { finished += 1 }
            var record = TaskRecord(handler: task.submission.handler, input: task.submission.input, session: task.session,
                                    options: task.submission.options, state: .queued)
            record.poolHandler = task.submission.poolHandler
            record.key = task.submission.key
            record.options.resources = CoordinatorCore.normalized(record.options.resources)
            if task.submission.detached { core.sessions[task.session, default: SessionRecord()].detached = true }
            record.restored = true
            if core.jobs[task.submission.job] != nil {
                record.job = task.submission.job
                record.jobIndex = core.restoreJobTask(record.job, task: task.id, outcome: task.outcome)
            }
            if let key = task.submission.key { core.keys[key] = task.id }
            record.finishedAt = now
            if let outcome = task.outcome {
                let phase: TaskPhase = outcome.cancelled ? .cancelled : outcome.succeeded ? .succeeded : .failed
                record.state = .finished(phase)
                record.attempt = outcome.attempt
                record.node = outcome.node
                record.lastError = outcome.error
                if !outcome.succeeded && !outcome.cancelled { record.lastFailure = outcome.failure ?? .error }
                if outcome.succeeded { record.output = outcome.output }
                core.tasks[task.id] = record
                core.sessions[task.session, default: SessionRecord()].finished.append(FinishedResult(outcome: outcome, finishedAt: now))
                core.resultsWaiting += 1
                return
            }
            // Unfinished tasks count as submitted to this run of the coordinator (the metrics'
            // books: submitted = finished + unfinished).
            core.submittedTotal += 1
            record.submittedAt = now
            // Dependencies: unfinished ones (restored before, ids are increasing) are waited
            // for; finished ones lend their output; ones already handed out and forgotten
            // count as done.
            var remaining = 0
            if !task.submission.options.after.isEmpty {
                for parent in Set(task.submission.options.after) {
                    guard var parentRecord = core.tasks[parent] else { continue }
                    if case .finished = parentRecord.state {
                        parentRecord.readers += 1
                    } else {
                        parentRecord.dependents.append(task.id)
                        parentRecord.readers += 1
                        remaining += 1
                    }
                    core.tasks[parent] = parentRecord
                }
            }
            if task.session != runSession {
                flushSession()
                runSession = task.session
            }
            runUnfinished += 1
            if remaining > 0 {
                record.state = .waiting(remaining: remaining)
                core.waitingCount += 1
                core.countJob(record.job, waiting: 1)
                core.tasks[task.id] = record
            } else {
                let key = record.classKey
                core.tasks[task.id] = record
                if let run = runKey, run.priority != task.submission.options.priority || run.key != key { flushQueue() }
                if runKey == nil { runKey = RunKey(priority: task.submission.options.priority, key: key) }
                runIDs.append(task.id)
            }
            if task.submission.options.timeoutSeconds != nil { core.timedTasks.insert(task.id) }
        }

        private mutating func flushSession() {
            if runUnfinished > 0 { core.sessions[runSession, default: SessionRecord()].unfinished += runUnfinished }
            runUnfinished = 0
        }

        private mutating func flushQueue() {
            if let run = runKey { core.ready.push(runIDs, priority: run.priority, key: run.key) }
            runIDs.removeAll(keepingCapacity: true)
            runKey = nil
        }

        /// The restored core, with what `state` holds besides tasks (counters, limits, keys of
        /// counter changes, the next id).
        public consuming func finish(with state: RecoveredState) -> CoordinatorCore {
            flushSession()
            flushQueue()
            core.counters = state.counters
            core.limitSizes = state.limits
            core.limitHighWater = state.limitHighWater.filter { core.limitSizes[$0.key] != nil }
            for entry in state.counterKeys { core.rememberCounterKey(entry.key, entry.reply, journaled: false) }
            core.nextID = max(state.nextID, lastID + 1)
            core.finishJobRestore(nextJobID: state.nextJobID, now: now)
            return core
        }
    }
}
