import Colony
import ColonyModel
import Foundation
import NNG
import Synchronization
@testable import ColonyNode
import XCTest

/// The built-in `fetch` handler against a local HTTP server (nng's, in this process).
final class FetchHandlerTests: ClusterTestCase {
    private var server: HTTPServer!
    private var base = ""
    /// One element each time `/slow` has a request.
    private let (slowRequests, slowRequestArrived) = AsyncStream<Void>.makeStream()
    private let slowRequestsReleased = ReleaseFlag()

    override func setUpWithError() throws {
        try super.setUpWithError()
        let server = try HTTPServer(url: "http://127.0.0.1:0")
        try server.route("/hello") { _ in
            HTTPResponse(status: 200, text: "hello, fetch").withHeader("X-Colony-Test", "yes")
        }
        try server.route("/binary") { _ in HTTPResponse(contentType: "application/octet-stream", body: Array(0...255)) }
        try server.route("/big") { _ in HTTPResponse(body: Array(repeating: UInt8(ascii: "b"), count: 300_000)) }
        try server.route("/missing-thing") { _ in HTTPResponse(status: 404, text: "no such thing") }
        try server.route("/echo", bodyBytesMax: 1 << 20, headers: ["x-token"]) { request in
            HTTPResponse(text: "\(request.method) \(request.headers["x-token"] ?? "-") \(String(decoding: request.body, as: UTF8.self))")
        }
        let arrived = slowRequestArrived
        let released = slowRequestsReleased
        try server.route("/slow") { _ in
            arrived.yield()
            // Answers after 10 s, or as soon as the test ends (the server's stop waits for it).
            let deadline = ContinuousClock.now + .seconds(10)
            while !released.value.load(ordering: .acquiring) && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            return HTTPResponse(text: "late")
        }
        try server.route("/moved") { _ in HTTPResponse(status: 302, text: "").withHeader("Location", "/hello") }
        try server.route("/loop") { _ in HTTPResponse(status: 301, text: "").withHeader("Location", "/loop") }
        try server.start()
        self.server = server
        base = "http://127.0.0.1:\(server.boundPort!)"
    }

    override func tearDown() {
        slowRequestsReleased.value.store(true, ordering: .releasing)
        server?.stop()
        super.tearDown()
    }

    private func fetch(_ input: FetchHandler.Input) async throws -> FetchHandler.Output {
        try await FetchHandler().run(input, context: TaskContext(taskID: 1, attempt: 1, nodeName: "test"))
    }

    private func failure(_ input: FetchHandler.Input) async -> String {
        do {
            let output = try await fetch(input)
            return "succeeded: \(output)"
        } catch {
            return "\(error)"
        }
    }

    func testFetchReportsStatusHeadersAndBody() async throws {
        let output = try await fetch(.init(url: "\(base)/hello"))
        XCTAssertEqual(output.status, 200)
        XCTAssertEqual(output.body, "hello, fetch")
        XCTAssertNil(output.bodyBase64)
        XCTAssertEqual(output.headers["x-colony-test"], "yes")
        XCTAssertEqual(output.headers["content-type"], "text/plain; charset=utf-8")
        XCTAssertEqual(output.bytes, 12)
        let missing = try await fetch(.init(url: "\(base)/missing-thing"))
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(missing.body, "no such thing")
    }

    func testABodyThatIsNotUTF8ComesBackAsBase64() async throws {
        let output = try await fetch(.init(url: "\(base)/binary"))
        XCTAssertNil(output.body)
        XCTAssertEqual(output.bodyBase64.flatMap { Data(base64Encoded: $0) }, Data(0...255))
    }

    func testMethodHeadersAndBodyAreSent() async throws {
        let posted = try await fetch(.init(url: "\(base)/echo", method: "post", headers: ["X-Token": "t1"], body: "payload"))
        XCTAssertEqual(posted.body, "POST t1 payload")
        let encoded = try await fetch(.init(url: "\(base)/echo", method: "PUT", bodyBase64: Data("bytes".utf8).base64EncodedString()))
        XCTAssertEqual(encoded.body, "PUT - bytes")
    }

    func testSaveToWritesTheBodyToAFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("colony-fetch-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try await fetch(.init(url: "\(base)/big", saveTo: path))
        XCTAssertEqual(output.savedTo, path)
        XCTAssertNil(output.body)
        XCTAssertEqual(output.bytes, 300_000)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data(repeating: UInt8(ascii: "b"), count: 300_000))
    }

    func testABodyOverMaxBytesFailsNamingTheURL() async throws {
        let error = await failure(.init(url: "\(base)/big", maxBytes: 100_000))
        XCTAssertEqual(error, "fetch \(base)/big: the body is over max_bytes (100000 bytes)")
        let fits = try await fetch(.init(url: "\(base)/big", maxBytes: 300_000))
        XCTAssertEqual(fits.bytes, 300_000)
        let tooLarge = await failure(.init(url: "\(base)/big", maxBytes: 1 << 30))
        XCTAssertTrue(tooLarge.contains("max_bytes must be 0 to 2097152 (or save the body with save_to)"), tooLarge)
    }

    func testRedirectsAreFollowedAndBounded() async throws {
        let moved = try await fetch(.init(url: "\(base)/moved"))
        XCTAssertEqual(moved.status, 200)
        XCTAssertEqual(moved.body, "hello, fetch")
        XCTAssertEqual(moved.url, "\(base)/hello")
        XCTAssertEqual(moved.redirects, 1)
        let loop = await failure(.init(url: "\(base)/loop"))
        XCTAssertEqual(loop, "fetch \(base)/loop: more than \(FetchHandler.redirectsMax) redirects")
    }

    func testAFetchPastItsTimeoutFailsInTime() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let error = await failure(.init(url: "\(base)/slow", timeoutSeconds: 0.3))
        XCTAssertEqual(error, "fetch \(base)/slow: timed out after 0.3 s")
        XCTAssertLessThan(clock.now - start, .seconds(5))
    }

    func testACancelledFetchEndsAtOnce() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let input = FetchHandler.Input(url: "\(base)/slow")
        let waiting = Task { try await FetchHandler().run(input, context: TaskContext(taskID: 1, attempt: 1, nodeName: "test")) }
        // Cancelled once the server has the request, so that the fetch is waiting for the answer.
        var requests = slowRequests.makeAsyncIterator()
        _ = await requests.next()
        waiting.cancel()
        let outcome = await waiting.result
        XCTAssertThrowsError(try outcome.get()) { XCTAssertTrue($0 is CancellationError, "\($0)") }
        XCTAssertLessThan(clock.now - start, .seconds(5))
    }

    func testAConnectionThatFailsNamesTheURL() async throws {
        let port = try ClusterHarness.freePort()
        let error = await failure(.init(url: "http://127.0.0.1:\(port)/x", timeoutSeconds: 5))
        XCTAssertTrue(error.hasPrefix("fetch http://127.0.0.1:\(port)/x: connect: "), error)
        let bad = await failure(.init(url: "ftp://example.com/x"))
        XCTAssertEqual(bad, "fetch: 'ftp://example.com/x' is not an http:// or https:// URL")
        let badPort = await failure(.init(url: "http://127.0.0.1:99999/x"))
        XCTAssertEqual(badPort, "fetch: 'http://127.0.0.1:99999/x' has port 99999, not 1-65535")
        let unresolved = await failure(.init(url: "http://no-such-host.invalid/x", timeoutSeconds: 5))
        // glibc's reason, or the timeout where a nameserver is configured but does not answer.
        XCTAssertTrue(unresolved.hasPrefix("fetch http://no-such-host.invalid/x: resolve no-such-host.invalid: ")
                      || unresolved == "fetch http://no-such-host.invalid/x: timed out after 5 s", unresolved)
        XCTAssertEqual(unresolved.split(separator: "\n").count, 1, unresolved)
    }

    func testAnUnknownFieldIsRefusedByTheNode() async throws {
        try cluster.startCoordinator()
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "2", "--name", "fetch-node"])
        let colony = try await cluster.connect(waitingForNodes: 1)
        let refused = try await colony.result(of: colony.submit(FetchHandler.name, rawInput: Array(#"{"url": "\#(base)/hello", "retries": 3}"#.utf8)))
        XCTAssertFalse(refused.succeeded)
        XCTAssertTrue(refused.error.contains("retries"), refused.error)
        let fetched = try await colony.result(of: colony.submit(FetchHandler.name, input: FetchHandler.Input(url: "\(base)/hello")))
        XCTAssertEqual(try fetched.value(as: FetchHandler.Output.self).body, "hello, fetch")
        await colony.close()
    }

    func testHTTPSVerifiesTheServerAgainstTheTrustedCAs() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
            throw XCTSkip("openssl is missing: cannot make a throwaway CA (apt-get install openssl)")
        }
        let root = NSTemporaryDirectory() + "colony-fetch-tls-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/make-test-certs.sh").path
        for folder in ["good", "other"] {
            let run = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/bash"), [script, "\(root)/\(folder)"])
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        let secure = try HTTPServer(url: "https://127.0.0.1:0", tls: TLSSettings(certificateAndKeyFile: "\(root)/good/server.pem"))
        try secure.route("/hello") { _ in HTTPResponse(text: "hello over TLS") }
        try secure.start()
        defer { secure.stop() }
        let url = "https://localhost:\(secure.boundPort!)/hello"
        defer { unsetenv("SSL_CERT_FILE") }
        setenv("SSL_CERT_FILE", "\(root)/good/ca.pem", 1)
        let output = try await fetch(.init(url: url, timeoutSeconds: 10))
        XCTAssertEqual(output.status, 200)
        XCTAssertEqual(output.body, "hello over TLS")
        setenv("SSL_CERT_FILE", "\(root)/other/ca.pem", 1)
        let untrusted = await failure(.init(url: url, timeoutSeconds: 10))
        XCTAssertTrue(untrusted.hasPrefix("fetch \(url): TLS failed: the server's certificate is not trusted here"), untrusted)
    }

    func testTheReaderTakesChunkedBodiesInAnySplit() throws {
        let response = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: t\r\n\r\n".utf8)
        for split in 1..<response.count {
            var reader = HTTPResponseReader(requestMethod: "GET")
            var body = try reader.feed(Array(response[..<split]))
            body += try reader.feed(Array(response[split...]))
            XCTAssertTrue(reader.isComplete, "split at \(split)")
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "hello, world", "split at \(split)")
            XCTAssertEqual(reader.head?.headers["x-a"], "1, 2")
        }
        var cut = HTTPResponseReader(requestMethod: "GET")
        _ = try cut.feed(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".utf8))
        XCTAssertThrowsError(try cut.finish())
    }
}

private final class ReleaseFlag: Sendable {
    let value = Atomic<Bool>(false)
}

private extension HTTPResponse {
    func withHeader(_ name: String, _ value: String) -> HTTPResponse {
        var copy = self
        copy.headers.append((name, value))
        return copy
    }
}
