import ColonyCore
import ColonyModel
import ColonyCoordinator
import ColonyWire
import Foundation
import NNG
import Prometheus

/// The coordinator's HTTP side (`colony coordinator --metrics-listen HOST:PORT`): Prometheus
/// metrics at `/metrics`, the JSON API under `/api/v1/`, and the live dashboard at `/`.
///
/// Every API request goes through the same `RequestHandler` as the nng side (same validation,
/// same journal, answered once durable); this type only translates JSON. Long polls park as
/// Swift tasks on nng aios, never as threads.
public final class HTTPFrontend: Sendable {
    /// Where and how it listens.
    public struct Configuration: Sendable {
        /// `HOST:PORT` or `http://HOST:PORT` (port 0: any free port).
        public var listen: String
        /// Largest request body; larger ones get 413 before any work is done.
        public var bodyBytesMax = 1 << 20
        /// Session the API's submissions belong to (their results are read by task id).
        public var session = "http-api"
        /// Serve HTTPS with this certificate (and, with a CA file, require client certificates).
        public var tls: TLSSettings?

        public init(listen: String) {
            self.listen = listen
        }

        /// The listen address as nng's HTTP server takes it.
        var url: String {
            let host = listen.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "")
            return (tls == nil ? "http://" : "https://") + host
        }
    }

    public let configuration: Configuration
    private let server: HTTPServer
    let requests: RequestHandler
    private let registry: PrometheusCollectorRegistry

    /// Sets up the routes; `start` listens. `registry` is the one the process's swift-metrics
    /// were bootstrapped with (see `ColonyCLI`), so `/metrics` shows what the coordinator recorded.
    public init(configuration: Configuration, requests: RequestHandler, registry: PrometheusCollectorRegistry) throws(NNGError) {
        self.configuration = configuration
        self.requests = requests
        self.registry = registry
        server = try HTTPServer(url: configuration.url, tls: configuration.tls)
        let limit = configuration.bodyBytesMax
        // nng answers a body over its collection limit with a bare 400, so it collects up to
        // 8x the limit and the route answers 413 with a message; past that, nng's 400 says why.
        let collected = limit * 8
        try server.setErrorPage(400, "bad request: not valid HTTP/1.1, or a body over \(collected) bytes (the API takes at most \(limit))\n")
        try server.setErrorPage(413, "request body too large: the limit is \(limit) bytes\n")
        try server.setErrorPage(404, "not found: the routes are /, /metrics and /api/v1/ (see the README)\n")
        let headers = ["Authorization"]
        try server.route("/", method: "GET") { _ in
            HTTPResponse(contentType: "text/html; charset=utf-8", text: Dashboard.html)
        }
        try server.route("/metrics", method: "GET", headers: headers) { [self] request in
            await authorized(request) { _ in await metrics() }
        }
        try server.route("/api/v1", prefix: true, bodyBytesMax: collected, headers: headers) { [self] request in
            await authorized(request) { [self] request in
                guard request.body.count <= configuration.bodyBytesMax else {
                    return Self.error(413, "request body of \(request.body.count) bytes is over the limit of \(configuration.bodyBytesMax) bytes")
                }
                return await api(request)
            }
        }
    }

    /// Starts listening; throws at once for a busy or bad address.
    public func start() throws(NNGError) { try server.start() }

    /// The TCP port bound (useful with port 0).
    public var boundPort: Int? { server.boundPort }

    public func stop() { server.stop() }

    // MARK: Routes

    /// `/api/` and `/metrics` need the coordinator's own token (when it has one) as a bearer
    /// header, checked by the same comparison as the nng side's.
    private func authorized(_ request: HTTPRequest, _ respond: (HTTPRequest) async -> HTTPResponse) async -> HTTPResponse {
        let given = request.headers["authorization"] ?? ""
        let bearer = given.hasPrefix("Bearer ") ? String(given.dropFirst(7)) : ""
        guard requests.accepts(token: bearer) else {
            return Self.error(401, "wrong or missing token: send the coordinator's token as 'Authorization: Bearer TOKEN'")
        }
        return await respond(request)
    }

    private func metrics() async -> HTTPResponse {
        // Brings every count up to date first, so the scrape is exact.
        _ = await requests.figures()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 << 10)
        registry.emit(into: &buffer)
        return HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: buffer)
    }

    private func api(_ request: HTTPRequest) async -> HTTPResponse {
        let parts = request.path.split(separator: "/").dropFirst(2).map(String.init)  // after "api", "v1"
        switch (request.method, parts.first, parts.count) {
        case ("GET", "status", 1):
            return HTTPResponse(contentType: "application/json", text: await requests.report().json())
        case ("POST", "tasks", 1):
            return await submit(request)
        case ("GET", "tasks", 2):
            return await result(request, id: parts[1])
        case ("GET", "counters", 1):
            return await counterList()
        case ("GET", "counters", 2), ("POST", "counters", 2):
            return await counter(request, name: parts[1])
        case ("GET", "jobs", 1), ("GET", "jobs", 2), ("DELETE", "jobs", 2):
            return await job(request, parts: parts)
        case ("GET", "jobs", 3) where parts.last == "results":
            return await job(request, parts: parts)
        case ("POST", "jobs", 3) where parts.last == "cancel":
            return await job(request, parts: parts)
        case (_, "status", 1), (_, "tasks", 1), (_, "tasks", 2), (_, "counters", 1), (_, "counters", 2), (_, "jobs", _):
            return Self.error(405, "\(request.method) is not allowed on \(request.path)")
        default:
            return Self.error(404, "no API route \(request.path) (see the README's HTTP API section)")
        }
    }

    /// `POST /api/v1/tasks` with one task or `{"tasks": [...]}`: 202 and the ids.
    private func submit(_ request: HTTPRequest) async -> HTTPResponse {
        let specs: [Colony_V1_TaskSpec]
        do {
            let body = try APIBody.decode(SubmitBody.self, from: request.body)
            specs = try body.tasks.enumerated().map { index, task throws(APIError) in try task.spec(index: index) }
        } catch {
            return Self.error(400, "\(error)")
        }
        var submit = Colony_V1_SubmitRequest()
        submit.session = configuration.session
        submit.tasks = specs
        // HTTP clients fetch results by id, later: nothing to hear from in between.
        submit.detached = true
        let reply = await requests.answer(.submit(submit))
        guard case .submitReply(let submitted) = reply else { return Self.refusal(reply) }
        return Self.json(202, SubmittedBody(ids: submitted.taskIds))
    }

    /// `GET /api/v1/tasks/ID?wait=SECONDS`: the result once finished (handed out once, like
    /// `colony result`), else 202 with `"state": "unfinished"` after the wait.
    private func result(_ request: HTTPRequest, id text: String) async -> HTTPResponse {
        guard let id = UInt64(text), id > 0 else { return Self.error(400, "task id must be a positive integer, not '\(text)'") }
        var query = Colony_V1_ResultRequest()
        query.taskID = id
        if let wait = request.query["wait"] {
            guard let seconds = Double(wait), seconds >= 0, seconds.isFinite else {
                return Self.error(400, "wait must be a number of seconds, not '\(wait)'")
            }
            query.waitMs = UInt32(min(seconds, 3600) * 1000)
        }
        let reply = await requests.answer(.result(query))
        guard case .fetchReply(let fetched) = reply else { return Self.refusal(reply) }
        guard let outcome = fetched.results.first else { return Self.json(202, UnfinishedBody(id: id)) }
        var body = ResultBody(id: outcome.id, attempt: outcome.attempt, node: outcome.node,
                              state: outcome.cancelled ? "cancelled" : outcome.ok ? "succeeded" : "failed",
                              runMs: Double(outcome.runMicros) / 1000)
        if outcome.ok {
            if let text = String(data: outcome.output, encoding: .utf8) {
                body.output = text
            } else {
                body.outputBase64 = outcome.output.base64EncodedString()
            }
        } else {
            body.error = outcome.error
            if !outcome.cancelled { body.failure = FailureKind(wire: outcome.failure)?.rawValue }
        }
        return Self.json(200, body)
    }

    private func counterList() async -> HTTPResponse {
        var request = Colony_V1_CounterRequest()
        request.op = .list
        let reply = await requests.answer(.counter(request))
        guard case .counterReply(let counters) = reply else { return Self.refusal(reply) }
        return Self.json(200, Dictionary(counters.counters.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last }))
    }

    /// `GET /api/v1/counters/NAME`, or `POST` with `{"add": N}`, `{"set": N}` or
    /// `{"expected": E, "value": N}` (compare-and-set).
    private func counter(_ request: HTTPRequest, name: String) async -> HTTPResponse {
        var counter = Colony_V1_CounterRequest()
        counter.name = name.removingPercentEncoding ?? name
        if request.method == "POST" {
            do {
                let change = try APIBody.decode(CounterChangeBody.self, from: request.body)
                counter.op = change.operation
                counter.value = change.value
                counter.expected = change.expected
                if let key = change.key { counter.key = key }
            } catch {
                return Self.error(400, "\(error)")
            }
        } else {
            counter.op = .get
        }
        let reply = await requests.answer(.counter(counter))
        guard case .counterReply(let answer) = reply else { return Self.refusal(reply) }
        var body = CounterBody(name: counter.name, value: answer.value)
        switch counter.op {
        case .compareAndSet: body.swapped = answer.swapped
        case .set: body.previous = answer.value; body.value = counter.value
        default: break
        }
        return Self.json(200, body)
    }

    // MARK: JSON

    struct APIError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func json(_ status: Int, _ value: some Encodable) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return HTTPResponse(status: status, contentType: "application/json", body: Array(data) + [0x0A])
    }

    static func error(_ status: Int, _ message: String) -> HTTPResponse {
        json(status, ErrorReplyBody(error: message))
    }

    /// A coordinator refusal as an HTTP error.
    static func refusal(_ reply: Colony_V1_Envelope.OneOf_Body) -> HTTPResponse {
        guard case .error(let error) = reply else { return Self.error(500, "the coordinator answered with something unexpected") }
        switch error.code {
        case .unauthorized: return Self.error(401, error.message)
        case .notFound: return Self.error(404, error.message)
        case .unavailable: return Self.error(503, error.message)
        case .tooLarge: return Self.error(413, error.message)
        default: return Self.error(400, error.message)
        }
    }
}
