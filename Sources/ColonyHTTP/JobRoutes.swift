import ColonyCore
import ColonyCoordinator
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
        case .list: return Self.json(200, ["jobs": jobs.jobs.map { Self.object(JobInfo(wire: $0)) }])
        case .status: return Self.json(200, jobs.jobs.first.map { Self.object(JobInfo(wire: $0)) } ?? [:])
        case .forget: return Self.json(200, ["forgotten": query.job])
        case .cancel: return Self.json(200, ["cancelled": jobs.cancelled])
        default:
            let results: [[String: Any]] = jobs.results.map { result in
                var object: [String: Any] = ["id": result.id, "state": result.cancelled ? "cancelled" : result.ok ? "succeeded" : "failed"]
                if result.ok {
                    if let text = String(data: result.output, encoding: .utf8) { object["output"] = text } else {
                        object["output_base64"] = result.output.base64EncodedString()
                    }
                } else {
                    object["error"] = result.error
                }
                return object
            }
            return Self.json(200, ["results": results, "next": jobs.next, "total": jobs.total, "ended": jobs.ended])
        }
    }

    static func object(_ job: JobInfo) -> [String: Any] {
        var object: [String: Any] = [
            "id": job.id, "state": job.state.rawValue, "detached": job.detached,
            "waiting": job.counts.waiting, "queued": job.counts.queued, "running": job.counts.running,
            "succeeded": job.counts.succeeded, "failed": job.counts.failed, "cancelled": job.counts.cancelled,
            "age_seconds": job.ageSeconds, "elapsed_seconds": job.elapsedSeconds,
        ]
        if let name = job.name { object["name"] = name }
        if !job.failures.isEmpty {
            object["failures"] = job.failures.map { ["task": $0.id, "index": $0.index, "error": $0.error, "reason": $0.reason.rawValue] as [String: Any] }
        }
        return object
    }
}
