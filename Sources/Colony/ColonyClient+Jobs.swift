import ColonyModel

import ColonyWire

/// Jobs from a client: any client (any machine, a new session) may read, wait for, cancel or
/// forget any job by its id or name.
extension ColonyClient {
    /// The newest jobs first (at most `limit`).
    public func jobs(limit: Int = 1000) async throws(ColonyError) -> [JobInfo] {
        var request = Colony_V1_JobRequest()
        request.op = .list
        request.maxResults = UInt32(clamping: max(1, limit))
        return try await jobRequest(request).jobs.map(JobInfo.init(wire:))
    }

    /// One job with its first failures; `reference` is its id or its name.
    public func job(_ reference: String) async throws(ColonyError) -> JobInfo {
        var request = Colony_V1_JobRequest()
        request.op = .status
        request.job = reference
        guard let job = try await jobRequest(request).jobs.first else {
            throw .protocolViolation("the coordinator answered a job status without the job")
        }
        return JobInfo(wire: job)
    }

    public func job(_ id: JobID) async throws(ColonyError) -> JobInfo { try await job(String(id)) }

    /// The ids of a job's tasks, in input order.
    public func taskIDs(ofJob reference: String) async throws(ColonyError) -> [TaskID] {
        var ids: [TaskID] = []
        while true {
            var request = Colony_V1_JobRequest()
            request.op = .tasks
            request.job = reference
            request.from = UInt64(ids.count)
            let reply = try await jobRequest(request)
            ids += reply.taskIds
            if reply.taskIds.isEmpty || UInt64(ids.count) >= reply.total { return ids }
        }
    }

    /// Waits for every task of the job to finish (long polls, each up to `poll`); the job then.
    public func wait(forJob reference: String, poll: Duration = .seconds(10)) async throws(ColonyError) -> JobInfo {
        while true {
            var request = Colony_V1_JobRequest()
            request.op = .wait
            request.job = reference
            request.waitMs = UInt32(clamping: Int(poll / .milliseconds(1)))
            guard let wire = try await jobRequest(request).jobs.first else {
                throw .protocolViolation("the coordinator answered a job wait without the job")
            }
            let job = JobInfo(wire: wire)
            if job.state != .running { return job }
        }
    }

    /// Cancels the job's unfinished tasks and frees its results; returns how many were cancelled.
    @discardableResult
    public func cancel(job reference: String) async throws(ColonyError) -> Int {
        var request = Colony_V1_JobRequest()
        request.op = .cancel
        request.job = reference
        return Int(clamping: try await jobRequest(request).cancelled)
    }

    /// Forgets an ended job (refused while tasks of it run).
    public func forget(job reference: String) async throws(ColonyError) {
        var request = Colony_V1_JobRequest()
        request.op = .forget
        request.job = reference
        _ = try await jobRequest(request)
    }

    /// The job's results in input order as they arrive (from position `from`), ending after
    /// the last one; from any client, as often as wanted (reading takes nothing away).
    public nonisolated func results(ofJob reference: String, from: Int = 0) -> AsyncThrowingStream<TaskResult, any Error> {
        AsyncThrowingStream { continuation in
            let reader = Task {
                var next = from
                do {
                    while !Task.isCancelled {
                        var request = Colony_V1_JobRequest()
                        request.op = .results
                        request.job = reference
                        request.from = UInt64(next)
                        request.waitMs = 10_000
                        let page = try await self.jobRequest(request)
                        for result in page.results { continuation.yield(TaskResult(wire: result)) }
                        next = Int(clamping: page.next)
                        if page.ended && next >= Int(clamping: page.total) { break }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in reader.cancel() }
        }
    }

    private func jobRequest(_ request: Colony_V1_JobRequest) async throws(ColonyError) -> Colony_V1_JobReply {
        guard case .jobReply(let reply) = try await self.request(.job(request)) else {
            throw .protocolViolation("the coordinator answered a job request with something else")
        }
        return reply
    }
}
