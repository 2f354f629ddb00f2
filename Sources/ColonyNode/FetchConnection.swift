import Foundation
import NNG
import Sockets

/// A fetch's connection: plain http on `TCPConnection` (epoll, one wake-up per wait), https
/// on nng's TLS client (its steps cross nng's threads, which plain http no longer pays for:
/// see `SocketReactor`).
enum FetchConnection {
    case plain(TCPConnection)
    case tls(HTTPClientConnection)

    /// Why a step failed, in the terms a fetch reports.
    enum Failure: Error {
        case timedOut
        case cancelled
        /// The server's certificate was refused (nng's reason).
        case untrusted(String)
        /// One line: "connect: Connection refused".
        case failed(String)

        init(_ error: NNGError) {
            if error.isCancelled { self = .cancelled }
            else if error.isTimeout { self = .timedOut }
            else if error.isTLSFailure { self = .untrusted(error.reason) }
            else { self = .failed("\(error)") }
        }

        init(_ error: SocketError) {
            switch error.reason {
            case .timedOut: self = .timedOut
            case .cancelled: self = .cancelled
            default: self = .failed("\(error)")
            }
        }
    }

    static func open(_ url: URL, certificateAuthorityFile: @autoclosure () -> String?, until deadline: ContinuousClock.Instant) async throws(Failure) -> FetchConnection {
        if url.scheme?.lowercased() == "https" {
            let timeout = try milliseconds(until: deadline)
            do {
                return .tls(try await HTTPClientConnection.connect(url.absoluteString, certificateAuthorityFile: certificateAuthorityFile(),
                                                                  timeoutMilliseconds: timeout))
            } catch {
                throw Failure(error)
            }
        }
        do {
            return .plain(try await TCPConnection.connect(host: url.host ?? "", port: url.port ?? 80, until: deadline))
        } catch {
            throw Failure(error)
        }
    }

    func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) async throws(Failure) {
        switch self {
        case .plain(let connection):
            do { try await connection.write(bytes, until: deadline) } catch { throw Failure(error) }
        case .tls(let connection):
            let timeout = try Self.milliseconds(until: deadline)
            do { try await connection.write(bytes, timeoutMilliseconds: timeout) } catch { throw Failure(error) }
        }
    }

    /// What has arrived, waiting for at least one byte; empty at the end of the response.
    func read(until deadline: ContinuousClock.Instant) async throws(Failure) -> [UInt8] {
        switch self {
        case .plain(let connection):
            do { return try await connection.read(until: deadline) } catch { throw Failure(error) }
        case .tls(let connection):
            let timeout = try Self.milliseconds(until: deadline)
            do { return try await connection.read(timeoutMilliseconds: timeout) } catch { throw Failure(error) }
        }
    }

    func close() {
        switch self {
        case .plain(let connection): connection.close()
        case .tls(let connection): connection.close()
        }
    }

    private static func milliseconds(until deadline: ContinuousClock.Instant) throws(Failure) -> Int32 {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw .timedOut }
        return Int32(clamping: left.inMillisecondsRoundedUp)
    }
}
