import ColonyModel
import Foundation
import NNG

/// `fetch`: one HTTP or HTTPS request; reports the status, the headers and the body (or the
/// file it saved the body to).
///
/// It waits on nng's aios, never on a thread, so many fetches can wait at once. A status that
/// is not 2xx is reported, not failed (as `curl` without `-f`); a body over `max_bytes`, a
/// timeout or a connection that fails fails the task with one line naming the URL.
public struct FetchHandler: TaskHandler {
    public static let name = "fetch"
    /// It waits on the network: hundreds of fetches share a node's threads.
    public static let defaultPool = TaskPool.io

    /// `{"url": "https://example.com/"}`; every other field may be left out; any other key is
    /// refused.
    public struct Input: Codable, Sendable, Equatable {
        public var url: String
        /// Default GET.
        public var method: String?
        public var headers: [String: String]?
        /// The request body as UTF-8 text; or `bodyBase64` for any bytes (not both).
        public var body: String?
        public var bodyBase64: String?
        /// Seconds for the whole exchange, redirects included; default 30.
        public var timeoutSeconds: Double?
        /// Writes the body to this file (replacing it) instead of returning it.
        public var saveTo: String?
        /// Most body bytes accepted: default 1 MiB returned (at most `bodyBytesLimit`), or 1 GiB
        /// saved. A longer body fails the task.
        public var maxBytes: Int?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case url, method, headers, body
            case bodyBase64 = "body_base64"
            case timeoutSeconds = "timeout_s"
            case saveTo = "save_to"
            case maxBytes = "max_bytes"
        }

        public init(url: String, method: String? = nil, headers: [String: String]? = nil, body: String? = nil, bodyBase64: String? = nil,
                    timeoutSeconds: Double? = nil, saveTo: String? = nil, maxBytes: Int? = nil) {
            self.url = url
            self.method = method
            self.headers = headers
            self.body = body
            self.bodyBase64 = bodyBase64
            self.timeoutSeconds = timeoutSeconds
            self.saveTo = saveTo
            self.maxBytes = maxBytes
        }

