import Colony
import ColonyModel
import Foundation
import XCTest

/// The shared token: required beyond loopback, checked on every request, refused with one
/// clear line and no state change.
final class SecurityTests: ClusterTestCase {
    private var environment: [String: String] {
        ProcessInfo.processInfo.environment.filter { $0.key != "COLONY_TOKEN" }
    }

    /// A client with `token`, once the coordinator listens.
    private func client(token: String) async throws -> ColonyClient {
        var options = ColonyClient.Options()
        options.token = token
        return try await eventually("a client connected to \(cluster.url)", { Result { try ColonyClient(connect: cluster.url, options: options) } },
                                    until: { (try? $0.get()) != nil }).get()
    }

    func testEveryRequestMustCarryTheTokenAndAWrongOneChangesNothing() async throws {
        var withToken = environment
        withToken["COLONY_TOKEN"] = "s3cret-token"
        try cluster.start(["coordinator", "--listen", cluster.url, "--state", ":memory:"], environment: withToken)
        try cluster.start(["node", "--coordinator", cluster.url, "--threads", "1", "--processes", "0", "--name", "n1"], environment: withToken)
        // `connect` polls status without a token until the node joined: wait with one instead.
        let good = try await client(token: "s3cret-token")
        try await eventually("the node (with the token) joined", { (try? await good.status().nodes.count) ?? 0 }, until: { $0 >= 1 })
        let added = try await good.counter("c").add(1)
        XCTAssertEqual(added, 1)
        let echoed = try await good.run("echo", input: "hi", as: String.self)
        XCTAssertEqual(echoed, "hi", "the node's pulls carry the token")

        for token in ["wrong", ""] {
            let bad = try await client(token: token)
            do {
                _ = try await bad.counter("c").add(100)
                XCTFail("a request with token '\(token)' was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains("wrong or missing token"), "\(error)")
            }
            do {
                _ = try await bad.submit("echo", input: "sneaky")
                XCTFail("a submit with token '\(token)' was accepted")
            } catch {
                XCTAssertTrue("\(error)".contains("wrong or missing token"), "\(error)")
            }
            await bad.close()
        }
        let counter = try await good.counter("c").get()
        XCTAssertEqual(counter, 1, "refused requests changed nothing")
        let status = try await good.status()
        XCTAssertEqual(status.succeeded, 1, "no refused task was queued")
        await good.close()

        var wrong = environment
        wrong["COLONY_TOKEN"] = "nope"
        let run = try ClusterHarness.run(["counter", "get", "c", "--coordinator", cluster.url], environment: wrong)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("wrong or missing token"), run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
    }

    func testACoordinatorBeyondLoopbackRefusesToStartWithoutAToken() throws {
        let port = try ClusterHarness.freePort()
        let run = try ClusterHarness.run(["coordinator", "--listen", "tcp://0.0.0.0:\(port)", "--state", ":memory:"],
                                         environment: environment, timeout: .seconds(30))
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("needs a shared token"), run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)

        // The HTTP side too, before anything starts listening.
        let http = try ClusterHarness.run(["coordinator", "--listen", "tcp://127.0.0.1:\(port)", "--state", ":memory:",
                                           "--metrics-listen", "0.0.0.0:\(try ClusterHarness.freePort())"],
                                          environment: environment, timeout: .seconds(30))
        XCTAssertNotEqual(http.status, 0)
        XCTAssertTrue(http.stderr.contains("listening on http://0.0.0.0:") && http.stderr.contains("needs a shared token"), http.stderr)
        XCTAssertEqual(http.stderr.split(separator: "\n").count, 1, http.stderr)
    }

