import CNNG
import Glibc
import Synchronization

/// An nng socket: one scalability protocol (REQ, REP, PUSH, PULL, PAIR) over any transport
/// (`inproc://`, `ipc://`, `tcp://`, `tls+tcp://`).
///
/// All methods are safe to call from any thread. Closing aborts pending operations with an
/// error whose `isClosed` is true; the socket is also closed when the last reference goes.
public final class Socket: @unchecked Sendable {
    /// The scalability protocol a socket speaks.
    public enum Kind: String, Sendable {
        case req, rep, push, pull, pair
    }

    public let kind: Kind
    let raw: nng_socket
    /// Set (sequentially consistent, see `close`) before `nng_close` runs.
    let closed = Atomic<Bool>(false)
    /// Calls on this socket's contexts under way right now (see `whileOpen`).
    let contextCalls = Atomic<Int>(0)
    private let pipeEventsBox = Mutex<PipeEventBox?>(nil)

    public init(_ kind: Kind) throws(NNGError) {
        self.kind = kind
        var socket = nng_socket()
        let rv: Int32
        switch kind {
        case .req: rv = nng_req0_open(&socket)
        case .rep: rv = nng_rep0_open(&socket)
        case .push: rv = nng_push0_open(&socket)
        case .pull: rv = nng_pull0_open(&socket)
        case .pair: rv = nng_pair1_open(&socket)
        }
        try check(rv, "open \(kind.rawValue) socket")
        raw = socket
    }

    deinit {
        close()
    }

    /// The longest `close` waits for nng's close (see there).
    public static let closeWaitMax = Duration.seconds(5)
    /// The wait once a close has hung: nng 1.5.2's reaper thread is then stuck for good, and
    /// every later close in the process hangs too (each socket's close waits for its pipes to
    /// be reaped), so waiting the whole bound again would only make every stop 5 s slower.
    static let closeWaitAfterAHang = Duration.milliseconds(50)
    /// A close in this process has hung (see `closeWaitAfterAHang`).
    static let aCloseHung = Atomic<Bool>(false)

    /// Closes the socket; pending sends and receives fail with `isClosed`. Idempotent.
    ///
    /// Waits for `nng_close` at most `closeWaitMax`: nng 1.5.2's can hang for good when it
    /// races a REQ or REP context between its send and its receive (nanomsg/nng#1813, fixed
    /// in later releases; seen in a node stopped with pulls in flight, and in `colony bench`'s
    /// coordinator); its reaper thread then stays stuck and every later close hangs as well.
    /// Past the bound the close goes on on its own thread, the pipe events end here, and this
    /// returns false: a stop must end even then.
    @discardableResult
    public func close() -> Bool {
        // nng 1.5.2 panics ("pthread_mutex_lock: Invalid argument") when a call on one of the
        // socket's contexts (nng_ctx_send, _recv, _close) runs during nng_close. Each side
        // announces itself, then looks at the other (sequentially consistent, so at least one
        // sees the other): a context call that sees the socket closing does not run (see
        // `whileOpen`); a close that sees a context call under way waits for it to return.
        if closed.exchange(true, ordering: .sequentiallyConsistent) { return true }
        while contextCalls.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        let raw = self.raw
        let limit = Self.aCloseHung.load(ordering: .relaxed) ? Self.closeWaitAfterAHang : Self.closeWaitMax
        let inTime = BoundedCall.run(waitingAtMost: limit) { nng_close(raw) }
        if !inTime { Self.aCloseHung.store(true, ordering: .relaxed) }
        // Pipe callbacks have stopped once nng_close returned, so the stream can end here
        // (and past the bound it must, for whoever waits on it).
        pipeEventsBox.withLock { $0?.finish() }
        return inTime
    }

    /// Runs `call` (an nng_ctx_* call on one of this socket's contexts) unless the socket is
    /// closing, and never while `nng_close` runs; false when it did not run.
    func whileOpen(_ call: () -> Void) -> Bool {
        contextCalls.add(1, ordering: .sequentiallyConsistent)
        defer { contextCalls.subtract(1, ordering: .sequentiallyConsistent) }
        guard !closed.load(ordering: .sequentiallyConsistent) else { return false }
        call()
        return true
    }

    /// Listens on `url` (e.g. `tcp://0.0.0.0:7411`, `ipc:///tmp/colony.sock`, `inproc://x`,
    /// `tls+tcp://0.0.0.0:7411` with `tls`).
    @discardableResult
    public func listen(_ url: String, tls: TLSSettings? = nil) throws(NNGError) -> Listener {
        var listener = nng_listener()
        guard let tls else {
            try check(nng_listen(raw, url, &listener, 0), "listen on \(url)")
            return Listener(raw: listener)
        }
        try check(nng_listener_create(&listener, raw, url), "listen on \(url)")
        do {
            let config = try tls.serverConfig(for: url)
            defer { nng_tls_config_free(config) }  // the listener holds its own reference
            try check(nng_listener_set_ptr(listener, NNG_OPT_TLS_CONFIG, UnsafeMutableRawPointer(config)), "set up TLS for \(url)")
            try check(nng_listener_start(listener, 0), "listen on \(url)")
        } catch {
            nng_listener_close(listener)
            throw error
        }
        return Listener(raw: listener)
    }