        public init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            url = try fields.decode(String.self, forKey: .url)
            method = try fields.decodeIfPresent(String.self, forKey: .method)
            headers = try fields.decodeIfPresent([String: String].self, forKey: .headers)
            body = try fields.decodeIfPresent(String.self, forKey: .body)
            bodyBase64 = try fields.decodeIfPresent(String.self, forKey: .bodyBase64)
            timeoutSeconds = try fields.decodeIfPresent(Double.self, forKey: .timeoutSeconds)
            saveTo = try fields.decodeIfPresent(String.self, forKey: .saveTo)
            maxBytes = try fields.decodeIfPresent(Int.self, forKey: .maxBytes)
        }
    }

    public struct Output: Codable, Sendable, Equatable {
        /// The URL that answered (after redirects).
        public var url: String
        public var status: Int
        /// Lowercase names; a repeated header's values joined with ", ".
        public var headers: [String: String]
        /// The body when it is UTF-8 text; else `bodyBase64`; neither when saved.
        public var body: String?
        public var bodyBase64: String?
        public var savedTo: String?
        /// Body bytes received.
        public var bytes: Int
        public var redirects: Int

        enum CodingKeys: String, CodingKey {
            case url, status, headers, body
            case bodyBase64 = "body_base64"
            case savedTo = "saved_to"
            case bytes, redirects
        }
    }

    /// Largest body returned in the result: results travel in one message and the coordinator
    /// keeps them (4 MiB each by default), and base64 makes bytes a third larger.
    public static let bodyBytesLimit = 2 << 20
    /// Largest body saved to a file.
    public static let savedBytesLimit = 1 << 40
    /// Redirects followed before giving up (as browsers do, about 10-20).
    public static let redirectsMax = 10
    /// Longest `timeout_s`.
    static let timeoutRange = SecondsRange(0.001...86_400)

    /// The CAs HTTPS trusts: `SSL_CERT_FILE` (OpenSSL's and curl's variable) when the node's
    /// environment sets it, else the system bundle in its Debian/Ubuntu, Fedora or Alpine place.
    /// Looked up for https only: building the environment and looking for files cost a plain
    /// http fetch about a tenth of its CPU time on the node.
    static var certificateAuthorityFile: String? {
        if let file = ProcessInfo.processInfo.environment["SSL_CERT_FILE"], !file.isEmpty { return file }
        return ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    public init() {}

    public func run(_ input: Input, context: TaskContext) async throws -> Output {
        let request = try Request(input)
        let clock = ContinuousClock()
        let deadline = clock.now + request.timeout
        var url = request.url
        var method = request.method
        var body = request.body
        for redirects in 0...Self.redirectsMax {
            let answer = try await exchange(url: url, method: method, headers: request.headers, body: body, request: request, deadline: deadline)
            guard let location = answer.location, [301, 302, 303, 307, 308].contains(answer.status) else {
                return Output(url: url.absoluteString, status: answer.status, headers: answer.headers,
                              body: answer.body.flatMap { String(validating: $0, as: UTF8.self) },
                              bodyBase64: answer.body.flatMap { String(validating: $0, as: UTF8.self) == nil ? Data($0).base64EncodedString() : nil },
                              savedTo: answer.body == nil ? request.saveTo : nil, bytes: answer.bytes, redirects: redirects)
            }
            guard let next = URL(string: location, relativeTo: url)?.absoluteURL, ["http", "https"].contains(next.scheme?.lowercased() ?? "") else {
                throw ValidationFailure("fetch \(request.input.url): a redirect to '\(location.prefix(200))', not an http(s) URL")
            }
            // 303, and 301/302 after a POST, continue as a GET without the body (what browsers and curl do).
            if answer.status == 303 || ((answer.status == 301 || answer.status == 302) && method == "POST") {
                method = "GET"
                body = []
            }
            url = next
        }
        throw ValidationFailure("fetch \(request.input.url): more than \(Self.redirectsMax) redirects")
    }

    /// The input, checked.
    private struct Request {
        let input: Input
        let url: URL
        let method: String
        let headers: [(String, String)]
        let body: [UInt8]
        let timeout: Duration
        let saveTo: String?
        let maxBytes: Int

        init(_ input: Input) throws {
            self.input = input
            let name = "fetch \(input.url)"
            guard let url = URL(string: input.url), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  let host = url.host, !host.isEmpty else {
                throw ValidationFailure("fetch: '\(input.url.prefix(200))' is not an http:// or https:// URL")
            }
            if let port = url.port, !(1...65_535).contains(port) {
                throw ValidationFailure("fetch: '\(input.url.prefix(200))' has port \(port), not 1-65535")
            }
            self.url = url
            let method = (input.method ?? "GET").uppercased()
            guard !method.isEmpty, method.utf8.allSatisfy({ (65...90).contains($0) || $0 == 45 || $0 == 95 }) else {
                throw ValidationFailure("\(name): method '\(method.prefix(40))' is not an HTTP method")
            }
            self.method = method
            var headers: [(String, String)] = []
            for (key, value) in (input.headers ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard !key.isEmpty, !key.contains(where: { $0 == ":" || $0.isWhitespace || $0.isNewline }),
                      !value.contains(where: \.isNewline) else {
                    throw ValidationFailure("\(name): header '\(NameCheck.escaped(String(key.prefix(60))))' is not a valid header line")
                }
                headers.append((key, value))
            }
            self.headers = headers
            switch (input.body, input.bodyBase64) {
            case (let text?, nil): body = Array(text.utf8)
            case (nil, let encoded?):
                guard let data = Data(base64Encoded: encoded) else { throw ValidationFailure("\(name): body_base64 is not base64") }
                body = Array(data)
            case (nil, nil): body = []
            case (_?, _?): throw ValidationFailure("\(name): give body or body_base64, not both")
            }
            timeout = try FetchHandler.timeoutRange.duration(input.timeoutSeconds ?? 30, "timeout_s")
            saveTo = input.saveTo
            if let path = input.saveTo, path.isEmpty { throw ValidationFailure("\(name): save_to is empty") }
            let limit = input.saveTo == nil ? FetchHandler.bodyBytesLimit : FetchHandler.savedBytesLimit
            maxBytes = input.maxBytes ?? (input.saveTo == nil ? 1 << 20 : 1 << 30)
            guard (0...limit).contains(maxBytes) else {
                throw ValidationFailure("\(name): max_bytes must be 0 to \(limit)\(input.saveTo == nil ? " (or save the body with save_to)" : "")")
            }
        }
    }

    /// One response: its body (nil when saved) and where it redirects to.
    private struct Answer {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]?
        var bytes: Int
        var location: String?
    }

    /// One request and its response on a connection of its own.
    private func exchange(url: URL, method: String, headers: [(String, String)], body: [UInt8], request: Request,
                          deadline: ContinuousClock.Instant) async throws -> Answer {
        let name = "fetch \(url.absoluteString)"
        let timedOut = ValidationFailure("\(name): timed out after \(formatSeconds(request.input.timeoutSeconds ?? 30)) s")
        func failure(_ error: FetchConnection.Failure) -> any Error {
            switch error {
            case .cancelled: CancellationError()
            case .timedOut: timedOut
            case .untrusted(let reason):
                ValidationFailure("\(name): TLS failed: the server's certificate is not trusted here or not for this host (\(reason))")
            case .failed(let line): ValidationFailure("\(name): \(line)")
            }
        }
        // Waits for an open file rather than failing with EMFILE (see `OpenFilePermits`).
        guard let files = try await OpenFilePermits.shared.take(request.saveTo == nil ? 1 : 2, until: deadline) else {
            throw ValidationFailure("\(name): timed out after \(formatSeconds(request.input.timeoutSeconds ?? 30)) s waiting for an open file (the node's limit: ulimit -n)")
        }
        defer { OpenFilePermits.shared.give(files) }
        let connection: FetchConnection
        do {
            connection = try await FetchConnection.open(url, certificateAuthorityFile: Self.certificateAuthorityFile, until: deadline)
        } catch {
            throw failure(error)
        }
        defer { connection.close() }
        var file: FileHandle?
        defer { try? file?.close() }
        var reader = HTTPResponseReader(requestMethod: method)
        var kept: [UInt8] = []
        var bytes = 0
        do {
            try await connection.write(Self.requestHead(url: url, method: method, headers: headers, bodyCount: body.count) + body, until: deadline)
            while !reader.isComplete {
                let arrived = try await connection.read(until: deadline)
                let part: [UInt8]
                if arrived.isEmpty {
                    try reader.finish()
                    part = []
                } else {
                    part = try reader.feed(arrived)
                }
                bytes += part.count
                guard bytes <= request.maxBytes else {
                    throw ValidationFailure("\(name): the body is over max_bytes (\(request.maxBytes) bytes)")
                }
                if let path = request.saveTo, let head = reader.head, !Self.redirects(head) {
                    if file == nil { file = try Self.create(path, name: name) }
                    try file?.write(contentsOf: part)
                } else {
                    kept += part
                }
                if arrived.isEmpty { break }
            }
        } catch let error as FetchConnection.Failure {
            throw failure(error)
        } catch let error as HTTPResponseReader.Failure {
            throw ValidationFailure("\(name): \(error)")
        }
        guard let head = reader.head else { throw ValidationFailure("\(name): no response") }
        if let path = request.saveTo, !Self.redirects(head), file == nil { file = try Self.create(path, name: name) }
        return Answer(status: head.status, headers: head.headers, body: file == nil ? kept : nil, bytes: bytes,
                      location: head.headers["location"])
    }

    private static func redirects(_ head: HTTPResponseReader.Head) -> Bool {
        head.headers["location"] != nil && [301, 302, 303, 307, 308].contains(head.status)
    }

    private static func create(_ path: String, name: String) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw ValidationFailure("\(name): cannot write save_to \(path)")
        }
        return handle
    }

    /// The request line and headers; the connection closes after the response, so that a body
    /// without a length ends with it.
    static func requestHead(url: URL, method: String, headers: [(String, String)], bodyCount: Int) -> [UInt8] {
        let parts = URLComponents(url: url, resolvingAgainstBaseURL: true)
        var target = parts?.percentEncodedPath ?? ""
        if target.isEmpty { target = "/" }
        if let query = parts?.percentEncodedQuery { target += "?\(query)" }
        let given = Set(headers.map { $0.0.lowercased() })
        var host = url.host ?? ""
        if host.contains(":") { host = "[\(host)]" }
        if let port = url.port { host += ":\(port)" }
        var head = "\(method) \(target) HTTP/1.1\r\n"
        if !given.contains("host") { head += "Host: \(host)\r\n" }
        if !given.contains("user-agent") { head += "User-Agent: colony-fetch\r\n" }
        for (name, value) in headers where name.lowercased() != "connection" && name.lowercased() != "content-length" {
            head += "\(name): \(value)\r\n"
        }
        if bodyCount > 0 || ["POST", "PUT", "PATCH"].contains(method) { head += "Content-Length: \(bodyCount)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8)
    }
}
