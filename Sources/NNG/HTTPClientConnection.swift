import CNNG
import Synchronization

/// One HTTP client connection (plain TCP or TLS) from nng's supplemental HTTP client: bytes
/// out, bytes in, each step an aio awaited without holding a thread. `fetch` uses it for
/// https (nng's TLS); plain http goes over `Sockets`, which costs fewer thread wake-ups.
///
/// It moves bytes only. The caller writes the request and parses the response itself, so that
/// it sees every header and can stop reading a body at its own bound (nng's
/// `nng_http_client_transact` reads a whole body into memory and names no header it was not
/// asked for).
public final class HTTPClientConnection: @unchecked Sendable {
    private let conn: OpaquePointer
    private let buffer: UnsafeMutableRawBufferPointer
    /// Its aio, reused for every step: steps never overlap (each is awaited).
    private let operation: AsyncOperation
    private let closed = Mutex(false)

    private init(conn: OpaquePointer, operation: AsyncOperation) {
        self.conn = conn
        self.operation = operation
        buffer = .allocate(byteCount: 64 << 10, alignment: 1)
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects to the host and port of `url` (`http://` or `https://`; the path is not used).
    /// HTTPS verifies the server's certificate against `certificateAuthorityFile` and its name.
    public static func connect(_ url: String, certificateAuthorityFile: String?, timeoutMilliseconds: Int32) async throws(NNGError) -> HTTPClientConnection {
        var parsed: UnsafeMutablePointer<nng_url>?
        try check(nng_url_parse(&parsed, url), "parse URL")
        guard let parsed else { throw NNGError(code: Int32(NNG_EINVAL.rawValue), operation: "parse URL") }
        defer { nng_url_free(parsed) }
        let scheme = String(cString: parsed.pointee.u_scheme)
        guard scheme == "http" || scheme == "https" else { throw NNGError(code: Int32(NNG_ENOTSUP.rawValue), operation: "use scheme \(scheme)") }
        var client: OpaquePointer?
        try check(nng_http_client_alloc(&client, parsed), "set up an HTTP client")
        guard let client else { throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: "set up an HTTP client") }
        // Connections it made stay open after it is freed.
        defer { nng_http_client_free(client) }
        if scheme == "https" {
            var config: OpaquePointer?
            try check(nng_tls_config_alloc(&config, NNG_TLS_MODE_CLIENT), "set up TLS")
            guard let config else { throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: "set up TLS") }
            defer { nng_tls_config_free(config) }  // the client holds its own reference
            try check(nng_tls_config_server_name(config, parsed.pointee.u_hostname), "set the TLS server name")
            if let certificateAuthorityFile {
                try check(nng_tls_config_ca_file(config, certificateAuthorityFile), "load TLS CA \(certificateAuthorityFile)")
            }
            try check(nng_tls_config_auth_mode(config, NNG_TLS_AUTH_MODE_REQUIRED), "require a server certificate")
            try check(nng_http_client_set_tls(client, config), "set up TLS")
        }
        let operation = try AsyncOperation()
        let outcome = await operation.run(timeoutMilliseconds: timeoutMilliseconds, cancellable: true) { aio in
            nng_http_client_connect(client, aio)
        }
        try check(outcome.code, "connect")
        guard let aio = operation.aio, let conn = nng_aio_get_output(aio, 0) else {
            throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: "connect")
        }
        return HTTPClientConnection(conn: OpaquePointer(conn), operation: operation)
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8], timeoutMilliseconds: Int32) async throws(NNGError) {
        guard !bytes.isEmpty else { return }
        // nng reads from this memory until the write completes, so it is not an array's storage.
        let outgoing = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { outgoing.deallocate() }
        outgoing.copyBytes(from: bytes)
        let conn = conn
        let outcome = await operation.run(timeoutMilliseconds: timeoutMilliseconds, cancellable: true) { aio in
            var iov = nng_iov(iov_buf: outgoing.baseAddress, iov_len: outgoing.count)
            _ = nng_aio_set_iov(aio, 1, &iov)
            nng_http_conn_write_all(conn, aio)
        }
        try check(outcome.code, "send the request")
    }

    /// Reads what has arrived (at most 64 KiB), waiting for at least one byte; empty when the
    /// server closed the connection.
    public func read(timeoutMilliseconds: Int32) async throws(NNGError) -> [UInt8] {
        let (conn, buffer) = (conn, buffer)
        let outcome = await operation.run(timeoutMilliseconds: timeoutMilliseconds, cancellable: true) { aio in
            var iov = nng_iov(iov_buf: buffer.baseAddress, iov_len: buffer.count)
            _ = nng_aio_set_iov(aio, 1, &iov)
            nng_http_conn_read(conn, aio)
        }
        if outcome.code == Int32(NNG_ECLOSED.rawValue) || outcome.code == Int32(NNG_ECONNSHUT.rawValue) { return [] }
        try check(outcome.code, "read the response")
        guard let aio = operation.aio else { return [] }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[..<nng_aio_count(aio)]))
    }

    /// Closes the connection; idempotent.
    public func close() {
        guard !closed.withLock({ let was = $0; $0 = true; return was }) else { return }
        nng_http_conn_close(conn)
    }
}
