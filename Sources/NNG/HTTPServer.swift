import CNNG
import Synchronization

/// One HTTP request as a route sees it: copied out of nng, so it outlives the connection.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent: path and query, e.g. `/api/v1/tasks/7?wait=5`.
    public var uri: String
    /// The headers a route may ask for (see `HTTPServer.route`'s `headers`), by lowercase name.
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String, uri: String, headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }

    /// The path without the query.
    public var path: Substring { uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0] }

    /// The query's parameters (`a=1&b=2`), percent-decoding not applied: Colony's parameters
    /// are numbers and names.
    public var query: [String: String] {
        let parts = uri.split(separator: "?", maxSplits: 1)
        guard parts.count == 2 else { return [:] }
        var result: [String: String] = [:]
        for pair in parts[1].split(separator: "&") {
            let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result[String(keyValue[0])] = keyValue.count == 2 ? String(keyValue[1]) : ""
        }
        return result
    }
}

/// What a route answers.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    public var headers: [(String, String)]

    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", body: [UInt8], headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    public init(status: Int = 200, contentType: String = "text/plain; charset=utf-8", text: String) {
        self.init(status: status, contentType: contentType, body: Array(text.utf8))
    }
}

/// A small HTTP/1.1 server: nng's supplemental HTTP server (no other web stack), with routes
/// answered by Swift async functions.
///
/// A request waiting in a route (a long poll) holds no thread: nng parks the connection on an
/// aio, and the route is a Swift task that finishes the aio when it has an answer.
public final class HTTPServer: @unchecked Sendable {
    /// A route's function.
    public typealias Respond = @Sendable (HTTPRequest) async -> HTTPResponse

    private let server: OpaquePointer
    private let started = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    /// The URL it serves, e.g. `http://127.0.0.1:9464`.
    public let url: String

    /// Holds a server for `url` (`http://HOST:PORT`, or `https://HOST:PORT` with `tls`; port 0
    /// for any); routes are added before `start`. With `tls`, its certificate file is required,
    /// and a CA file makes client certificates mandatory.
    public init(url: String, tls: TLSSettings? = nil) throws(NNGError) {
        var parsed: UnsafeMutablePointer<nng_url>?
        try check(nng_url_parse(&parsed, url), "parse HTTP address \(url)")
        defer { nng_url_free(parsed) }
        var held: OpaquePointer?
        try check(nng_http_server_hold(&held, parsed), "serve HTTP on \(url)")
        guard let held else { throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: "serve HTTP on \(url)") }
        server = held
        self.url = url
        if let tls {
            do {
                try Self.configure(held, tls: tls, url: url)
            } catch {
                nng_http_server_release(held)
                throw error
            }
        }
    }

    private static func configure(_ server: OpaquePointer, tls: TLSSettings, url: String) throws(NNGError) {
        let config = try tls.serverConfig(for: url)
        defer { nng_tls_config_free(config) }  // the server holds its own reference
        try check(nng_http_server_set_tls(server, config), "set up TLS for \(url)")
    }

    deinit {
        stop()
        nng_http_server_release(server)
    }

    /// Answers requests for `path` (and, with `prefix`, everything under `path/`) with
    /// `respond`. `method` nil takes any method; bodies over `bodyBytesMax` get 413 from nng
    /// before the route runs. `headers` names the request headers the route reads.
    public func route(_ path: String, method: String? = nil, prefix: Bool = false, bodyBytesMax: Int = 1 << 20,
                      headers: [String] = [], _ respond: @escaping Respond) throws(NNGError) {
        var handler: OpaquePointer?
        try check(nng_http_handler_alloc(&handler, path, httpRouteCallback), "add HTTP route \(path)")
        guard let handler else { return }
        let box = RouteBox(respond: respond, headers: headers.map { $0.lowercased() })
        do {
            try check(nng_http_handler_set_method(handler, method), "add HTTP route \(path)")
            if prefix { try check(nng_http_handler_set_tree(handler), "add HTTP route \(path)") }
            try check(nng_http_handler_collect_body(handler, true, bodyBytesMax), "add HTTP route \(path)")
            try check(nng_http_handler_set_data(handler, Unmanaged.passRetained(box).toOpaque(), releaseRouteBox),
                      "add HTTP route \(path)")
            try check(nng_http_server_add_handler(server, handler), "add HTTP route \(path)")
        } catch {
            nng_http_handler_free(handler)
            throw error
        }
    }

    /// Replaces nng's page for an error status it answers by itself (e.g. 413, 404).
    public func setErrorPage(_ status: Int, _ text: String) throws(NNGError) {
        try check(nng_http_server_set_error_page(server, UInt16(status), text), "set HTTP error page \(status)")
    }

    /// Starts listening; throws at once for a busy or bad address.
    public func start() throws(NNGError) {
        try check(nng_http_server_start(server), "serve HTTP on \(url)")
        started.store(true, ordering: .releasing)
    }

    /// The TCP port bound (useful with port 0).
    public var boundPort: Int? {
        var address = nng_sockaddr()
        guard nng_http_server_get_addr(server, &address) == 0 else { return nil }
        switch Int32(address.s_family) {
        case Int32(NNG_AF_INET.rawValue): return Int(UInt16(bigEndian: address.s_in.sa_port))
        case Int32(NNG_AF_INET6.rawValue): return Int(UInt16(bigEndian: address.s_in6.sa_port))
        default: return nil
        }
    }

    /// Stops serving; idempotent.
    public func stop() {
        guard started.load(ordering: .acquiring), !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        nng_http_server_stop(server)
    }
}

