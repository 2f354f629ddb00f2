/// A job's id: assigned by the coordinator, dense (1, 2, 3, ...), never reused, also across
/// restarts of a coordinator with a state folder.
public typealias JobID = UInt64

/// Which job a submit's tasks go into.
public enum JobTarget: Sendable, Equatable {
    /// A new job, made for this submit (a `colony map` or `colony submit` makes one per run).
    case new
    /// The job of this id; refused if the coordinator does not know it.
    case existing(JobID)
    /// The job of this name, made if there is none (`--job NAME`).
    case named(String)
}

/// Where a job is in its life, as `colony job list` and the metrics say it.
public enum JobState: String, Sendable, Equatable, CaseIterable {
    /// Some of its tasks have not finished.
    case running
    /// Every task finished and succeeded.
    case succeeded
    /// Every task finished and at least one failed (and the job was not cancelled).
    case failed
    /// `colony job cancel` stopped it: its unfinished tasks were cancelled, its results freed.
    case cancelled
}

/// A job's tasks, counted by phase (maintained at each transition, never recounted).
public struct JobCounts: Sendable, Equatable {
    public var waiting = 0
    public var queued = 0
    public var running = 0
    public var succeeded = 0
    public var failed = 0
    public var cancelled = 0
    public var total: Int { waiting + queued + running + finished }
    public var finished: Int { succeeded + failed + cancelled }
    public init(waiting: Int = 0, queued: Int = 0, running: Int = 0, succeeded: Int = 0, failed: Int = 0, cancelled: Int = 0) {
        self.waiting = waiting
        self.queued = queued
        self.running = running
        self.succeeded = succeeded
        self.failed = failed
        self.cancelled = cancelled
    }
}

/// A failed task of a job, with the reason it failed.
public struct JobFailure: Sendable, Equatable {
    public var id: TaskID
    /// Its place in the job's input order (0 is the first task submitted to the job).
    public var index: Int
    public var error: String
    public var reason: FailureKind
    public init(id: TaskID, index: Int, error: String, reason: FailureKind) {
        self.id = id
        self.index = index
        self.error = error
        self.reason = reason
    }
}

/// A job as `colony job status` shows it.
public struct JobInfo: Sendable, Equatable {
    public var id: JobID
    public var name: String?
    /// Survives its submitting client: the session timeout never cancels its tasks.
    public var detached: Bool
    public var state: JobState
    public var counts: JobCounts
    /// Seconds since it was made (or since the coordinator restored it).
    public var ageSeconds: Double
    /// Seconds from its making to its end (to now while it runs): the throughput's window.
    public var elapsedSeconds: Double
    /// Its first failures, in input order (at most `CoordinatorCore.jobFailuresShownMax`).
    public var failures: [JobFailure]
    public init(id: JobID, name: String?, detached: Bool, state: JobState, counts: JobCounts, ageSeconds: Double, elapsedSeconds: Double,
                failures: [JobFailure] = []) {
        self.id = id
        self.name = name
        self.detached = detached
        self.state = state
        self.counts = counts
        self.ageSeconds = ageSeconds
        self.elapsedSeconds = elapsedSeconds
        self.failures = failures
    }
}

/// Results of a job in input order, from a position on: as many consecutive finished tasks
/// as there are from `from` (the first unfinished one stops the page, so that a reader
/// streams them in order as they arrive).
public struct JobResultsPage: Sendable, Equatable {
    public var results: [TaskOutcome]
    /// The position to read from next (`from` + the results given).
    public var next: Int
    /// Tasks in the job now.
    public var total: Int
    /// Every task of the job has finished (a named job may still gain tasks).
    public var ended: Bool
    public init(results: [TaskOutcome], next: Int, total: Int, ended: Bool) {
        self.results = results
        self.next = next
        self.total = total
        self.ended = ended
    }
}
