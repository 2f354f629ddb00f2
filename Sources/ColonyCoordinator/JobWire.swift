import ColonyCore
import ColonyWire

// Jobs on the wire, both ways (the coordinator sends them, clients read them).

extension JobState {
    public var wire: Colony_V1_JobState {
        switch self {
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
    }

    /// nil for JOB_STATE_UNSPECIFIED and values this build does not know.
    public init?(wire: Colony_V1_JobState) {
        switch wire {
        case .running: self = .running
        case .succeeded: self = .succeeded
        case .failed: self = .failed
        case .cancelled: self = .cancelled
        case .unspecified, .UNRECOGNIZED: return nil
        }
    }
}

extension JobInfo {
    public var wire: Colony_V1_JobSummary {
        var summary = Colony_V1_JobSummary()
        summary.id = id
        summary.name = name ?? ""
        summary.detached = detached
        summary.state = state.wire
        summary.waiting = UInt64(counts.waiting)
        summary.queued = UInt64(counts.queued)
        summary.running = UInt64(counts.running)
        summary.succeeded = UInt64(counts.succeeded)
        summary.failed = UInt64(counts.failed)
        summary.cancelled = UInt64(counts.cancelled)
        summary.ageSeconds = ageSeconds
        summary.elapsedSeconds = elapsedSeconds
        summary.failures = failures.map { failure in
            var wire = Colony_V1_JobFailure()
            wire.taskID = failure.id
            wire.index = UInt64(failure.index)
            wire.error = failure.error
            wire.reason = failure.reason.wire
            return wire
        }
        return summary
    }

    public init(wire: Colony_V1_JobSummary) {
        let counts = JobCounts(waiting: Int(clamping: wire.waiting), queued: Int(clamping: wire.queued), running: Int(clamping: wire.running),
                               succeeded: Int(clamping: wire.succeeded), failed: Int(clamping: wire.failed),
                               cancelled: Int(clamping: wire.cancelled))
        self.init(id: wire.id, name: wire.name.isEmpty ? nil : wire.name, detached: wire.detached,
                  state: JobState(wire: wire.state) ?? .running, counts: counts, ageSeconds: wire.ageSeconds,
                  elapsedSeconds: wire.elapsedSeconds,
                  failures: wire.failures.map {
                      JobFailure(id: $0.taskID, index: Int(clamping: $0.index), error: $0.error, reason: FailureKind(wire: $0.reason) ?? .error)
                  })
    }
}

extension RequestHandler {
    /// A job request: the job named by id or name, the op on it.
    func handleJob(_ request: Colony_V1_JobRequest) async throws(CoordinatorCore.Refusal) -> Colony_V1_Envelope.OneOf_Body {
        var reply = Colony_V1_JobReply()
        let wait = min(Double(request.waitMs) / 1000, limits.longPollSecondsMax)
        switch request.op {
        case .list:
            let max = request.maxResults == 0 ? 1000 : Int(min(request.maxResults, 100_000))
            reply.jobs = await state.jobs(max: max).map(\.wire)
        case .status:
            reply.jobs = [try await state.jobInfo(request.job).wire]
        case .cancel:
            reply.cancelled = UInt64(try await state.cancel(job: request.job))
        case .forget:
            try await state.forget(job: request.job)
        case .results:
            let max = request.maxResults == 0 ? 1024 : Swift.min(Int(request.maxResults), limits.resultsPerFetchMax)
            guard request.from <= UInt64(Int.max) else { throw .invalidArgument("a results position must be at most \(Int.max)") }
            let page = try await state.jobResults(request.job, from: Int(request.from), max: max, waitSeconds: wait)
            reply.results = page.results.map(\.wire)
            reply.next = UInt64(page.next)
            reply.total = UInt64(page.total)
            reply.ended = page.ended
        case .wait:
            reply.jobs = [try await state.waitForJob(request.job, waitSeconds: wait).wire]
        case .UNRECOGNIZED(let raw):
            throw .invalidArgument("unknown job op \(raw)")
        }
        return .jobReply(reply)
    }
}