/// A route's Swift side, kept alive by nng's handler (released by its destructor).
private final class RouteBox: Sendable {
    let respond: HTTPServer.Respond
    let headers: [String]
    init(respond: @escaping HTTPServer.Respond, headers: [String]) {
        self.respond = respond
        self.headers = headers
    }
}

/// An aio handed to a Swift task: nng keeps it (and its request) alive until `nng_aio_finish`.
private struct PendingAIO: @unchecked Sendable {
    let aio: OpaquePointer
}

private func releaseRouteBox(_ data: UnsafeMutableRawPointer?) {
    guard let data else { return }
    Unmanaged<RouteBox>.fromOpaque(data).release()
}

private func httpRouteCallback(_ aio: OpaquePointer?) {
    guard let aio,
          let request = nng_aio_get_input(aio, 0).map({ OpaquePointer($0) }),
          let handler = nng_aio_get_input(aio, 1).map({ OpaquePointer($0) }),
          let data = nng_http_handler_get_data(handler) else {
        if let aio { nng_aio_finish(aio, Int32(NNG_EINVAL.rawValue)) }
        return
    }
    let box = Unmanaged<RouteBox>.fromOpaque(data).takeUnretainedValue()
    var headers: [String: String] = [:]
    for name in box.headers {
        if let value = nng_http_req_get_header(request, name) { headers[name] = String(cString: value) }
    }
    var bodyPointer: UnsafeMutableRawPointer?
    var bodyLength = 0
    nng_http_req_get_data(request, &bodyPointer, &bodyLength)
    let body = bodyPointer.map { Array(UnsafeRawBufferPointer(start: $0, count: bodyLength)) } ?? []
    let copied = HTTPRequest(method: String(cString: nng_http_req_get_method(request)),
                             uri: String(cString: nng_http_req_get_uri(request)),
                             headers: headers, body: body)
    let pending = PendingAIO(aio: aio)
    let respond = box.respond
    Task {
        let response = await respond(copied)
        finish(pending.aio, with: response)
    }
}

private func finish(_ aio: OpaquePointer, with response: HTTPResponse) {
    var result: OpaquePointer?
    guard nng_http_res_alloc(&result) == 0, let result else {
        nng_aio_finish(aio, Int32(NNG_ENOMEM.rawValue))
        return
    }
    _ = nng_http_res_set_status(result, UInt16(clamping: response.status))
    _ = nng_http_res_set_header(result, "Content-Type", response.contentType)
    for (name, value) in response.headers { _ = nng_http_res_set_header(result, name, value) }
    _ = response.body.withUnsafeBytes { nng_http_res_copy_data(result, $0.baseAddress, $0.count) }
    nng_aio_set_output(aio, 0, UnsafeMutableRawPointer(result))
    nng_aio_finish(aio, 0)
}
