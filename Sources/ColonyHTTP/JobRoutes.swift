import ColonyCore
import ColonyCoordinator
import ColonyModel
import ColonyWire
import Foundation
import NNG

/// `/api/v1/jobs`: `GET` lists the newest jobs; `/api/v1/jobs/ID` (an id or a name): `GET` its
/// status with failures, `DELETE` forgets it; `GET /api/v1/jobs/ID/results?from=N&wait=S` a
/// page of results in input order; `POST /api/v1/jobs/ID/cancel` cancels it. None takes a body.
extension HTTPFrontend {
    func job(_ request: HTTPRequest, parts: [String]) async -> HTTPResponse {
        guard request.body.isEmpty else { return Self.error(400, "\(request.method) \(request.path) takes no body") }
        var query = Colony_V1_JobRequest()
        if parts.count >= 2 { query.job = parts[1].removingPercentEncoding ?? parts[1] }
        switch (request.method, parts.count) {
        case ("GET", 1):
            query.op = .list
            if let limit = request.query["limit"] {
                guard let count = UInt32(limit), count >= 1 else { return Self.error(400, "limit must be a positive integer, not '\(limit)'") }
                query.maxResults = count
            }
        case ("GET", 2): query.op = .status
        case ("DELETE", 2): query.op = .forget
        case ("POST", 3): query.op = .cancel
        default:
            query.op = .results
            if let from = request.query["from"] {
                guard let position = UInt64(from) else { return Self.error(400, "from must be a position (0 or more), not '\(from)'") }
                query.from = position
            }
            if let wait = request.query["wait"] {
                guard let seconds = Double(wait), seconds >= 0, seconds.isFinite else {
                    return Self.error(400, "wait must be a number of seconds, not '\(wait)'")
                }
                query.waitMs = UInt32(min(seconds, 3600) * 1000)
            }
        }
        let reply = await requests.answer(.job(query))
        guard case .jobReply(let jobs) = reply else { return Self.refusal(reply) }
        switch query.op {
        case .list: return Self.json(200, JobListBody(jobs: jobs.jobs.map { JobBody(JobInfo(wire: $0)) }))
        case .status:
            guard let job = jobs.jobs.first else { return Self.error(404, "no job \(query.job)") }
            return Self.json(200, JobBody(JobInfo(wire: job)))
        case .forget: return Self.json(200, ["forgotten": query.job])
        case .cancel: return Self.json(200, ["cancelled": jobs.cancelled])
        default:
            let results = jobs.results.map { result in
                var body = JobResultBody(id: result.id, state: result.cancelled ? "cancelled" : result.ok ? "succeeded" : "failed")
                if result.ok {
                    if let text = String(data: result.output, encoding: .utf8) { body.output = text } else {
                        body.outputBase64 = result.output.base64EncodedString()
                    }
                } else {
                    body.error = result.error
                }
                return body
            }
            return Self.json(200, JobResultsBody(results: results, next: jobs.next, total: jobs.total, ended: jobs.ended))
        }
    }
}

/// `{"jobs": [...]}`.
struct JobListBody: Encodable {
    var jobs: [JobBody]
}

/// A job: its counts by state, age, and its failures.
struct JobBody: Encodable {
    struct Failure: Encodable {
        var task: UInt64
        var index: Int
        var error: String
        var reason: String
    }

    var id: UInt64
    var name: String?
    var state: String
    var detached: Bool
    var waiting, queued, running, succeeded, failed, cancelled: Int
    var ageSeconds: Double
    var elapsedSeconds: Double
    var failures: [Failure]?

    enum CodingKeys: String, CodingKey {
        case id, name, state, detached, waiting, queued, running, succeeded, failed, cancelled, failures
        case ageSeconds = "age_seconds"
        case elapsedSeconds = "elapsed_seconds"
    }

    init(_ job: JobInfo) {
        id = job.id
        name = job.name
        state = job.state.rawValue
        detached = job.detached
        waiting = job.counts.waiting
        queued = job.counts.queued
        running = job.counts.running
        succeeded = job.counts.succeeded
        failed = job.counts.failed
        cancelled = job.counts.cancelled
        ageSeconds = job.ageSeconds
        elapsedSeconds = job.elapsedSeconds
        failures = job.failures.isEmpty ? nil : job.failures.map { Failure(task: $0.id, index: $0.index, error: $0.error, reason: $0.reason.rawValue) }
    }
}

/// A page of a job's results in input order, and where the next page starts.
struct JobResultsBody: Encodable {
    var results: [JobResultBody]
    var next: UInt64
    var total: UInt64
    var ended: Bool
}

/// One result of a job: its output as text (base64 when not UTF-8), or its error.
struct JobResultBody: Encodable {
    var id: UInt64
    var state: String
    var output: String?
    var outputBase64: String?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case id, state, output, error
        case outputBase64 = "output_base64"
    }
}
