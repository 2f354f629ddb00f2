/// A task's id: assigned by the coordinator, unique for its lifetime, increasing.
public typealias TaskID = UInt64

/// What a client asks to run.
public struct TaskSubmission: Sendable, Equatable {
    public var handler: String
    public var input: [UInt8]
    public init(handler: String, input: [UInt8]) {
        self.handler = handler
        self.input = input
    }
}

/// One attempt at a task, handed to a node.
public struct DispatchedTask: Sendable, Equatable {
    public var id: TaskID
    public var handler: String
    public var input: [UInt8]
    public var attempt: UInt32
    public init(id: TaskID, handler: String, input: [UInt8], attempt: UInt32) {
        self.id = id
        self.handler = handler
        self.input = input
        self.attempt = attempt
    }
}

/// How one attempt ended, as reported by the node that ran it.
public struct TaskOutcome: Sendable, Equatable {
    public var id: TaskID
    public var attempt: UInt32
    public var succeeded: Bool
    public var output: [UInt8]
    public var error: String
    public var node: String
    public var runMicros: UInt64
    public init(id: TaskID, attempt: UInt32, succeeded: Bool, output: [UInt8] = [], error: String = "", node: String, runMicros: UInt64 = 0) {
        self.id = id
        self.attempt = attempt
        self.succeeded = succeeded
        self.output = output
        self.error = error
        self.node = node
        self.runMicros = runMicros
    }
}

/// Who a node says it is, sent with every pull.
public struct NodeAnnouncement: Sendable, Equatable {
    public var name: String
    public var host: String
    public var threadSlots: Int
    public var handlers: [String]
    public var pid: Int
    /// Tasks the node will queue beyond its slots (asked for only while its tasks are short).
    public var prefetch: Int
    public init(name: String, host: String, threadSlots: Int, handlers: [String] = [], pid: Int = 0, prefetch: Int = 0) {
        self.name = name
        self.host = host
        self.threadSlots = threadSlots
        self.handlers = handlers
        self.pid = pid
        self.prefetch = prefetch
    }
}

/// A snapshot of the cluster for `colony status`.
public struct ClusterStatus: Sendable, Equatable {
    /// One node as the coordinator sees it.
    public struct Node: Sendable, Equatable {
        public var announcement: NodeAnnouncement
        public var running: Int
        public var completed: UInt64
        public var failed: UInt64
        public var lastSeenSecondsAgo: Double
        public init(announcement: NodeAnnouncement, running: Int, completed: UInt64, failed: UInt64, lastSeenSecondsAgo: Double) {
            self.announcement = announcement
            self.running = running
            self.completed = completed
            self.failed = failed
            self.lastSeenSecondsAgo = lastSeenSecondsAgo
        }
    }
    public var nodes: [Node]
    public var queued: Int
    public var running: Int
    public var succeeded: UInt64
    public var failed: UInt64
    public var resultsWaiting: Int
    public var staleResultsDropped: UInt64
    public init(nodes: [Node], queued: Int, running: Int, succeeded: UInt64, failed: UInt64, resultsWaiting: Int, staleResultsDropped: UInt64) {
        self.nodes = nodes
        self.queued = queued
        self.running = running
        self.succeeded = succeeded
        self.failed = failed
        self.resultsWaiting = resultsWaiting
        self.staleResultsDropped = staleResultsDropped
    }
}
