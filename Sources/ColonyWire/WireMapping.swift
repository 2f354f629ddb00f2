import ColonyModel
import Foundation

// Conversions between wire messages and core values. Kept apart so that the core knows
// nothing of protobuf and the wire knows nothing of dispatch rules.

extension TaskSubmission {
    public init(wire: Colony_V1_TaskSpec) {
        var options = TaskOptions(priority: wire.priority, uses: wire.uses, after: wire.after,
                                  maxAttempts: max(1, Int(wire.maxAttempts)), retryOnError: wire.retryOnError,
                                  requiredLabels: wire.labels, pool: TaskPool(wire: wire.pool))
        if wire.timeoutMs > 0 { options.timeoutSeconds = Double(wire.timeoutMs) / 1000 }
        options.resources = wire.resources.map(ResourceVariant.init(wire:))
        self.init(handler: wire.handler, input: Array(wire.input), options: options,
                  poolHandler: wire.poolHandler.isEmpty ? nil : wire.poolHandler, key: wire.key.isEmpty ? nil : wire.key)
    }

    public var wire: Colony_V1_TaskSpec {
        var spec = Colony_V1_TaskSpec()
        spec.handler = handler
        spec.input = Data(input)
        spec.priority = options.priority
        spec.uses = options.uses
        spec.after = options.after
        spec.maxAttempts = UInt32(clamping: options.maxAttempts)
        spec.retryOnError = options.retryOnError
        // The client checks it before (a nan or inf here would trap).
        if let timeout = options.timeoutSeconds { spec.timeoutMs = UInt32(clamping: (try? SecondsRange.taskTimeout.milliseconds(timeout, "")) ?? 0) }
        spec.labels = options.requiredLabels
        spec.resources = options.resources.map(\.wire)
        if let poolHandler { spec.poolHandler = poolHandler }
        if let key { spec.key = key }
        spec.pool = options.pool.wire
        return spec
    }
}

extension FailureKind {
    /// The kind a result carries; nil for `FAILURE_UNSPECIFIED` (not said) and unknown values.
    public init?(wire: Colony_V1_FailureKind) {
        switch wire {
        case .failureError: self = .error
        case .failureTimeout: self = .timeout
        case .failureCrashed: self = .crashed
        case .failureMemory: self = .memory
        case .failureLost: self = .lost
        case .failureUnknownHandler: self = .unknownHandler
        case .failureDependency: self = .dependency
        case .failureRefused: self = .refused
        case .failureCancelled: self = .cancelled
        case .failureUnspecified, .UNRECOGNIZED: return nil
        }
    }

    public var wire: Colony_V1_FailureKind {
        switch self {
        case .error: .failureError
        case .timeout: .failureTimeout
        case .crashed: .failureCrashed
        case .memory: .failureMemory
        case .lost: .failureLost
        case .unknownHandler: .failureUnknownHandler
        case .dependency: .failureDependency
        case .refused: .failureRefused
        case .cancelled: .failureCancelled
        }
    }
}

extension TaskOutcome {
    public init(wire: Colony_V1_TaskResult) {
        self.init(id: wire.id, attempt: wire.attempt, succeeded: wire.ok, output: Array(wire.output),
                  error: wire.error, failure: wire.ok ? nil : FailureKind(wire: wire.failure), node: wire.node, runMicros: wire.runMicros,
                  counterOps: wire.counterOps.map { CounterOp(name: $0.name, delta: $0.delta) })
    }

    public var wire: Colony_V1_TaskResult {
        var result = Colony_V1_TaskResult()
        result.id = id
        result.attempt = attempt
        result.ok = succeeded
        result.output = .init(output)
        result.error = error
        if let failure { result.failure = failure.wire }
        result.node = node
        result.runMicros = runMicros
        result.cancelled = cancelled
        return result
    }
}

extension DispatchedTask {
    public var wire: Colony_V1_Task {
        var task = Colony_V1_Task()
        task.id = id
        task.handler = handler
        task.input = .init(input)
        task.attempt = attempt
        task.dependencies = dependencies.mapValues { Data($0) }
        if let timeoutSeconds { task.timeoutMs = UInt32(clamping: Int((timeoutSeconds * 1000).rounded(.up))) }
        task.pool = pool.wire
        if cpus > 1 { task.cpus = UInt32(clamping: cpus) }
        task.resources = resources.map(\.wire)
        task.jobID = job
        return task
    }
}

extension NodeAnnouncement {
    public init(wire: Colony_V1_NodeInfo, prefetch: UInt32 = 0, processPrefetch: UInt32 = 0) {
        self.init(name: wire.name, host: wire.host, threadSlots: Int(wire.threadSlots), handlers: wire.handlers,
                  pid: Int(wire.pid), prefetch: Int(prefetch), labels: wire.labels,
                  processSlots: Int(wire.processSlots), processPrefetch: Int(processPrefetch),
                  processHandlers: Set(wire.processHandlers), ioSlots: Int(wire.ioSlots), ioHandlers: Set(wire.ioHandlers))
        draining = wire.draining
        resources = Self.resources(wire: wire.resources)
    }

