import ColonyCore
import Foundation
import Synchronization

/// `exec`: runs a command (argv, no shell) and reports its exit status and output.
///
/// Off unless the node was started with `--allow-exec`: a node that does not allow it fails
/// such tasks with a reason instead. The command is its own process, so a command that
/// crashes or leaks takes down only itself. Output is captured up to a bound (the rest is
/// drained and counted, with `truncated` set); past its timeout the command is killed.
public struct ExecHandler: TaskHandler {
    public static let name = "exec"
    public static let defaultPool = TaskPool.process

    /// What to run.
    public struct Input: Codable, Sendable, Equatable {
        public var argv: [String]
        public var env: [String: String]?
        public var cwd: String?
        /// Bytes written to the command's standard input (UTF-8 text).
        public var stdin: String?
        public var timeoutSeconds: Double?
        /// Most bytes kept of stdout and of stderr each (default 1 MiB).
        public var outputBytesMax: Int?
        /// Fail the task (instead of reporting the status) when the command does not exit 0,
        /// so that retries apply; the reason is `exit status N`, `killed by signal N` or
        /// `timed out after X s`, followed by the end of stderr.
        public var failUnlessZero: Bool?

        public init(argv: [String], env: [String: String]? = nil, cwd: String? = nil, stdin: String? = nil,
                    timeoutSeconds: Double? = nil, outputBytesMax: Int? = nil, failUnlessZero: Bool? = nil) {
            self.failUnlessZero = failUnlessZero
            self.argv = argv
            self.env = env
            self.cwd = cwd
            self.stdin = stdin
            self.timeoutSeconds = timeoutSeconds
            self.outputBytesMax = outputBytesMax
        }
    }

    /// How it ended.
    public struct Output: Codable, Sendable, Equatable {
        /// The exit status, or nil when a signal ended it.
        public var exitCode: Int32?
        /// The signal that ended it, if one did.
        public var signal: Int32?
        public var stdout: String
        public var stderr: String
        /// Whether stdout or stderr was longer than `outputBytesMax` (and cut).
        public var truncated: Bool
        public var timedOut: Bool
        public var durationMicros: UInt64

        /// Exit status 0, no signal, no timeout.
        public var succeeded: Bool { exitCode == 0 && !timedOut }
    }

    let allowed: Bool

    /// - Parameter allowed: false registers a handler that refuses every command.
    public init(allowed: Bool) {
        self.allowed = allowed
    }

    public func run(_ input: Input, context: TaskContext) async throws -> Output {
        guard allowed else {
            throw ValidationFailure("exec is disabled on node \(context.nodeName) (start it with --allow-exec)")
        }
        guard let program = input.argv.first, !program.isEmpty else { throw ValidationFailure("exec needs a non-empty argv") }
        let limit = max(0, min(input.outputBytesMax ?? (1 << 20), 16 << 20))
        let executable = program.contains("/") ? program : try Self.resolve(program, env: input.env)
        var environment = Self.nodeEnvironment
        if let env = input.env { environment.merge(env) { $1 } }
        let clock = ContinuousClock()
        let started = clock.now
        let child = try SpawnedProcess.start(executable: executable, arguments: input.argv, environment: environment,
                                             directory: input.cwd, withStdin: input.stdin != nil)
        // This runs on the node's thread pool (dedicated threads), so blocking in poll(2)
        // here starves nothing.
        let deadline = input.timeoutSeconds.map { started + .milliseconds(Int($0 * 1000)) }
        let collected = child.communicate(input: Array((input.stdin ?? "").utf8), limit: limit, deadline: deadline,
                                          isCancelled: { Task.isCancelled })
        if collected.cancelled { throw CancellationError() }
        let timedOut = collected.timedOut
        let stderr = collected.stderr
        let (exitCode, signal): (Int32?, Int32?) = switch collected.termination {
        case .exited(let code): (code, nil)
        case .signalled(let number): (nil, number)
        }
        let elapsed = clock.now - started
        if input.failUnlessZero == true && (timedOut || exitCode != 0) {
            let reason = timedOut ? "timed out after \(input.timeoutSeconds ?? 0) s"
                : signal.map { "killed by signal \($0)" } ?? "exit status \(exitCode ?? -1)"
            let tail = String(decoding: stderr.suffix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ValidationFailure(tail.isEmpty ? reason : "\(reason): \(tail)")
        }
        return Output(
            exitCode: exitCode, signal: signal,
            stdout: String(decoding: collected.stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self),
            truncated: collected.truncated, timedOut: timedOut,
            durationMicros: UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000))
    }

    /// The node's environment, read once: commands inherit it (plus their own `env`), less
    /// the variables that tell a process-pool child what it is.
    static let nodeEnvironment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("COLONY_CHILD_") }

    /// Programs already found on the node's PATH (tiny commands run thousands of times).
    private static let resolved = Mutex<[String: String]>([:])

    /// Finds `program` on PATH (the task's own PATH if it sets one).
    static func resolve(_ program: String, env: [String: String]?) throws -> String {
        let ownPath = env?["PATH"]
        if ownPath == nil, let known = resolved.withLock({ $0[program] }) { return known }
        let path = ownPath ?? nodeEnvironment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) {
                if ownPath == nil { resolved.withLock { $0[program] = candidate } }
                return candidate
            }
        }
        throw ValidationFailure("\(program): command not found on PATH")
    }
}



