import ColonyModel
import ColonyWire
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a node's process pool runs its children.
public struct ProcessPoolConfiguration: Sendable {
    /// Children, i.e. process-pool tasks running at once (0: no process pool).
    public var size: Int
    /// The program a child runs: by default the node's own executable, which turns into a
    /// child when it finds `COLONY_CHILD_OF` in its environment (see `ProcessPoolChild`).
    public var executable = "/proc/self/exe"
    public var arguments: [String] = [CommandLine.arguments.first ?? "colony"]
    /// Address-space limit of each child (setrlimit RLIMIT_AS), nil for none. A task that
    /// allocates past it fails with a memory-limit reason; the child is replaced.
    public var memoryLimitBytes: Int?
    /// A child is replaced after this many tasks (nil: never), against slow leaks.
    public var maxTasksPerChild: Int?
    /// A child that has not said it is ready after this long is killed and reported.
    public var startTimeout: Duration = .seconds(10)

    public init(size: Int) {
        self.size = size
    }
}

/// The node's pool of long-lived child processes, for tasks that must not take the node down.
///
/// Each child runs one task at a time: the node writes the task to the child's descriptor 3
/// and reads the result from its descriptor 4 (length-prefixed protobuf frames). Pipes rather
/// than an nng socket: they need no address or cleanup, and a dead child is an end-of-file at
/// once. A child that dies mid-task (signal, `fatalError`, `exit`) fails the attempt with
/// `crashed: signal N` and is replaced; a timeout or a cancellation kills the child. The
/// blocking pipe I/O happens on the pool's own threads, one per child.
final class ProcessPool: Sendable {
    let configuration: ProcessPoolConfiguration
    private let executor: ThreadPoolExecutor
    private let slots: [ChildSlot]
    private let idle: Mutex<IdleSlots>
    private let log: @Sendable (String) -> Void
    /// Children started so far (first ones and every replacement).
    private let started = StartCount()

    private struct IdleSlots {
        var free: [Int]
        var waiters: [CheckedContinuation<Int, Never>] = []
    }

    init(configuration: ProcessPoolConfiguration, nodeName: String, environment: [String: String], log: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.log = log
        executor = ThreadPoolExecutor(threads: max(1, configuration.size), name: "colony-\(nodeName)-children")
        var childEnvironment = ProcessInfo.processInfo.environment
        childEnvironment.merge(environment) { $1 }
        childEnvironment[ProcessPoolChild.parentVariable] = String(getpid())
        childEnvironment[ProcessPoolChild.nodeNameVariable] = nodeName
        if let limit = configuration.memoryLimitBytes { childEnvironment[ProcessPoolChild.memoryLimitVariable] = String(limit) }
        // A crashing child should die at once: Swift's backtracer would take seconds.
        childEnvironment["SWIFT_BACKTRACE"] = "enable=no"
        let started = self.started
        slots = (0..<configuration.size).map {
            ChildSlot(index: $0, configuration: configuration, environment: childEnvironment, started: started, log: log)
        }
        idle = Mutex(IdleSlots(free: Array((0..<configuration.size).reversed())))
        // A child that dies while the node writes to it must not kill the node with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        for slot in slots {
            Task(executorPreference: executor) { slot.prepare() }
        }
    }

    /// Runs `task` in a child and returns its result (never throws: every failure is a
    /// failed result). `stop` kills the child; so does cancelling the calling task.
    /// The child's live output of the task goes to `output` as it comes.
    func run(_ task: Colony_V1_Task, nodeName: String, stop: StopSignal,
             output: (@Sendable (Colony_V1_OutputChunk) -> Void)? = nil) async -> Colony_V1_TaskResult {
        let index = await acquire()
        let slot = slots[index]
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                Task(executorPreference: executor) {
                    let result = slot.execute(task, nodeName: nodeName, stop: stop, output: output)
                    continuation.resume(returning: result)
                    // Replace a dead or worn-out child before the slot is taken again.
                    slot.prepare()
                    self.release(index)
                }
            }
        } onCancel: {
            stop.stop(reason: "cancelled")
        }
    }

    /// Process ids of the live children.
    var childPIDs: [Int32] { slots.compactMap(\.pid) }

    /// Children started since the pool began.
    var childrenStarted: UInt64 { started.value.load(ordering: .relaxed) }

    /// Ends every child (closing its task pipe, then SIGKILL after a moment) and the pool's
    /// threads. Call once no task runs.
    func shutdown() {
        for slot in slots { slot.close() }
        executor.shutdown()
    }

    private func acquire() async -> Int {
        await withCheckedContinuation { continuation in
            let index: Int? = idle.withLock { state in
                if let index = state.free.popLast() { return index }
                state.waiters.append(continuation)
                return nil
            }
            if let index { continuation.resume(returning: index) }
        }
    }

    private func release(_ index: Int) {
        let waiter: CheckedContinuation<Int, Never>? = idle.withLock { state in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.free.append(index)
            return nil
        }
        waiter?.resume(returning: index)
    }
}

/// One place in the pool and the child filling it. Used by one thread at a time (the pool
/// hands a slot to one task at a time); the lock covers `close` from the node's shutdown.
private final class ChildSlot: @unchecked Sendable {
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

private func signalName(_ number: Int32) -> String? {
    let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGABRT: "SIGABRT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGBUS: "SIGBUS",
                                  SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT"]
    return names[number]
}

/// Length-prefixed frames (`LengthPrefix`) on a pipe.
/// A zero-length frame from a child means "ready". A child's live output (an OutputChunk)
/// travels in a frame whose length has `outputFlag` set, between its task and its result.
enum Frames {
    static let bytesMax = colonyMessageBytesMax
    static let outputFlag: UInt32 = 1 << 31

    /// Writes one frame; false if the pipe is closed.
    static func write(_ bytes: [UInt8], to fd: Int32, output: Bool = false) -> Bool {
        writeAll(LengthPrefix.header(bytes.count | (output ? Int(outputFlag) : 0)) + bytes, to: fd)
    }

    /// Reads one frame; nil at end-of-file, on an error or an oversized length.
    static func read(from fd: Int32) -> [UInt8]? {
        guard let (bytes, output) = readTagged(from: fd), !output else { return nil }
        return bytes
    }

    /// Reads one frame and whether it is output (see `outputFlag`).
    static func readTagged(from fd: Int32) -> (bytes: [UInt8], output: Bool)? {
        guard let header = readExactly(LengthPrefix.headerBytes, from: fd) else { return nil }
        let word = UInt32(LengthPrefix.length(header))
        let length = Int(word & ~outputFlag)
        guard length <= bytesMax else { return nil }
        if length == 0 { return ([], word & outputFlag != 0) }
        return readExactly(length, from: fd).map { ($0, word & outputFlag != 0) }
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    private static func readExactly(_ count: Int, from fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count - offset) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return nil }
            offset += got
        }
        return buffer
    }
}

/// A count shared by a pool's slots.
final class StartCount: Sendable {
    let value = Atomic<UInt64>(0)
}

/// Resident memory of process `pid` (0: this process), from /proc; 0 when it cannot be read.
func residentBytes(of pid: Int32 = 0) -> UInt64 {
    let path = pid == 0 ? "/proc/self/statm" : "/proc/\(pid)/statm"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
    return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
}
