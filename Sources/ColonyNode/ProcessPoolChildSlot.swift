import ColonyModel
import ColonyWire
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One place in the pool and the child filling it. Used by one thread at a time (the pool
/// hands a slot to one task at a time); the lock covers `close` from the node's shutdown.
final class ChildSlot: @unchecked Sendable {
    let index: Int
    private let configuration: ProcessPoolConfiguration
    private let environment: [String: String]
    private let log: @Sendable (String) -> Void
    private let started: StartCount
    private let lock = NSLock()
    private var child: PoolChildProcess?
    private var tasksRun = 0
    private var closed = false
    private var stderrTail: [UInt8] = []
    /// The start of a stderr line not finished yet (lines are forwarded whole, prefixed).
    private var partialLine: [UInt8] = []
    private var stderrPID: Int32 = 0
    private let livePID = Mutex<Int32?>(nil)

    init(index: Int, configuration: ProcessPoolConfiguration, environment: [String: String], started: StartCount,
         log: @escaping @Sendable (String) -> Void) {
        self.index = index
        self.started = started
        self.configuration = configuration
        self.environment = environment
        self.log = log
    }

    var pid: Int32? { livePID.withLock { $0 } }

    /// Retires a worn-out child and starts one if none runs; reports a failure to start.
    func prepare() {
        lock.lock()
        defer { lock.unlock() }
        if let limit = configuration.maxTasksPerChild, tasksRun >= limit, child != nil { retire() }
        if child == nil && !closed, let failure = start() { log("process pool: \(failure)") }
    }

    func close() {
        lock.lock()
        defer { lock.unlock() }
        closed = true
        retire()
    }

    /// Runs one task in the child (starting one if needed); blocks until it ends.
    func execute(_ task: Colony_V1_Task, nodeName: String, stop: StopSignal,
                 output: (@Sendable (Colony_V1_OutputChunk) -> Void)?) -> Colony_V1_TaskResult {
        lock.lock()
        defer { lock.unlock() }
        var result = Colony_V1_TaskResult()
        result.id = task.id
        result.attempt = task.attempt
        result.node = nodeName
        result.ok = false
        // Failures of the pool itself are errors unless said otherwise below.
        result.failure = .failureError
        let clock = ContinuousClock()
        let started = clock.now
        defer {
            let elapsed = clock.now - started
            result.runMicros = elapsed.inMicroseconds
        }
        if child == nil, let failure = start() {
            result.error = "process pool: \(failure)"
            return result
        }
        guard let child else {
            result.error = "process pool is shut down"
            return result
        }
        // The node keeps the timeout (it kills the child); the child just runs the handler.
        var sent = task
        sent.timeoutMs = 0
        let bytes: [UInt8]
        do {
            bytes = try sent.serializedBytes()
        } catch {
            result.error = "cannot encode task for the process pool: \(error)"
            return result
        }
        stderrTail = []
        tasksRun += 1
        // Stopping kills this child, but only while this task runs in it.
        let armed = Mutex(true)
        stop.onStop { armed.withLock { if $0 { kill(-child.pid, SIGKILL) } } }
        defer { armed.withLock { $0 = false } }

        if !Frames.write(bytes, to: child.tasks) {
            (result.error, result.failure) = reasonForDeath(of: child, stop: stop)
            return result
        }
        while true {
            var fds = [pollfd(fd: child.results, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: child.stderr, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                result.error = "process pool: poll failed: \(String(cString: strerror(errno)))"
                kill(-child.pid, SIGKILL)
                _ = reasonForDeath(of: child, stop: stop)
                return result
            }
            if fds[1].revents != 0 { drainStderr(child.stderr, once: true) }
            guard fds[0].revents != 0 else { continue }
            guard let (frame, isOutput) = Frames.readTagged(from: child.results) else {
                (result.error, result.failure) = reasonForDeath(of: child, stop: stop)
                return result
            }
            if isOutput {
                if let chunk = try? Colony_V1_OutputChunk(serializedBytes: frame) { output?(chunk) }
                continue
            }
            do {
                var reported = try Colony_V1_TaskResult(serializedBytes: frame)
                reported.id = task.id
                reported.attempt = task.attempt
                reported.node = nodeName
                if let (reason, kind) = stop.stopped {
                    // Stopped just as it finished: the stop wins, as in the thread pool.
                    reported.ok = false
                    reported.error = reason
                    reported.failure = kind
                    reported.output = Data()
                    reported.counterOps = []
                }
                result = reported
            } catch {
                result.error = "process pool: the child sent an unreadable result (\(error)); child replaced"
                result.failure = .failureCrashed
                kill(-child.pid, SIGKILL)
                _ = reasonForDeath(of: child, stop: stop)
            }
            return result
        }
    }

    // MARK: Child life

    /// Starts a child and waits for its ready frame; returns why it failed, or nil.
    private func start() -> String? {
        let process: PoolChildProcess
        do {
            process = try SpawnedProcess.startPoolChild(executable: configuration.executable, arguments: configuration.arguments,
                                                        environment: environment)
        } catch {
            return "cannot start a child: \(error)"
        }
        started.value.add(1, ordering: .relaxed)
        stderrTail = []
        partialLine = []
        stderrPID = process.pid
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.startTimeout
        while true {
            let left = deadline - clock.now
            let milliseconds = Int(left.inMillisecondsRoundedUp)
            if milliseconds == 0 {
                kill(-process.pid, SIGKILL)
                _ = SpawnedProcess.waitForExit(process.pid)
                closeDescriptors(process)
                let seconds = configuration.startTimeout.inSeconds
                return "child \(process.pid) did not start within \(formatSeconds(seconds)) s; killed"
            }
            var fds = [pollfd(fd: process.results, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: process.stderr, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, Int32(min(milliseconds, 1000)))
            if ready < 0 && errno != EINTR { continue }
            if ready <= 0 { continue }
            if fds[1].revents != 0 { drainStderr(process.stderr, once: true) }
            guard fds[0].revents != 0 else { continue }
            guard Frames.read(from: process.results) != nil else {
                let termination = SpawnedProcess.waitForExit(process.pid)
                drainStderr(process.stderr, once: false)
                closeDescriptors(process)
                return "child \(process.pid) ended at start-up (\(describe(termination)))\(lastLine())"
            }
            child = process
            tasksRun = 0
            livePID.withLock { $0 = process.pid }
            return nil
        }
    }

    /// Closes the child's task pipe (it exits at end-of-file) and reaps it, killing it if it
    /// has not gone within a second.
    private func retire() {
        guard let process = child else { return }
        child = nil
        livePID.withLock { $0 = nil }
        Glibc.close(process.tasks)
        for _ in 0..<100 {
            var status: Int32 = 0
            let reaped = waitpid(process.pid, &status, WNOHANG)
            if reaped == process.pid || (reaped < 0 && errno != EINTR) {
                Glibc.close(process.results)
                Glibc.close(process.stderr)
                return
            }
            usleep(10_000)
        }
        kill(-process.pid, SIGKILL)
        _ = SpawnedProcess.waitForExit(process.pid)
        Glibc.close(process.results)
        Glibc.close(process.stderr)
    }

    /// The child ended mid-task: reaps it and says why, in one line.
    private func reasonForDeath(of process: PoolChildProcess, stop: StopSignal) -> (String, Colony_V1_FailureKind) {
        let termination = SpawnedProcess.waitForExit(process.pid)
        drainStderr(process.stderr, once: false)
        closeDescriptors(process)
        child = nil
        livePID.withLock { $0 = nil }
        if let stopped = stop.stopped { return stopped }
        let tail = String(decoding: stderrTail, as: UTF8.self)
        let cause = describe(termination)
        if let limit = configuration.memoryLimitBytes,
           tail.contains("failed to allocate") || tail.contains("Could not allocate memory") || tail.contains("out of memory") || tail.contains("Cannot allocate memory") {
            return ("exceeded the child memory limit of \(limit) bytes (crashed: \(cause))", .failureMemory)
        }
        switch termination {
        case .signalled: return ("crashed: \(cause)\(lastLine())", .failureCrashed)
        case .exited: return ("child \(cause) mid-task\(lastLine())", .failureCrashed)
        }
    }

    private func describe(_ termination: SpawnedProcess.Termination) -> String {
        switch termination {
        case .signalled(let number): "signal \(number)\(signalName(number).map { " (\($0))" } ?? "")"
        case .exited(let code): "exited with code \(code)"
        }
    }

    /// ": Fatal error: ..." from what the child last wrote to stderr, if it said why.
    private func lastLine() -> String {
        let text = String(decoding: stderrTail, as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let fatal = lines.last(where: { $0.contains("Fatal error") }), let range = fatal.range(of: "Fatal error") {
            return ": " + String(fatal[range.lowerBound...].prefix(300))
        }
        return lines.last.map { ": " + String($0.prefix(300)) } ?? ""
    }

    /// Copies what the child wrote to stderr to the node's stderr, each line prefixed with
    /// `child PID:`, keeping the last 4 KiB for crash reasons. `once`: one read (the pipe was
    /// readable); else until end-of-file.
    private func drainStderr(_ fd: Int32, once: Bool) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        repeat {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                if !partialLine.isEmpty { forward(partialLine + [UInt8(ascii: "\n")]) }
                partialLine = []
                return
            }
            partialLine += buffer[0..<count]
            if let lastNewline = partialLine.lastIndex(of: UInt8(ascii: "\n")) {
                forward(Array(partialLine[...lastNewline]))
                partialLine.removeFirst(lastNewline + 1)
            } else if partialLine.count > 4096 {
                forward(partialLine + [UInt8(ascii: "\n")])
                partialLine = []
            }
            stderrTail += buffer[0..<count]
            if stderrTail.count > 4096 { stderrTail.removeFirst(stderrTail.count - 4096) }
        } while !once
    }

    private func forward(_ lines: [UInt8]) {
        let prefix = Array("child \(stderrPID): ".utf8)
        var out: [UInt8] = []
        for line in lines.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
            out += prefix + line + [UInt8(ascii: "\n")]
        }
        out.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    private func closeDescriptors(_ process: PoolChildProcess) {
        Glibc.close(process.tasks)
        Glibc.close(process.results)
        Glibc.close(process.stderr)
    }
}

/// The name of signal `number` (SIGKILL, ...), nil for one it does not know.
func signalName(_ number: Int32) -> String? {
    let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGBUS: "SIGBUS",
                                  SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT"]
    return names[number]
}