    /// Dials `url`. With `waitForConnection` the first attempt happens now and its failure is
    /// thrown (`isConnectionRefused` when nothing listens); otherwise nng connects in the
    /// background and keeps redialling.
    @discardableResult
    public func dial(_ url: String, waitForConnection: Bool = true, tls: TLSSettings? = nil) throws(NNGError) -> Dialer {
        var dialer = nng_dialer()
        let flags: Int32 = waitForConnection ? 0 : Int32(NNG_FLAG_NONBLOCK)
        guard let tls else {
            try check(nng_dial(raw, url, &dialer, flags), "dial \(url)")
            return Dialer(raw: dialer)
        }
        try check(nng_dialer_create(&dialer, raw, url), "dial \(url)")
        do {
            // Dialers verify the server by default (NNG_TLS_AUTH_MODE_REQUIRED) against this CA.
            if let file = tls.certificateAuthorityFile {
                try check(nng_dialer_set_string(dialer, NNG_OPT_TLS_CA_FILE, file), "load TLS CA \(file)")
            }
            if let file = tls.certificateAndKeyFile {
                try check(nng_dialer_set_string(dialer, NNG_OPT_TLS_CERT_KEY_FILE, file), "load TLS certificate and key \(file)")
            }
            if let name = tls.serverName {
                try check(nng_dialer_set_string(dialer, NNG_OPT_TLS_SERVER_NAME, name), "set TLS server name")
            }
            try check(nng_dialer_start(dialer, flags), "dial \(url)")
        } catch {
            nng_dialer_close(dialer)
            throw error
        }
        return Dialer(raw: dialer)
    }

    /// Opens a context: an independent request/reply state on a REQ or REP socket, so that
    /// many exchanges can be in flight on one socket.
    public func openContext() throws(NNGError) -> Context {
        try Context(socket: self)
    }

    /// Sends one message; waits until nng has taken it.
    public func send(_ bytes: [UInt8], timeout: Duration? = nil) async throws(NNGError) {
        let socket = raw
        try await Transfer.send(bytes, operation: "send", timeout: timeout) { nng_send_aio(socket, $0) }
    }

    /// Receives one message. `timeout` nil uses the socket's receive timeout (default: none).
    public func receive(timeout: Duration? = nil) async throws(NNGError) -> [UInt8] {
        let socket = raw
        return try await Transfer.receive(operation: "receive", timeout: timeout) { nng_recv_aio(socket, $0) }
    }

    /// Pipe (connection) events of this socket, as a stream. The stream ends when the socket
    /// closes. Only one stream per socket; a second call returns the same events.
    public func pipeEvents() throws(NNGError) -> AsyncStream<PipeEvent> {
        let (stream, continuation) = AsyncStream<PipeEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let box = PipeEventBox(continuation: continuation)
        let previous = pipeEventsBox.withLock { slot -> PipeEventBox? in
            let old = slot
            slot = box
            return old
        }
        previous?.finish()
        let argument = Unmanaged.passUnretained(box).toOpaque()
        for event in [NNG_PIPE_EV_ADD_POST, NNG_PIPE_EV_REM_POST] {
            try check(nng_pipe_notify(raw, event, pipeEventCallback, argument), "register pipe events")
        }
        return stream
    }

    // MARK: Options

    /// Largest message this socket accepts; larger ones are dropped by nng before they reach
    /// us (and the connection is closed). 0 means no limit.
    public func setReceiveMaxBytes(_ bytes: Int) throws(NNGError) {
        try check(nng_socket_set_size(raw, NNG_OPT_RECVMAXSZ, bytes), "set \(NNG_OPT_RECVMAXSZ)")
    }

    /// Default timeout of receives that pass no timeout of their own.
    public func setReceiveTimeout(_ timeout: Duration?) throws(NNGError) {
        try check(nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, timeout.map(milliseconds) ?? NNG_DURATION_INFINITE), "set receive timeout")
    }

    /// Default timeout of sends that pass no timeout of their own.
    public func setSendTimeout(_ timeout: Duration?) throws(NNGError) {
        try check(nng_socket_set_ms(raw, NNG_OPT_SENDTIMEO, timeout.map(milliseconds) ?? NNG_DURATION_INFINITE), "set send timeout")
    }

    /// Bounds of the dialer's exponential reconnect back-off.
    public func setReconnectTimes(minimum: Duration, maximum: Duration) throws(NNGError) {
        try check(nng_socket_set_ms(raw, NNG_OPT_RECONNMINT, milliseconds(minimum)), "set reconnect min")
        try check(nng_socket_set_ms(raw, NNG_OPT_RECONNMAXT, milliseconds(maximum)), "set reconnect max")
    }

    /// REQ only: how long a request waits for its reply before nng sends it again.
    /// nil turns resending off.
    public func setRequestResendTime(_ time: Duration?) throws(NNGError) {
        try check(nng_socket_set_ms(raw, NNG_OPT_REQ_RESENDTIME, time.map(milliseconds) ?? NNG_DURATION_INFINITE), "set resend time")
    }
}