    func testATokenFileWorksForTheCoordinatorAndTheClients() async throws {
        let file = NSTemporaryDirectory() + "colony-token-\(UUID().uuidString)"
        try "from-a-file\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let port = try ClusterHarness.freePort()
        try cluster.start(["coordinator", "--listen", "tcp://0.0.0.0:\(port)", "--state", ":memory:", "--token-file", file],
                          environment: environment)
        let url = "tcp://127.0.0.1:\(port)"
        let run = try await eventually(poll: .milliseconds(50), "a counter add with the token file accepted", {
            try ClusterHarness.run(["counter", "add", "f", "2", "--coordinator", url, "--token-file", file], environment: environment)
        }, until: { $0.status == 0 })
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "2")
        let missing = try ClusterHarness.run(["counter", "get", "f", "--coordinator", url, "--token-file", "/nonexistent/token"],
                                             environment: environment)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("cannot read the token file /nonexistent/token"), missing.stderr)
    }

    /// Two throwaway CAs with their certificates, in `ROOT/good` and `ROOT/other`.
    private func makeThrowawayCAs() throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
            throw XCTSkip("openssl is missing: cannot make a throwaway CA (apt-get install openssl)")
        }
        let root = NSTemporaryDirectory() + "colony-tls-\(UUID().uuidString)"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/make-test-certs.sh").path
        for folder in ["good", "other"] {
            let make = Process()
            make.executableURL = URL(fileURLWithPath: "/bin/bash")
            make.arguments = [script, "\(root)/\(folder)"]
            make.standardOutput = FileHandle.nullDevice
            try make.run()
            make.waitUntilExit()
            XCTAssertEqual(make.terminationStatus, 0)
        }
        return root
    }

    func testTLSWithAThrowawayCAAndClientCertificates() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else {
            throw XCTSkip("openssl is missing: cannot make a throwaway CA (apt-get install openssl)")
        }
        let root = try makeThrowawayCAs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let port = try ClusterHarness.freePort()
        let url = "tls+tcp://127.0.0.1:\(port)"
        // The coordinator trusts its CA for client certificates too: clients must present one.
        let httpsPort = try ClusterHarness.freePort()
        try cluster.start(["coordinator", "--listen", url, "--state", ":memory:", "--tls-cert", "\(root)/good/server.pem",
                           "--tls-ca", "\(root)/good/ca.pem", "--metrics-listen", "https://127.0.0.1:\(httpsPort)"], environment: environment)
        try cluster.start(["node", "--coordinator", url, "--tls-ca", "\(root)/good/ca.pem", "--tls-cert", "\(root)/good/client.pem",
                           "--tls-server-name", "localhost", "--threads", "1", "--processes", "0", "--name", "tls-node"],
                          environment: environment)
        var options = ColonyClient.Options()
        options.tls = TLSSettings(certificateAndKeyFile: "\(root)/good/client.pem", certificateAuthorityFile: "\(root)/good/ca.pem",
                                  serverName: "localhost")
        let colony: ColonyClient? = try await eventually(poll: .milliseconds(50), "a client connected over TLS", {
            Result { try ColonyClient(connect: url, options: options) }
        }, until: { (try? $0.get()) != nil }).get()
        let echoed = try await colony!.run("echo", input: "over tls", as: String.self)
        XCTAssertEqual(echoed, "over tls", "client and node both got through")

        // The HTTP side serves HTTPS with the coordinator's certificate (checked against the CA).
        let request = "GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        let requestFile = "\(root)/request.txt"
        try request.write(toFile: requestFile, atomically: true, encoding: .utf8)
        let https = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/sh"),
                                           ["-c", "openssl s_client -connect 127.0.0.1:\(httpsPort) -servername localhost -CAfile \(root)/good/ca.pem -verify_return_error -quiet < \(requestFile)"],
                                           timeout: .seconds(30))
        XCTAssertTrue(https.stdout.contains("200 OK") && https.stdout.contains("\"tls-node\""), https.stdout + https.stderr)
        let untrusted = try ClusterHarness.run(executable: URL(fileURLWithPath: "/bin/sh"),
                                               ["-c", "openssl s_client -connect 127.0.0.1:\(httpsPort) -servername localhost -CAfile \(root)/other/ca.pem -verify_return_error -quiet < \(requestFile)"],
                                               timeout: .seconds(30))
        XCTAssertFalse(untrusted.stdout.contains("200 OK"), "a client that does not trust the certificate gets nothing")
        await colony!.close()

        // A coordinator certificate from another CA is refused, with a reason.
        let wrongCA = try ClusterHarness.run(["status", "--coordinator", url, "--tls-ca", "\(root)/other/ca.pem",
                                              "--tls-cert", "\(root)/good/client.pem", "--tls-server-name", "localhost"],
                                             environment: environment, timeout: .seconds(30))
        XCTAssertNotEqual(wrongCA.status, 0)
        XCTAssertTrue(wrongCA.stderr.contains("TLS handshake failed"), wrongCA.stderr)
        // No client certificate: the coordinator refuses the handshake.
        let noCert = try ClusterHarness.run(["status", "--coordinator", url, "--tls-ca", "\(root)/good/ca.pem",
                                             "--tls-server-name", "localhost"], environment: environment, timeout: .seconds(30))
        XCTAssertNotEqual(noCert.status, 0, noCert.stdout)
        // No CA at all: a clear line before any connection.
        let noCA = try ClusterHarness.run(["status", "--coordinator", url], environment: environment, timeout: .seconds(30))
        XCTAssertTrue(noCA.stderr.contains("needs --tls-ca FILE"), noCA.stderr)
    }

    /// A client that sends `Connection: close` reads the answer up to its `Content-Length` over
    /// HTTPS. nng 1.5 closes its TLS connection as soon as the response is *queued*, dropping
    /// the records not yet written: about 2 in 100 such answers lost their body (the headers
    /// came, then the connection ended). Python's `ssl` is the client: it reproduced the loss
    /// where curl did not.
    func testHTTPSAnswersInFullAClientThatAsksToClose() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("python3 is missing: it is the TLS client of this test (apt-get install python3)")
        }
        let root = try makeThrowawayCAs()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let port = try ClusterHarness.freePort()
        let httpsPort = try ClusterHarness.freePort()
        try cluster.start(["coordinator", "--listen", "tls+tcp://127.0.0.1:\(port)", "--state", ":memory:",
                           "--tls-cert", "\(root)/good/server.pem", "--metrics-listen", "https://127.0.0.1:\(httpsPort)"],
                          environment: environment)
        let probe = """
        import socket, ssl, sys, time
        port, ca, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
        context = ssl.create_default_context(cafile=ca)
        deadline = time.time() + 30
        cut = []
        for attempt in range(rounds):
            while True:
                try:
                    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
                    break
                except OSError:
                    if time.time() > deadline: raise
                    time.sleep(0.05)
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /api/v1/status HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
                data, length = b"", None
                while length is None or len(data.partition(b"\\r\\n\\r\\n")[2]) < length:
                    try:
                        chunk = tls.recv(65536)
                    except (ssl.SSLError, OSError):
                        chunk = b""
                    if not chunk:
                        break
                    data += chunk
                    head, separator, _ = data.partition(b"\\r\\n\\r\\n")
                    if separator and length is None:
                        length = int([line.split(b":")[1] for line in head.split(b"\\r\\n")
                                      if line.lower().startswith(b"content-length:")][0])
                body = data.partition(b"\\r\\n\\r\\n")[2]
                if length is None or len(body) < length or b'"nodes"' not in body:
                    cut.append(f"answer {attempt}: {len(body)} of {length} body bytes")
        print(f"{rounds - len(cut)} of {rounds} answers complete")
        for line in cut[:5]: print(line)
        sys.exit(1 if cut else 0)
        """
        let probeFile = "\(root)/probe.py"
        try probe.write(toFile: probeFile, atomically: true, encoding: .utf8)
        let run = try ClusterHarness.run(executable: URL(fileURLWithPath: "/usr/bin/python3"),
                                         [probeFile, "\(httpsPort)", "\(root)/good/ca.pem", "200"], timeout: .seconds(240))
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        XCTAssertTrue(run.stdout.contains("200 of 200 answers complete"), run.stdout + run.stderr)
    }
}
