import ColonyModel
import Foundation

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