    public var wire: Colony_V1_NodeInfo {
        var info = Colony_V1_NodeInfo()
        info.name = name
        info.host = host
        info.threadSlots = UInt32(clamping: threadSlots)
        info.handlers = handlers
        info.pid = UInt32(clamping: pid)
        info.labels = labels
        info.processSlots = UInt32(clamping: processSlots)
        info.processHandlers = processHandlers.sorted()
        info.ioSlots = UInt32(clamping: ioSlots)
        info.ioHandlers = ioHandlers.sorted()
        info.draining = draining
        info.resources = resources.mapValues(\.wire)
        return info
    }
}

extension TaskPool {
    public init(wire: Colony_V1_Pool) {
        switch wire {
        case .thread: self = .thread
        case .process: self = .process
        case .io: self = .io
        default: self = .automatic
        }
    }

    public var wire: Colony_V1_Pool {
        switch self {
        case .automatic: .default
        case .thread: .thread
        case .process: .process
        case .io: .io
        }
    }
}

extension ClusterStatus {
    public var wire: Colony_V1_StatusReply {
        var reply = Colony_V1_StatusReply()
        reply.nodes = nodes.map { node in
            var status = Colony_V1_NodeStatus()
            status.info = node.announcement.wire
            status.running = UInt32(clamping: node.running)
            status.completed = node.completed
            status.failed = node.failed
            status.lastSeenMsAgo = UInt64(node.lastSeenSecondsAgo * 1000)
            if let figures = node.announcement.figures { status.figures = figures.wire }
            status.resourcesHeld = node.resourcesHeld
            return status
        }
        reply.queued = UInt64(queued)
        reply.running = UInt64(running)
        reply.succeeded = succeeded
        reply.failed = failed
        reply.resultsWaiting = UInt64(resultsWaiting)
        reply.staleResultsDropped = staleResultsDropped
        reply.cancelled = cancelled
        reply.retried = retried
        reply.waiting = UInt64(waiting)
        reply.unplaceable = UInt64(unplaceable)
        reply.unplaceableReasons = unplaceableReasons.map { entry in
            var wire = Colony_V1_Unplaceable()
            wire.reason = entry.reason
            wire.count = UInt64(entry.count)
            return wire
        }
        reply.limits = limits.map(\.wire)
        reply.jobs = jobs.map(\.wire)
        reply.sessions = sessions.map { session in
            var wire = Colony_V1_SessionStatus()
            wire.session = session.session
            wire.unfinished = UInt64(session.unfinished)
            wire.resultsWaiting = UInt64(session.resultsWaiting)
            wire.idleSeconds = session.idleSeconds
            wire.detached = session.detached
            return wire
        }
        if let journalFailure { reply.journalFailure = journalFailure }
        if let allocation {
            var wire = Colony_V1_AllocationStatus()
            wire.system = allocation.system
            wire.requested = UInt32(clamping: allocation.requested)
            wire.running = UInt32(clamping: allocation.running)
            wire.max = UInt32(clamping: allocation.max)
            wire.submitted = allocation.submitted
            reply.allocation = wire
        }
        return reply
    }
}

extension LimitStatus {
    public var wire: Colony_V1_LimitInfo {
        var info = Colony_V1_LimitInfo()
        info.name = name
        info.size = UInt32(clamping: size)
        info.inUse = UInt32(clamping: inUse)
        info.highWater = UInt32(clamping: highWater)
        return info
    }
}

extension TaskInfo {
    public init(wire: Colony_V1_TaskInfo) {
        self.init(id: wire.id, handler: wire.handler, phase: TaskPhase(rawValue: wire.state) ?? .queued,
                  attempt: wire.attempt, node: wire.node, error: wire.error, priority: wire.priority)
    }

    public var wire: Colony_V1_TaskInfo {
        var info = Colony_V1_TaskInfo()
        info.id = id
        info.handler = handler
        info.state = phase.rawValue
        info.attempt = attempt
        info.node = node
        info.error = error
        info.priority = priority
        return info
    }
}

extension NodeFigures {
    public init(wire: Colony_V1_NodeFigures) {
        self.init()
        rssBytes = wire.rssBytes
        childrenRSSBytes = wire.childrenRssBytes
        childrenStarted = wire.childrenStarted
        succeeded = wire.succeeded
        failed = wire.failed
        failedPulls = wire.failedPulls
    }

    public var wire: Colony_V1_NodeFigures {
        var wire = Colony_V1_NodeFigures()
        wire.rssBytes = rssBytes
        wire.childrenRssBytes = childrenRSSBytes
        wire.childrenStarted = childrenStarted
        wire.succeeded = succeeded
        wire.failed = failed
        wire.failedPulls = failedPulls
        return wire
    }
}

extension LogStream {
    public init?(wire: Colony_V1_OutputStream) {
        switch wire {
        case .stdout: self = .stdout
        case .stderr: self = .stderr
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }

    public var wire: Colony_V1_OutputStream { self == .stdout ? .stdout : .stderr }
}
