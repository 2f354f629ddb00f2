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
    /// Whether it serves HTTPS: then a connection the client asked to close is answered and
    /// closed by Colony (see `answerAndClose`), not by nng.
    private let servesTLS: Bool
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
        servesTLS = tls != nil
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
        let box = RouteBox(respond: respond, headers: headers.map { $0.lowercased() }, closesConnectionsItself: servesTLS)
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
    /// Whether a response that ends its connection is written and closed here (HTTPS).
    let closesConnectionsItself: Bool
    init(respond: @escaping HTTPServer.Respond, headers: [String], closesConnectionsItself: Bool) {
        self.respond = respond
        self.headers = headers
        self.closesConnectionsItself = closesConnectionsItself
    }
}

/// An nng object handed to a Swift task: an aio nng keeps alive (with its request) until
/// `nng_aio_finish`, or a connection taken over from nng's server (`nng_http_hijack`), ours to
/// answer and close. Only that task uses it.
private struct HandedOver: @unchecked Sendable {
    let pointer: OpaquePointer
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
    let respond = box.respond
    if box.closesConnectionsItself, asksToClose(request),
       let conn = nng_aio_get_input(aio, 2).map({ OpaquePointer($0) }), nng_http_hijack(conn) == 0 {
        // nng 1.5's TLS stream drops ciphertext still queued for the socket when it is closed,
        // and its server closes right after the response was *queued*: an HTTPS client that
        // sends `Connection: close` got the headers without the body now and then. So Colony
        // takes such a connection over and closes it after a grace (see `answerAndClose`).
        // The request is ours to free after a hijack; it was copied above.
        nng_http_req_free(request)
        nng_aio_finish(aio, 0)
        let taken = HandedOver(pointer: conn)
        Task {
            let response = await respond(copied)
            await answerAndClose(taken.pointer, with: response, withBody: copied.method != "HEAD")
        }
        return
    }
    let pending = HandedOver(pointer: aio)
    Task {
        let response = await respond(copied)
        finish(pending.pointer, with: response)
    }
}

/// Whether the client wants the connection closed after this response (HTTP/1.0, or a
/// `Connection: close` header; nng's server decides the same way).
private func asksToClose(_ request: OpaquePointer) -> Bool {
    if let version = nng_http_req_get_version(request), String(cString: version) != "HTTP/1.1" { return true }
    guard let connection = nng_http_req_get_header(request, "Connection") else { return false }
    return String(cString: connection).lowercased().contains("close")
}

private func makeResponse(_ response: HTTPResponse) -> OpaquePointer? {
    var result: OpaquePointer?
    guard nng_http_res_alloc(&result) == 0, let result else { return nil }
    _ = nng_http_res_set_status(result, UInt16(clamping: response.status))
    _ = nng_http_res_set_header(result, "Content-Type", response.contentType)
    for (name, value) in response.headers { _ = nng_http_res_set_header(result, name, value) }
    _ = response.body.withUnsafeBytes { nng_http_res_copy_data(result, $0.baseAddress, $0.count) }
    return result
}

private func finish(_ aio: OpaquePointer, with response: HTTPResponse) {
    guard let result = makeResponse(response) else {
        nng_aio_finish(aio, Int32(NNG_ENOMEM.rawValue))
        return
    }
    nng_aio_set_output(aio, 0, UnsafeMutableRawPointer(result))
    nng_aio_finish(aio, 0)
}

/// The response as HTTP/1.1 bytes, announcing that the connection closes after it; without
/// its body (but with its length) for a HEAD request.
private func serialized(_ response: HTTPResponse, withBody: Bool) -> [UInt8] {
    var reason = ""
    var probe: OpaquePointer?
    if nng_http_res_alloc(&probe) == 0, let probe {
        _ = nng_http_res_set_status(probe, UInt16(clamping: response.status))
        reason = String(cString: nng_http_res_get_reason(probe))
        nng_http_res_free(probe)
    }
    var head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\n"
    for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
    head += "Content-Length: \(response.body.count)\r\nConnection: close\r\n\r\n"
    return Array(head.utf8) + (withBody ? response.body : [])
}

/// How long a taken-over connection stays open after its response was queued: long enough
/// for nng to hand the last TLS records to the kernel, which then delivers them before its FIN.
private let closeGrace: Duration = .seconds(1)

/// Writes the response on a taken-over connection in one buffer, waits `closeGrace`, and
/// closes.
///
/// Why not close when the client does (a lingering read)? In nng 1.5 a TLS read started after
/// the peer's close was seen never completes, and closing the connection then waits for it
/// forever: found by a test that hung the coordinator's HTTP side. So nothing is read here.
private func answerAndClose(_ conn: OpaquePointer, with response: HTTPResponse, withBody: Bool) async {
    // One buffer, one write: written as headers then body (nng_http_conn_write_res), the body
    // waited ~40 ms for the client's delayed ACK (Nagle).
    let bytes = serialized(response, withBody: withBody)
    guard let write = try? AsyncOperation() else {
        nng_http_conn_close(conn)
        return
    }
    // nng reads from this memory until the write completes, so it is not an array's storage.
    let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { outgoing.deallocate() }
    outgoing.copyBytes(from: bytes)
    let written = await write.run(timeoutMilliseconds: 30_000, cancellable: false) { aio in
        var iov = nng_iov(iov_buf: outgoing.baseAddress, iov_len: outgoing.count)
        _ = nng_aio_set_iov(aio, 1, &iov)
        nng_http_conn_write_all(conn, aio)
    }
    if written.code == Int32(NNG_ETIMEDOUT.rawValue) {
        // A client that stopped reading (or vanished) with more than nng's TLS buffer still to
        // send: nng 1.5 cannot cancel that write cleanly, and closing would wait for it forever
        // on this thread. So the connection is left open (one leaked descriptor) instead.
        return
    }
    if written.code == 0 { try? await Task.sleep(for: closeGrace) }
    nng_http_conn_close(conn)
}
