import Colony
import ColonyModel
import Foundation
import NNG
import XCTest

/// Starts real `colony` processes (coordinator, nodes) for a test and stops them after it.
final class ClusterHarness: @unchecked Sendable {
    private(set) var processes: [Process] = []
    let url: String

    /// - Parameter scheme: `tcp` (nng) or `colony` (Colony's own framing).
    init(scheme: String = "tcp") throws {
        url = "\(scheme)://127.0.0.1:\(try Self.freePort())"
    }

    /// The `colony` executable built beside the tests (or $COLONY_BIN).
    static var colonyExecutable: URL {
        if let path = ProcessInfo.processInfo.environment["COLONY_BIN"] { return URL(fileURLWithPath: path) }
        let testBinary = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return testBinary.deletingLastPathComponent().appendingPathComponent("colony")
    }

    static func freePort() throws -> Int {
        let probe = try Socket(.rep)
        defer { probe.close() }
        return try probe.listen("tcp://127.0.0.1:0").boundPort ?? 0
    }

    @discardableResult
    func start(_ arguments: [String], environment: [String: String]? = nil, stderrFile: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = Self.colonyExecutable
        // Test nodes have no io slots unless a test asks for them: the suite's `sleep` tasks
        // stand for work that holds a thread slot (without io slots they run on threads).
        let ioSlotsUnset = arguments.first == "node" && !arguments.contains("--io-slots")
        process.arguments = arguments + (ioSlotsUnset ? ["--io-slots", "0"] : [])
        if let environment { process.environment = environment }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        if let stderrFile, FileManager.default.createFile(atPath: stderrFile, contents: nil),
           let handle = FileHandle(forWritingAtPath: stderrFile) {
            process.standardError = handle
        }
        // COLONY_TEST_LOGS=DIR keeps each process's stderr there, for debugging a failure.
        if stderrFile == nil, let directory = ProcessInfo.processInfo.environment["COLONY_TEST_LOGS"] {
            let path = "\(directory)/\(arguments.first ?? "colony")-\(processes.count)-\(UUID().uuidString.prefix(8)).log"
            if FileManager.default.createFile(atPath: path, contents: Data((arguments.joined(separator: " ") + "\n").utf8)),
               let handle = FileHandle(forWritingAtPath: path) {
                handle.seekToEndOfFile()
                process.standardError = handle
            }
        }
        try process.run()
        processes.append(process)
        return process
    }

    /// Starts a coordinator keeping its state in `stateDirectory` (default: in memory only).
    @discardableResult
    func startCoordinator(stateDirectory: String = ":memory:") throws -> Process {
        try start(["coordinator", "--listen", url, "--state", stateDirectory])
    }

    func startNode(name: String, threads: Int) throws {
        try start(["node", "--coordinator", url, "--threads", "\(threads)", "--name", name])
    }

    /// Connects once the coordinator listens and `nodes` nodes have pulled.
    func connect(waitingForNodes nodes: Int) async throws -> ColonyClient {
        var client: ColonyClient?
        try await eventually("the coordinator at \(url) answering, with \(nodes) node(s) joined", { () -> Result<[String], ColonyError> in
            do {
                let connected = try client ?? ColonyClient(connect: url)
                client = connected
                return .success(try await connected.status().nodes.map(\.announcement.name))
            } catch let error as ColonyError {
                client = nil
                return .failure(error)
            }
        }, until: { (try? $0.get().count) ?? -1 >= nodes })
        return client!
    }

    func stopAll() {
        for process in processes where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        processes = []
    }

    /// Runs `colony ARGS` to completion; returns its exit status, stdout and stderr.
    static func run(_ arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(300)) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(executable: colonyExecutable, arguments, environment: environment, timeout: timeout)
    }

    /// Runs any executable to completion; returns its exit status, stdout and stderr.
    static func run(executable: URL, _ arguments: [String], environment: [String: String]? = nil,
                    timeout: Duration = .seconds(300)) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes fully before waiting, so a chatty child never blocks on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let seconds = Double(timeout.components.seconds)
        if group.wait(timeout: .now() + seconds) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            throw CLIFailure("\(executable.lastPathComponent) \(arguments.joined(separator: " ")) did not finish within \(seconds) s")
        }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

/// A test case with a fresh `ClusterHarness` per test, stopped (SIGKILL) after it.
class ClusterTestCase: XCTestCase {
    var cluster: ClusterHarness!

    override func setUpWithError() throws {
        cluster = try ClusterHarness()
    }

    override func tearDown() {
        cluster.stopAll()
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
