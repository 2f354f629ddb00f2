import ColonyCore
import ColonyWire

extension RequestHandler {
    /// A job request: the job named by id or name, the op on it.
    func handleJob(_ request: Colony_V1_JobRequest) async throws(CoordinatorCore.Refusal) -> Colony_V1_Envelope.OneOf_Body {
        var reply = Colony_V1_JobReply()
        let wait = min(Double(request.waitMs) / 1000, bounds.longPollSecondsMax)
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
            let max = request.maxResults == 0 ? 1024 : Swift.min(Int(request.maxResults), bounds.resultsPerFetchMax)
            guard request.from <= UInt64(Int.max) else { throw .invalidArgument("a results position must be at most \(Int.max)") }
            let page = try await state.jobResults(request.job, from: Int(request.from), max: max, waitSeconds: wait)
            reply.results = page.results.map(\.wire)
            reply.next = UInt64(page.next)
            reply.total = UInt64(page.total)
            reply.ended = page.ended
        case .wait:
            reply.jobs = [try await state.waitForJob(request.job, waitSeconds: wait).wire]
        case .tasks:
            let max = request.maxResults == 0 ? 10_000 : Int(min(request.maxResults, 100_000))
            guard request.from <= UInt64(Int.max) else { throw .invalidArgument("a task position must be at most \(Int.max)") }
            let page = try await state.jobTaskIDs(request.job, from: Int(request.from), max: max)
            reply.taskIds = page.ids
            reply.next = request.from + UInt64(page.ids.count)
            reply.total = UInt64(page.total)
        case .UNRECOGNIZED(let raw):
            throw .invalidArgument("unknown job op \(raw)")
        }
        return .jobReply(reply)
    }
}
