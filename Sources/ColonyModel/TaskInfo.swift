/// Where a task is in its life.
public enum TaskPhase: String, Sendable, Equatable, CaseIterable {
    case waiting, queued, running, succeeded, failed, cancelled
}

/// A task as `colony tasks` shows it.
public struct TaskInfo: Sendable, Equatable {
    public var id: TaskID
    public var handler: String
    public var phase: TaskPhase
    public var attempt: UInt32
    public var node: String
    public var error: String
    public var priority: Int32
    public init(id: TaskID, handler: String, phase: TaskPhase, attempt: UInt32, node: String, error: String, priority: Int32) {
        self.id = id
        self.handler = handler
        self.phase = phase
        self.attempt = attempt
        self.node = node
        self.error = error
        self.priority = priority
    }
}
