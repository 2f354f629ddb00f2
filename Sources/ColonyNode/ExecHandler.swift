import Foundation

/// `exec`: runs a command (argv, no shell) and reports its exit status and output.
///
/// Off unless the node was started with `--allow-exec`: a node that does not allow it fails
/// such tasks with a reason instead. The command is its own process, so a command that
/// crashes or leaks takes down only itself. Output is captured up to a bound (the rest is
/// drained and counted, with `truncated` set); past its timeout the command is killed.
public struct ExecHandler: TaskHandler {
    public static let name = "exec"

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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program.contains("/") ? program : try Self.resolve(program, env: input.env))
        process.arguments = Array(input.argv.dropFirst())
        if let env = input.env { process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
        if let cwd = input.cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        let stdinPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = input.stdin == nil ? FileHandle.nullDevice : stdinPipe
        let clock = ContinuousClock()
        let started = clock.now
        let exit = ExitSignal()
        process.terminationHandler = { _ in exit.fire() }
        do {
            try process.run()
        } catch {
            throw ValidationFailure("cannot start \(program): \(error.localizedDescription)")
        }
        // Drain both pipes at once so that a chatty command never blocks on a full pipe.
        let out = BoundedReader(stdoutPipe.fileHandleForReading, limit: limit)
        let err = BoundedReader(stderrPipe.fileHandleForReading, limit: limit)
        if let text = input.stdin {
            let handle = stdinPipe.fileHandleForWriting
            DispatchQueue.global().async {
                try? handle.write(contentsOf: Data(text.utf8))
                try? handle.close()
            }
        }
        // Wait for the exit, the timeout or a cancellation, whichever comes first.
        let pid = process.processIdentifier
        let timeout = input.timeoutSeconds.map { Duration.milliseconds(Int($0 * 1000)) }
        let timedOut = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler { await exit.wait() } onCancel: { exit.fire() }
                return false
            }
            if let timeout {
                group.addTask {
                    do { try await Task.sleep(for: timeout) } catch { return false }
                    return true
                }
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if timedOut || Task.isCancelled { kill(pid, SIGKILL) }
        process.waitUntilExit()
        let (stdout, stdoutCut) = out.finish()
        let (stderr, stderrCut) = err.finish()
        if Task.isCancelled { throw CancellationError() }
        let signalled = process.terminationReason == .uncaughtSignal
        let elapsed = clock.now - started
        if input.failUnlessZero == true && (timedOut || signalled || process.terminationStatus != 0) {
            let reason = timedOut ? "timed out after \(input.timeoutSeconds ?? 0) s"
                : signalled ? "killed by signal \(process.terminationStatus)" : "exit status \(process.terminationStatus)"
            let tail = String(decoding: stderr.suffix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ValidationFailure(tail.isEmpty ? reason : "\(reason): \(tail)")
        }
        return Output(
            exitCode: signalled ? nil : process.terminationStatus,
            signal: signalled ? process.terminationStatus : nil,
            stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self),
            truncated: stdoutCut || stderrCut, timedOut: timedOut,
            durationMicros: UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000))
    }

    /// Finds `program` on PATH (the task's own PATH if it sets one).
    static func resolve(_ program: String, env: [String: String]?) throws -> String {
        let path = env?["PATH"] ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ValidationFailure("\(program): command not found on PATH")
    }
}

/// Reads a file handle to its end on a background queue, keeping at most `limit` bytes.
final class BoundedReader: @unchecked Sendable {
    private let group = DispatchGroup()
    private var kept = Data()
    private var cut = false

    init(_ handle: FileHandle, limit: Int) {
        group.enter()
        DispatchQueue.global().async { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                let room = limit - kept.count
                if room > 0 { kept.append(chunk.prefix(room)) }
                if chunk.count > room { cut = true }
            }
            group.leave()
        }
    }

    /// Waits for the end of the stream; returns what was kept and whether some was cut.
    func finish() -> (Data, Bool) {
        group.wait()
        return (kept, cut)
    }
}

/// Fires once (the process exited, or the wait was abandoned); `wait` returns after that.
final class ExitSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var waiter: CheckedContinuation<Void, Never>?

    func fire() {
        lock.lock()
        fired = true
        let waiter = self.waiter
        self.waiter = nil
        lock.unlock()
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if fired {
                lock.unlock()
                continuation.resume()
            } else {
                waiter = continuation
                lock.unlock()
            }
        }
    }
}
