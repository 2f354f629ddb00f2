import ArgumentParser
import Colony
import ColonyModel
import Dispatch
import Foundation
import Synchronization

/// Options every client subcommand shares.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "The coordinator's URL (default: $COLONY_COORDINATOR, else tcp://127.0.0.1:7411).")
    var coordinator: String?

    @OptionGroup var tokenSource: TokenOptions

    @OptionGroup var tlsFiles: TLSOptions

    @Option(name: .long, parsing: .unconditional, help: "Seconds to keep trying a coordinator that does not answer (stopped, restarting, cut off) before giving up (default: $COLONY_PATIENCE, else 60).")
    var patience: Double?

    static let patienceRange = SecondsRange(1...2_592_000)

    /// The shared token ("" for none).
    func token() throws -> String { try tokenSource.token() ?? "" }

    /// How long to keep trying an unresponsive coordinator: `--patience`, else
    /// `$COLONY_PATIENCE`, else 60 s.
    func patienceDuration() throws -> Duration {
        if let patience { return try Self.patienceRange.duration(patience, "--patience") }
        if let text = ProcessInfo.processInfo.environment["COLONY_PATIENCE"], !text.isEmpty {
            guard let seconds = Double(text) else { throw CLIError("COLONY_PATIENCE must be a number of seconds, not '\(text)'") }
            return try Self.patienceRange.duration(seconds, "COLONY_PATIENCE")
        }
        return ColonyClient.Options().patience
    }

    /// Certificates for a tls+tcp:// coordinator URL (nil for other schemes).
    func tls() throws -> TLSSettings? { try tlsFiles.forDialing(coordinatorURL) }

    var coordinatorURL: String {
        if let coordinator { return coordinator }
        if let fromEnvironment = ProcessInfo.processInfo.environment["COLONY_COORDINATOR"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return ColonyURL.defaultCoordinator
    }
}

/// Where the shared token comes from: a file or `$COLONY_TOKEN`, never the command line
/// (where `ps` would show it to every user of the machine).
struct TokenOptions: ParsableArguments {
    @Option(name: .long, help: "A file holding the cluster's shared token (default: $COLONY_TOKEN). Needed when the coordinator listens beyond loopback.")
    var tokenFile: String?

    /// The token, or nil when none is configured.
    func token() throws -> String? {
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw CLIError("cannot read the token file \(tokenFile)")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw CLIError("the token file \(tokenFile) is empty") }
            return token
        }
        if let token = ProcessInfo.processInfo.environment["COLONY_TOKEN"], !token.isEmpty { return token }
        return nil
    }

    /// The token, refusing to go on without one when `listen` is reachable from the network.
    func tokenForListening(on listen: String) throws -> String? {
        let token = try token()
        if token == nil && !ColonyURL.isLocal(listen) {
            throw CLIError("listening on \(listen) (beyond loopback) needs a shared token: put one in a file and pass --token-file PATH, or set COLONY_TOKEN (e.g. openssl rand -hex 16)")
        }
        return token
    }
}

/// Certificate files for `tls+tcp://` (PEM; scripts/make-test-certs.sh makes a throwaway set).
struct TLSOptions: ParsableArguments {
    @Option(name: .long, help: "tls+tcp: this side's certificate and unencrypted key in one PEM file (the coordinator's, or a client's/node's own).")
    var tlsCert: String?

    @Option(name: .long, help: "tls+tcp: the CA that signed the other side's certificate (clients and nodes: required; coordinator: makes client certificates mandatory).")
    var tlsCa: String?

    @Option(name: .long, help: "tls+tcp: the name the coordinator's certificate must carry (default: the URL's host).")
    var tlsServerName: String?

    private func checkReadable(_ path: String?, _ flag: String) throws {
        if let path, !FileManager.default.isReadableFile(atPath: path) { throw CLIError("cannot read \(flag) \(path)") }
    }

    func forDialing(_ url: String) throws -> TLSSettings? {
        // colony:// with TLS flags goes on to the link, which refuses it (one place says why).
        if url.hasPrefix(FramedAddress.scheme) && (tlsCa != nil || tlsCert != nil || tlsServerName != nil) {
            return TLSSettings(certificateAndKeyFile: tlsCert, certificateAuthorityFile: tlsCa, serverName: tlsServerName)
        }
        guard url.hasPrefix("tls+tcp://") else { return nil }
        guard let tlsCa else { throw CLIError("\(url) needs --tls-ca FILE: the CA that signed the coordinator's certificate") }
        try checkReadable(tlsCa, "--tls-ca")
        try checkReadable(tlsCert, "--tls-cert")
        return TLSSettings(certificateAndKeyFile: tlsCert, certificateAuthorityFile: tlsCa, serverName: tlsServerName)
    }

    func forListening(_ url: String) throws -> TLSSettings? {
        guard url.hasPrefix("tls+tcp://") else { return nil }
        guard let tlsCert else { throw CLIError("listening on \(url) needs --tls-cert FILE: the coordinator's certificate and key in one PEM file") }
        try checkReadable(tlsCert, "--tls-cert")
        try checkReadable(tlsCa, "--tls-ca")
        return TLSSettings(certificateAndKeyFile: tlsCert, certificateAuthorityFile: tlsCa)
    }
}

/// Writes one line to standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Whether standard error is a terminal (progress lines redraw in place only there).
var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) != 0 }

/// Turns library errors into one clear line for the user.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Double {
    /// `1234567.8` as `1,234,568`.
    var grouped: String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.maximumFractionDigits = 0
        return formatter.string(from: NSNumber(value: self)) ?? String(Int(self))
    }
}

/// Connects, runs `body`, and closes the connection whatever happens.
func withClient<T>(_ options: ClientOptions, _ body: (ColonyClient) async throws -> T) async throws -> T {
    var clientOptions = ColonyClient.Options()
    clientOptions.token = try options.token()
    clientOptions.tls = try options.tls()
    clientOptions.patience = try options.patienceDuration()
    let patience = ColonyClient.format(clientOptions.patience)
    clientOptions.onUnavailable = { reason in
        UnavailableNotice.once("colony: the coordinator takes no changes for now (\(reason)); retrying for up to \(patience)")
    }
    let colony = try ColonyClient(connect: options.coordinatorURL, options: clientOptions)
    do {
        let value = try await body(colony)
        await colony.close()
        return value
    } catch {
        await colony.close()
        throw error
    }
}

/// Says a thing once per process on standard error (many requests may hit the same refusal).
enum UnavailableNotice {
    private static let said = Mutex(false)
    static func once(_ line: String) {
        if said.withLock({ said in defer { said = true }; return !said }) { printError(line) }
    }
}

/// A progress line on standard error: redrawn in place on a terminal, every 25% otherwise.
final class Progress {
    private let total: Int
    private var done = 0
    private var lastQuarter = 0
    private let terminal = standardErrorIsTerminal
    private let quiet: Bool

    init(total: Int, quiet: Bool = false) {
        self.total = max(total, 1)
        self.quiet = quiet
    }

    func advance() {
        done += 1
        if quiet { return }
        if terminal {
            let width = 30
            let filled = done * width / total
            FileHandle.standardError.write(Data("\r[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total) tasks".utf8))
        } else {
            let quarter = done * 4 / total
            if quarter > lastQuarter {
                lastQuarter = quarter
                printError("progress: \(done)/\(total) tasks")
            }
        }
    }

    func finish() {
        if terminal && !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
