import ColonyModel
import ColonyWire
import Foundation
import NNG

// The cluster as a whole: its status, counters, limits, cancellation, drains, task lists.
extension ColonyClient {
    // MARK: Status

    /// The cluster as the coordinator sees it now.
    public func status() async throws(ColonyError) -> ClusterStatus {
        let reply = try await request(.status(Colony_V1_StatusRequest()))
        guard case .statusReply(let status) = reply else {
            throw .protocolViolation("the coordinator answered a status request with something else")
        }
        return ClusterStatus(wire: status)
    }

    /// The cluster at a glance: the status with exact task counts, throughput, latency
    /// percentiles, recent failures and counters (what `colony top` shows).
    public func report() async throws(ColonyError) -> ClusterReport {
        var request = Colony_V1_StatusRequest()
        request.figures = true
        let reply = try await self.request(.status(request))
        guard case .statusReply(let status) = reply else {
            throw .protocolViolation("the coordinator answered a status request with something else")
        }
        return ClusterReport(wire: status)
    }

    // MARK: Counters, limits, cancellation, queries

    /// A cluster counter: `try await colony.counter("hits").add(1)`.
    public nonisolated func counter(_ name: String) -> Counter { Counter(client: self, name: name) }

    /// Every counter, by name.
    public func counters() async throws(ColonyError) -> [(name: String, value: Int64)] {
        var request = Colony_V1_CounterRequest()
        request.op = .list
        return try await counterRequest(request).counters.map { ($0.name, $0.value) }
    }

    func counterRequest(_ request: Colony_V1_CounterRequest) async throws(ColonyError) -> Colony_V1_CounterReply {
        var request = request
        if request.op != .get && request.op != .list && request.key.isEmpty {
            // A change nng resends (lost reply, coordinator restart) is applied once.
            keyCounter += 1
            request.key = "\(session)#c\(keyCounter)"
        }
        guard case .counterReply(let reply) = try await self.request(.counter(request)) else {
            throw .protocolViolation("the coordinator answered a counter request with something else")
        }
        return reply
    }

    /// Creates or resizes a cluster limit: at most `size` tasks that use it run at once.
    public func setLimit(_ name: String, size: Int) async throws(ColonyError) {
        var request = Colony_V1_LimitRequest()
        request.name = name
        request.size = UInt32(clamping: size)
        _ = try await limitRequest(request)
    }

    /// Every limit with its size, current use and the most ever used at once.
    public func limits() async throws(ColonyError) -> [LimitStatus] {
        var request = Colony_V1_LimitRequest()
        request.list = true
        return try await limitRequest(request)
    }

    func limitRequest(_ request: Colony_V1_LimitRequest) async throws(ColonyError) -> [LimitStatus] {
        guard case .limitReply(let reply) = try await self.request(.limit(request)) else {
            throw .protocolViolation("the coordinator answered a limit request with something else")
        }
        return reply.limits.map(LimitStatus.init(wire:))
    }

    /// Asks node `name` to drain: it takes no new tasks, finishes what it runs (handing back
    /// what still runs after `deadline`), then leaves. False if the coordinator does not know it.
    @discardableResult
    public func drain(node name: String, deadline: Duration = .seconds(30)) async throws(ColonyError) -> Bool {
        var request = Colony_V1_DrainRequest()
        request.node = name
        do {
            request.deadlineMs = UInt32(try SecondsRange.drainDeadline.milliseconds(deadline / .seconds(1), "drain deadline"))
        } catch {
            throw .badInput("\(error)")
        }
        guard case .drainReply(let reply) = try await self.request(.drain(request)) else {
            throw .protocolViolation("the coordinator answered a drain request with something else")
        }
        return reply.found
    }

    /// Cancels tasks (queued ones are removed, running ones stopped, dependents cancelled in
    /// cascade); returns how many were cancelled. Their results say `cancelled`.
    @discardableResult
    public func cancel(_ ids: [TaskID]) async throws(ColonyError) -> Int {
        var request = Colony_V1_CancelRequest()
        request.taskIds = ids
        return try await cancelRequest(request)
    }

    /// Cancels every unfinished task this client submitted (e.g. a whole map), waiting for
    /// the coordinator at most `patience` (default: the client's).
    @discardableResult
    public func cancelAll(patience: Duration? = nil) async throws(ColonyError) -> Int {
        try await cancel(session: session, patience: patience)
    }

    /// Cancels every unfinished task of a session (another client's, e.g. one that was
    /// killed: `colony cancel --session ID`).
    @discardableResult
    public func cancel(session: String, patience: Duration? = nil) async throws(ColonyError) -> Int {
        var request = Colony_V1_CancelRequest()
        request.session = session
        return try await cancelRequest(request, patience: patience)
    }

    func cancelRequest(_ request: Colony_V1_CancelRequest, patience: Duration? = nil) async throws(ColonyError) -> Int {
        guard case .cancelReply(let reply) = try await self.request(.cancel(request), patience: patience) else {
            throw .protocolViolation("the coordinator answered a cancel request with something else")
        }
        return Int(reply.cancelled)
    }

    /// Tasks the coordinator knows, optionally only those in one phase.
    public func tasks(in phase: TaskPhase? = nil, limit: Int = 1000) async throws(ColonyError) -> [TaskInfo] {
        var request = Colony_V1_TasksRequest()
        request.state = phase?.rawValue ?? ""
        request.limit = UInt32(clamping: limit)
        guard case .tasksReply(let reply) = try await self.request(.tasks(request)) else {
            throw .protocolViolation("the coordinator answered a tasks request with something else")
        }
        return reply.tasks.map(TaskInfo.init(wire:))
    }

    /// The result of any task by id (whoever submitted it), waiting up to `wait` for it to
    /// finish; nil if it has not finished by then. The result is handed out once.
    public func fetchResult(of id: TaskID, wait: Duration = .seconds(0)) async throws(ColonyError) -> TaskResult? {
        var request = Colony_V1_ResultRequest()
        request.taskID = id
        do {
            request.waitMs = UInt32(clamping: try SecondsRange.wait.milliseconds(wait / .seconds(1), "result wait"))
        } catch {
            throw .badInput("\(error)")
        }
        guard case .fetchReply(let reply) = try await self.request(.result(request)) else {
            throw .protocolViolation("the coordinator answered a result request with something else")
        }
        return reply.results.first.map(TaskResult.init(wire:))
    }
}
