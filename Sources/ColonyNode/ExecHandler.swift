import ColonyModel
import ColonyWire
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

    /// What to run. Every field but `argv` may be left out; any other key is refused.
    public struct Input: Codable, Sendable, Equatable {
        /// The program and its arguments, run without a shell. A program without a `/` is
        /// looked up on PATH (the task's own `env["PATH"]` if it sets one).
        public var argv: [String]
        /// Variables added to (or replacing) the node's environment; default: none.
        public var env: [String: String]?
        /// Working directory; default: the node's.
        public var cwd: String?
        /// Bytes written to the command's standard input (UTF-8 text); default: none, and the
        /// command reads `/dev/null`. Any bytes, unescaped, travel after the JSON instead: see
        /// `ExecHandler.encode(_:stdin:)`.
        public var stdin: String?
        /// Seconds after which the command is killed and reported `timedOut`; default: no limit
        /// (the task's own timeout still applies).
        public var timeoutSeconds: Double?
        /// Most bytes kept of stdout and of stderr each, 0 to 16 MiB; default 1 MiB. The rest is
        /// read and dropped, and `truncated` is set.
        public var outputBytesMax: Int?
        /// Fail the task (instead of reporting the status) when the command does not exit 0,
        /// so that retries apply; the reason is `exit status N`, `killed by signal N` or
        /// `timed out after X s`, followed by the end of stderr. Default: false.
        public var failUnlessZero: Bool?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case argv, env, cwd, stdin, timeoutSeconds, outputBytesMax, failUnlessZero
        }

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

        public init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            argv = try fields.decode([String].self, forKey: .argv)
            env = try fields.decodeIfPresent([String: String].self, forKey: .env)
            cwd = try fields.decodeIfPresent(String.self, forKey: .cwd)
            stdin = try fields.decodeIfPresent(String.self, forKey: .stdin)
            timeoutSeconds = try fields.decodeIfPresent(Double.self, forKey: .timeoutSeconds)
            outputBytesMax = try fields.decodeIfPresent(Int.self, forKey: .outputBytesMax)
            failUnlessZero = try fields.decodeIfPresent(Bool.self, forKey: .failUnlessZero)
        }
    }

    /// Largest `outputBytesMax`: both streams are held in the node's memory and travel in one
    /// result message.
    public static let outputBytesMaxLimit = 16 << 20

    /// Longest `timeoutSeconds` (a year): far past any task, and small enough to be a deadline.
    public static let timeoutSecondsMax = 365.0 * 24 * 3600

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

        /// The status a shell would report for the command: 124 when it timed out (as
        /// `timeout(1)` does), 128+N when signal N ended it, else its exit status.
        public var shellStatus: Int32 {
            if timedOut { return 124 }
            if let signal { return 128 + signal }
            return exitCode ?? 1
        }
    }

    let allowed: Bool

    /// - Parameter allowed: false registers a handler that refuses every command.
    public init(allowed: Bool) {
        self.allowed = allowed
    }

    /// An exec task's input with `stdin` carried as it is: the JSON of `input`, a NUL byte, then
    /// the bytes. JSON text never holds a raw NUL, so the first one ends it; a chunk of data
    /// costs its own size on the wire, not the escaping (or base64) of a JSON string.
    public static func encode(_ input: Input, stdin: [UInt8]) throws -> [UInt8] {
        var bytes = Array(try JSONEncoder().encode(input))
        bytes.reserveCapacity(bytes.count + 1 + stdin.count)
        bytes.append(0)
        bytes += stdin
        return bytes
    }

    /// This handler as the node runs it: JSON input, optionally followed by NUL and raw stdin.
    public var anyHandler: AnyTaskHandler {
        AnyTaskHandler(name: Self.name, defaultPool: Self.defaultPool) { bytes, context in
            let json = bytes.firstIndex(of: 0).map { bytes[..<$0] } ?? bytes[...]
            let input: Input
            do {
                input = try JSONDecoder().decode(Input.self, from: Data(json))
            } catch {
                throw HandlerError.badInput(handler: Self.name, expected: String(describing: Input.self), reason: describeDecodingError(error))
            }
            var stdin: [UInt8]? = input.stdin.map { Array($0.utf8) }
            if json.endIndex < bytes.endIndex {
                guard stdin == nil else { throw ValidationFailure("exec: give stdin in the JSON or as bytes after it, not both") }
                stdin = Array(bytes[(json.endIndex + 1)...])
            }
            return Array(try JSONEncoder().encode(try await run(input, stdin: stdin, context: context)))
        }
    }

    public func run(_ input: Input, context: TaskContext) async throws -> Output {
        try await run(input, stdin: input.stdin.map { Array($0.utf8) }, context: context)
    }

    private func run(_ input: Input, stdin: [UInt8]?, context: TaskContext) async throws -> Output {
        guard allowed else {
            throw ValidationFailure("exec is disabled on node \(context.nodeName) (start it with --allow-exec)")
        }
        guard let program = input.argv.first, !program.isEmpty else { throw ValidationFailure("exec needs a non-empty argv") }
        if let seconds = input.timeoutSeconds, !(seconds > 0 && seconds <= Self.timeoutSecondsMax) {
            throw ValidationFailure("exec: timeoutSeconds must be above 0 and at most \(Int(Self.timeoutSecondsMax)), got \(seconds)")
        }
        if let bytes = input.outputBytesMax, !(0...Self.outputBytesMaxLimit).contains(bytes) {
            throw ValidationFailure("exec: outputBytesMax must be from 0 to \(Self.outputBytesMaxLimit), got \(bytes)")
        }
        let limit = input.outputBytesMax ?? (1 << 20)
        let executable = program.contains("/") ? program : try Self.resolve(program, env: input.env)
        var environment = Self.nodeEnvironment
        if let env = input.env { environment.merge(env) { $1 } }
        // What the coordinator gave this attempt wins over the task's own env: two tasks on
        // one node must never be pointed at the same GPU by mistake.
        environment.merge(context.resourceEnvironment) { $1 }
        // Who runs: a command may add tasks to its own job (`colony submit --job "$COLONY_JOB_ID"`,
        // the node exports COLONY_COORDINATOR).
        environment["COLONY_TASK_ID"] = String(context.taskID)
        environment["COLONY_ATTEMPT"] = String(context.attempt)
        if context.jobID != 0 { environment["COLONY_JOB_ID"] = String(context.jobID) }
        let clock = ContinuousClock()
        let started = clock.now
        if stdin != nil { Self.brokenPipesIgnored }
        let child = try SpawnedProcess.start(executable: executable, arguments: input.argv, environment: environment,
                                             directory: input.cwd, withStdin: stdin != nil)
        // This runs on the node's thread pool (dedicated threads), so blocking in poll(2)
        // here starves nothing.
        let deadline = input.timeoutSeconds.map { started + .milliseconds(Int($0 * 1000)) }
        let live = context.output
        let collected = child.communicate(input: stdin ?? [], limit: limit, deadline: deadline,
                                          isCancelled: { Task.isCancelled },
                                          onOutput: live.map { sink in { isOut, bytes in sink.write(bytes, to: isOut ? .stdout : .stderr) } })
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
            durationMicros: elapsed.inMicroseconds)
    }

    /// A command that exits without reading all of its stdin must fail the write, not end the
    /// process feeding it with SIGPIPE (a process-pool child would crash, failing the task).
    /// Commands start with default signal handling (see `SpawnedProcess`), so they still get it.
    private static let brokenPipesIgnored: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

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