/// Certificates for `tls+tcp://` endpoints (PEM files; nng's TLS is mbedTLS on Debian).
public struct TLSSettings: Sendable, Equatable {
    /// One file with this side's certificate and its unencrypted key (a listener must have
    /// one; a dialer may, to authenticate itself).
    public var certificateAndKeyFile: String?
    /// The CA that signs the peer's certificate: dialers verify the server with it (required);
    /// on a listener it makes client certificates mandatory.
    public var certificateAuthorityFile: String?
    /// The name the server's certificate must carry (dialers; default: the URL's host).
    public var serverName: String?

    public init(certificateAndKeyFile: String? = nil, certificateAuthorityFile: String? = nil, serverName: String? = nil) {
        self.certificateAndKeyFile = certificateAndKeyFile
        self.certificateAuthorityFile = certificateAuthorityFile
        self.serverName = serverName
    }
}

extension TLSSettings {
    /// The server side of these settings as an nng TLS configuration (the caller frees its
    /// reference): our certificate, and with a CA, client certificates it signed required.
    /// Socket listeners and the HTTP server share it.
    func serverConfig(for url: String) throws(NNGError) -> OpaquePointer {
        var config: OpaquePointer?
        try check(nng_tls_config_alloc(&config, NNG_TLS_MODE_SERVER), "set up TLS for \(url)")
        guard let config else { throw NNGError(code: Int32(NNG_ENOMEM.rawValue), operation: "set up TLS for \(url)") }
        do {
            if let file = certificateAndKeyFile {
                try check(nng_tls_config_cert_key_file(config, file, nil), "load TLS certificate and key \(file)")
            }
            if let file = certificateAuthorityFile {
                // A CA on the listening side means: clients must present a certificate it signed.
                try check(nng_tls_config_ca_file(config, file), "load TLS CA \(file)")
                try check(nng_tls_config_auth_mode(config, NNG_TLS_AUTH_MODE_REQUIRED), "require client certificates")
            }
        } catch {
            nng_tls_config_free(config)
            throw error
        }
        return config
    }
}

/// A listening endpoint of a socket.
public struct Listener: Sendable {
    let raw: nng_listener
    /// The TCP port actually bound (useful after listening on port 0), or nil.
    public var boundPort: Int? {
        var port: Int32 = 0
        guard nng_listener_get_int(raw, NNG_OPT_TCP_BOUND_PORT, &port) == 0 else { return nil }
        return Int(port)
    }
    /// Stops listening; connections it accepted stay open.
    public func close() { nng_listener_close(raw) }
}

/// A dialing endpoint of a socket.
public struct Dialer: Sendable {
    let raw: nng_dialer
    /// Stops dialling and closes its connection.
    public func close() { nng_dialer_close(raw) }
}

/// A connection joining or leaving a socket.
public struct PipeEvent: Sendable, Equatable {
    public enum Kind: Sendable { case added, removed }
    public let kind: Kind
    /// nng's pipe id: the same for the `added` and `removed` events of one connection.
    public let pipeID: UInt32
    /// The peer's address where the transport has one (`tcp`: "127.0.0.1:53211").
    public let peer: String?
}

final class PipeEventBox: @unchecked Sendable {
    let continuation: AsyncStream<PipeEvent>.Continuation
    init(continuation: AsyncStream<PipeEvent>.Continuation) { self.continuation = continuation }
    func finish() { continuation.finish() }
}

// Runs on an nng thread. It must never close the socket (nng 1.5.2 deadlocks when a pipe
// callback closes its own socket), so it only hands the event to the stream.
private func pipeEventCallback(_ pipe: nng_pipe, _ event: nng_pipe_ev, _ argument: UnsafeMutableRawPointer?) {
    guard let argument else { return }
    let box = Unmanaged<PipeEventBox>.fromOpaque(argument).takeUnretainedValue()
    let kind: PipeEvent.Kind = event == NNG_PIPE_EV_ADD_POST ? .added : .removed
    box.continuation.yield(PipeEvent(kind: kind, pipeID: UInt32(bitPattern: nng_pipe_id(pipe)), peer: peerAddress(pipe)))
}

private func peerAddress(_ pipe: nng_pipe) -> String? {
    var address = nng_sockaddr()
    guard nng_pipe_get_addr(pipe, NNG_OPT_REMADDR, &address) == 0 else { return nil }
    switch Int32(address.s_family) {
    case Int32(NNG_AF_INET.rawValue):
        let a = address.s_in.sa_addr  // network byte order
        let port = UInt16(bigEndian: address.s_in.sa_port)
        let b = withUnsafeBytes(of: a) { Array($0) }
        return "\(b[0]).\(b[1]).\(b[2]).\(b[3]):\(port)"
    case Int32(NNG_AF_IPC.rawValue):
        return "ipc"
    case Int32(NNG_AF_INPROC.rawValue):
        return "inproc"
    default:
        return nil
    }
}
