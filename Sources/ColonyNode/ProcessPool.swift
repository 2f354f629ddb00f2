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
